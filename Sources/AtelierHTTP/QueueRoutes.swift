import AtelierQueue
import AtelierService
import Foundation
import Hummingbird
import HummingbirdWebSocket
import HTTPTypes
import NIOCore

/// The API edition's queue endpoints under `/api/predict/<service>[/sink|/sub/path]`, as the
/// `eas-prediction` SDK calls them (eas-queue-protocol.md §2–§6): put, get, delete, truncate,
/// commit, search and attributes over HTTP, watch over a WebSocket with binary protobuf frames.
/// Refusals are `{"code", "field", "message"}` with a 4xx status and have no side effect.
struct QueueRoutes: Sendable {
    let service: QueueService
    let token: String?
    let backend: String
    /// request paths a worker can serve (puts of others are refused with 404)
    let servablePaths: Set<String>
    static let defaultRequestPath = "/sdapi/v1/txt2img"

    struct Target {
        let queue: QueueName
        let requestPath: String
    }

    /// Which queue a path names (§2.2): `NAME` and `NAME/<sub/path>` the input queue (the
    /// sub-path kept as the request path), `NAME/sink` the sink.
    func target(_ path: String) throws -> Target {
        let prefix = "/api/predict/"
        guard path.hasPrefix(prefix) else { throw QueueError(404, field: "path", "not a queue path: \(path)") }
        let rest = path.dropFirst(prefix.count)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let name = String(parts[0]).removingPercentEncoding ?? String(parts[0])
        guard name == service.name else {
            throw QueueError(404, field: "path", "no queue service named '\(name)' (this server serves '\(service.name)')")
        }
        var sub = parts.count > 1 ? String(parts[1]) : ""
        while sub.hasSuffix("/") { sub.removeLast() }
        if sub == "sink" { return Target(queue: service.sink, requestPath: "") }
        if sub.hasPrefix("sink/") { throw QueueError(404, field: "path", "'\(name)/\(sub)' is not a queue: the sink is '\(name)/sink'") }
        return Target(queue: service.input, requestPath: sub.isEmpty ? Self.defaultRequestPath : "/" + sub)
    }

    func authorize(_ request: Request) throws {
        guard let token else { return }
        guard ServiceToken.matches(ServiceToken.given(request.headers[.authorization]), token) else {
            throw QueueError(401, field: "Authorization", "invalid or missing service token")
        }
    }

    static func consumer(_ request: Request) -> (gid: String, uid: String) {
        let uid = request.headers[.init("X-EAS-QueueService-Redis-Uid")!] ?? ""
        let gid = request.headers[.init("X-EAS-QueueService-Redis-Gid")!] ?? ""
        return (gid.isEmpty ? "eas" : gid, uid.isEmpty ? "anonymous" : uid)
    }

    // MARK: HTTP

    func register(on router: Router<BasicRequestContext>) {
        for method: HTTPRequest.Method in [.get, .post, .put, .delete, .head, .patch] {
            router.on("api/predict/**", method: method) { request, _ -> Response in try await handle(request) }
        }
    }

    func handle(_ request: Request) async throws -> Response {
        try authorize(request)
        let target = try target(request.uri.path)
        let q = QueryParameters(request.uri.query)
        let queue = target.queue
        switch request.method {
        case .get:
            if try q.flag("_attrs_") {
                let attributes = try await service.attributes(queue, backend: backend)
                if (request.headers[.accept] ?? "").contains("protobuf") {
                    return Self.binary(QueueProto.encodeAttributes(attributes))
                }
                return jsonResponse(.object(attributes.mapValues(JSONValue.string)))
            }
            if try q.flag("_search_") {
                let index = try q.index("_index_", required: true)
                switch try await service.search(queue, index: index) {
                case .waiting(let position)?: return jsonResponse(.object(["IsPending": .bool(false), "WaitCount": .int(position)]))
                case .pending(let consumer)?:
                    return jsonResponse(.object(["IsPending": .bool(true), "WaitCount": .int(0), "ConsumerId": .string(consumer)]))
                case nil: return jsonResponse(.object([:]))
                }
            }
            if try q.flag("_watch_") {
                _ = try watchParameters(request)
                throw QueueError(400, field: "Upgrade", "a watch needs a WebSocket upgrade (Upgrade: websocket)")
            }
            return try await get(request, queue, q)
        case .delete:
            if try q.flag("_trunc_") {
                try await service.truncate(queue, before: try q.index("_index_", required: true))
                return Self.text("OK")
            }
            guard q["_indexes_"] != nil else { throw QueueError(400, field: "_indexes_", "DELETE needs _indexes_ (or _trunc_=true with _index_)") }
            try await service.remove(queue, indexes: try q.indexes("_indexes_"))
            return Self.text("OK")
        case .put:
            guard q["_indexes_"] != nil else { throw QueueError(400, field: "_indexes_", "PUT (commit) needs _indexes_") }
            let indexes = try q.indexes("_indexes_")
            if try q.flag("_negative_") {
                let (gid, uid) = Self.consumer(request)
                try await service.negative(queue, consumer: "\(gid).\(uid)", indexes: indexes)
            } else {
                try await service.remove(queue, indexes: indexes)
            }
            return Self.text("OK")
        case .post:
            if try q.flag("_eos_") {
                throw QueueError(501, field: "_eos_", "end of stream is not supported by Atelier's queue")
            }
            return try await put(request, target, q)
        default:
            throw QueueError(405, field: "method", "\(request.method) is not a queue operation")
        }
    }

