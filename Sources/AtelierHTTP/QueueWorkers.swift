import AtelierQueue
import AtelierService
import Foundation
import Logging

/// The API edition's workers (eas-queue-protocol.md §10): `rpc.worker_threads` consumers of the
/// input queue, each with a window of one. A worker runs an entry through the same endpoint the
/// synchronous API uses, then writes the response into the sink under the entry's index and
/// tags and removes the entry, in one store transaction. A client's mistake (4xx) is a result
/// too; a server fault (5xx) gives the entry back, to run again until `max_delivery`.
public final class QueueWorkers: @unchecked Sendable {
    /// Runs one entry: its request path and body → HTTP status and JSON answer. In `atelier serve`
    /// the synchronous API's own code; in the gateway a call to one of the service's instances.
    public typealias Executor = @Sendable (_ path: String, _ body: Data) async -> (status: Int, body: JSONValue)
    let service: QueueService
    let execute: Executor
    let count: Int
    let instanceID: String
    let logger: Logger
    private let lock = NSLock()
    private var tasks: [Task<Void, Never>] = []

    public init(service: QueueService, count: Int, consumerPrefix: String? = nil, logger: Logger, execute: @escaping Executor) {
        self.service = service
        self.execute = execute
        self.count = max(count, 1)
        self.logger = logger
        instanceID = consumerPrefix ?? "\(ProcessInfo.processInfo.hostName).\(getpid())"
    }

    /// The sink body that tells a client its request failed: the EAS response shape with
    /// `status` ≠ 0 and `error_msg`, so code written for results (`parameters.image_url`) still parses.
    public static func failureBody(request: Data, message: String, status: Int = 1, error: JSONValue? = nil) -> Data {
        var idTask: JSONValue = .null
        if let o = try? JSONSerialization.jsonObject(with: request) as? [String: Any],
           let scripts = o["alwayson_scripts"] as? [String: Any], let id = scripts["id_task"] {
            idTask = .string("\(id)")
        }
        var body: [String: JSONValue] = [
            "images": .array([]), "info": .string(""),
            "parameters": .object(["id_task": idTask, "status": .int(status), "image_url": .string(""), "seed": .string(""),
                                   "error_msg": .string(message), "total_time": .double(0), "image_mask_url": .string("")]),
        ]
        if let error { body["error"] = error }
        return JSONValue.object(body).data()
    }

    public func start() {
        lock.withLock {
            for n in 0..<count { tasks.append(Task { await self.run(thread: n) }) }
        }
    }

    /// Stops taking entries (a running one still finishes and is published).
    public func stopTaking() {
        for t in lock.withLock({ tasks }) { t.cancel() }
    }

    /// Stops taking entries and waits for the running ones to finish and be published.
    public func stop() async {
        stopTaking()
        for t in lock.withLock({ tasks }) { await t.value }
    }

    private func run(thread: Int) async {
        let consumer = service.connect(service.input, gid: "eas", uid: "\(instanceID).\(thread)", window: 1, from: 0,
                                       filter: [:], indexOnly: false, autoCommit: false)
        while !Task.isCancelled {
            do {
                guard let e = try await consumer.next() else { break }
                try await process(e, consumer: consumer)
            } catch {
                logger.error("queue worker \(thread): \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
        }
        await consumer.close(reason: "the worker stopped")
    }

    private func process(_ e: QueueEntry, consumer: Consumer) async throws {
        let requestID = e.frame.tags["requestId"] ?? ""
        logger.info("queue: running index \(e.index) \(e.path) (request \(requestID), delivery \(e.deliveries))")
        let (status, body) = await execute(e.path, e.frame.data)
        if status >= 500 {
            let reason = "the worker failed with HTTP \(status) on delivery \(e.deliveries)"
            try await service.giveBack(consumer, index: e.index, reason: reason)
            logger.warning("queue: index \(e.index) \(reason); given back")
            return
        }
        var data = body.data()
        if status >= 400 {
            let detail: String
            switch body {
            case .object(let o) where o["detail"]?.string != nil: detail = o["detail"]!.string!
            default: detail = String(decoding: data, as: UTF8.self)
            }
            data = Self.failureBody(request: e.frame.data, message: "HTTP \(status): \(detail)", error: body)
        }
        try await service.complete(index: e.index, result: DataFrame(index: e.index, tags: e.frame.tags, data: data))
        logger.info("queue: index \(e.index) done (HTTP \(status)), result in \(service.sink)")
    }
}