    private func put(_ request: Request, _ target: Target, _ q: QueryParameters) async throws -> Response {
        if !target.queue.isSink && !servablePaths.contains(target.requestPath) {
            throw QueueError(404, field: "path", "\(target.requestPath) cannot be queued; use one of \(servablePaths.sorted().joined(separator: ", "))")
        }
        var priority = 0
        let header = request.headers[.init("X-EAS-QueueService-Priority")!]
        if let p = q["_priority_"] ?? header {
            guard let v = Int(p), (0...9).contains(v) else {
                throw QueueError(400, field: "_priority_", "_priority_ must be an integer 0–9 (1 = high), got '\(p)'")
            }
            priority = v
        }
        var request = request
        let limit = service.configuration.maxPayloadBytes
        let body: ByteBuffer
        do { body = try await request.collectBody(upTo: limit) } catch is NIOTooManyBytesError {
            throw QueueError(413, field: "body", "message larger than the \(limit)-byte limit (meta.maxPayloadBytes); pass images as URLs or use save_dir")
        }
        var tags: [String: String] = [:]
        for (k, v) in q.tags where k != "requestId" { tags[k] = v }
        let e = try await service.put(target.queue, data: Data(buffer: body), tags: tags, path: target.requestPath, priority: priority)
        var response = Self.text(String(e.index))
        response.headers[.init("X-Eas-Queueservice-Request-Id")!] = e.frame.tags["requestId"]
        return response
    }

    private func get(_ request: Request, _ queue: QueueName, _ q: QueryParameters) async throws -> Response {
        let index = try q.index("_index_", required: false)
        let length = try q.count("_length_", default: 1)
        var timeout = try q.duration("_timeout_") ?? .seconds(5)
        // end long polls before the client's own read timeout (§4)
        if timeout >= .seconds(1) { timeout = min(timeout, .seconds(30)) - .milliseconds(250) }
        let delete = try q.flag("_auto_delete_", default: true)
        let filter = q.tags
        let entries = try await service.get(queue, from: index, length: length, timeout: timeout, filter: filter, delete: delete)
        if try q.flag("_raw_") { return Self.binary(entries.first?.frame.data ?? Data(), type: "application/octet-stream") }
        if (request.headers[.accept] ?? "").contains("application/json") {
            return jsonResponse(.array(entries.map { e in
                .object(["index": .int(Int(e.index)), "tags": .object(e.frame.tags.mapValues(JSONValue.string)),
                         "data": .string(e.frame.data.base64EncodedString()), "message": .string(e.frame.message)])
            }))
        }
        return Self.binary(QueueProto.encodeList(entries.map(\.frame)))
    }

    static func text(_ s: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func binary(_ d: Data, type: String = "application/vnd.google.protobuf") -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(data: d)))
    }

    // MARK: watch

    struct WatchParameters {
        let queue: QueueName
        let gid: String, uid: String
        let from: UInt64
        let window: Int
        let indexOnly: Bool
        let autoCommit: Bool
        let filter: [String: String]
    }

    func watchParameters(_ request: Request) throws -> WatchParameters {
        try authorize(request)
        let target = try target(request.uri.path)
        let q = QueryParameters(request.uri.query)
        guard try q.flag("_watch_") else { throw QueueError(400, field: "_watch_", "a WebSocket on a queue is a watch: pass _watch_=true") }
        let filter = q.tags
        let (gid, uid) = Self.consumer(request)
        let window = try q.count("_window_", default: 1, allowZero: true)
        return WatchParameters(queue: target.queue, gid: gid, uid: uid, from: try q.index("_index_", required: false),
                               window: max(window, 1), indexOnly: try q.flag("_index_only_"),
                               autoCommit: try q.flag("_auto_commit_"), filter: filter)
    }

    /// The watch for a WebSocket upgrade request, or the error that refuses it.
    func watchHandler(for head: HTTPRequest) -> Result<WebSocketDataHandler<QueueWebSocketChannel.WatchContext>, QueueError> {
        let request = Request(head: head, body: .init(buffer: ByteBuffer()))
        let p: WatchParameters
        do { p = try watchParameters(request) } catch let e as QueueError { return .failure(e) } catch {
            return .failure(QueueError(400, field: "query", "\(error)"))
        }
        return .success { inbound, outbound, _ in
            let consumer = service.connect(p.queue, gid: p.gid, uid: p.uid, window: p.window, from: p.from,
                                           filter: p.filter, indexOnly: p.indexOnly, autoCommit: p.autoCommit)
            await withTaskGroup(of: Void.self) { group in
                // the client never sends data (pings are answered below us); anything else it
                // sends is ignored. The stream ends when the client goes away.
                group.addTask { do { for try await _ in inbound {} } catch {} }
                group.addTask {
                    do {
                        while let e = try await consumer.next() {
                            var frame = e.frame
                            if p.indexOnly { frame.data = Data() }
                            try await outbound.write(.binary(ByteBuffer(data: QueueProto.encode(frame))))
                        }
                    } catch {}
                }
                await group.next()
                group.cancelAll()
            }
            await consumer.close(reason: "the watcher disconnected")
        }
    }
}

/// A form-encoded query string (`urlencode` of a dict: `+` for space, `%XX`), last value wins.
struct QueryParameters {
    private(set) var pairs: [(String, String)] = []
    private var values: [String: String] = [:]

    init(_ query: String?) {
        for part in (query ?? "").split(separator: "&") where !part.isEmpty {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            let k = kv[0], v = kv.count > 1 ? kv[1] : ""
            if values[k] != nil { pairs.removeAll { $0.0 == k } }
            values[k] = v
            pairs.append((k, v))
        }
    }

    subscript(_ name: String) -> String? { values[name] }

    /// The parameters that are not reserved `_name_` operands: a put's tags, a get's or a
    /// watch's tag filter.
    var tags: [String: String] { values.filter { !($0.key.hasPrefix("_") && $0.key.hasSuffix("_")) } }

    func flag(_ name: String, default def: Bool = false) throws -> Bool {
        guard let v = values[name] else { return def }
        switch v.lowercased() {
        case "true", "1": return true
        case "false", "0", "": return false
        default: throw QueueError(400, field: name, "\(name) must be true or false, got '\(v)'")
        }
    }

    func index(_ name: String, required: Bool) throws -> UInt64 {
        guard let v = values[name] else {
            if required { throw QueueError(400, field: name, "\(name) is required") }
            return 0
        }
        guard let n = UInt64(v) else { throw QueueError(400, field: name, "\(name) must be an unsigned integer, got '\(v)'") }
        return n
    }

    func indexes(_ name: String) throws -> [UInt64] {
        let v = values[name] ?? ""
        let parts = v.split(separator: ",", omittingEmptySubsequences: false)
        let parsed = parts.map { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, !v.isEmpty, parsed.allSatisfy({ $0 != nil }) else {
            throw QueueError(400, field: name, "\(name) must be comma-separated unsigned integers, got '\(v)'")
        }
        return parsed.map { $0! }
    }

    func count(_ name: String, default def: Int, allowZero: Bool = false) throws -> Int {
        guard let v = values[name] else { return def }
        guard let n = Int(v), n >= (allowZero ? 0 : 1), n <= 100_000 else {
            throw QueueError(400, field: name, "\(name) must be an integer \(allowZero ? 0 : 1)–100000, got '\(v)'")
        }
        return n
    }

    /// Go duration syntax (`5s`, `500ms`, `1m30s`, `0s`) or a bare number of seconds.
    func duration(_ name: String) throws -> Duration? {
        guard let v = values[name] else { return nil }
        let bad = QueueError(400, field: name, "\(name) must be a duration such as 5s, 500ms or 1m, got '\(v)'")
        if let seconds = Double(v) {
            guard seconds >= 0, seconds.isFinite else { throw bad }
            return .milliseconds(Int64(seconds * 1000))
        }
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        var rest = Substring(v), total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let n = Double(number) else { throw bad }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) && !(($0.0 == "m") && rest.hasPrefix("ms")) }) else { throw bad }
            rest = rest.dropFirst(unit.count)
            total += n * scale
        }
        return .milliseconds(Int64(total * 1000))
    }
}
