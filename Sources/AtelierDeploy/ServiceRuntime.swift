import AsyncHTTPClient
import AtelierHTTP
import AtelierQueue
import AtelierService
import AtelierStorage
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// One deployed service at run time: its instance processes and their pool, its queue (API
/// edition: the queue sub-service lives in the gateway, and its workers hand each entry to a
/// free instance), and the operations on it (start, stop, scale, rolling update, delete).
final class ServiceRuntime: @unchecked Sendable {
    let name: String
    let dir: URL
    let registry: Registry
    let config: ControllerConfig
    let logger: Logger
    let pool = InstancePool()
    private let lock = NSLock()
    private var record: ServiceRecord
    private var specValue: ServiceSpec
    private var storageValue: ResolvedStorage
    private var instances: [InstanceProcess] = []
    private var queue: (service: QueueService, workers: QueueWorkers, endpoints: QueueEndpoints)?
    /// queue workers added when the service grew (each waits for a free instance)
    private var extraWorkers: [QueueWorkers] = []
    private var workerCount = 0
    private var generation = 0
    /// one operation (scale, update, stop, …) at a time
    private let operations = AsyncLock()

    init(record: ServiceRecord, spec: ServiceSpec, storage: ResolvedStorage, dir: URL, registry: Registry, config: ControllerConfig, logger: Logger) {
        self.record = record
        specValue = spec
        storageValue = storage
        self.name = record.name
        self.dir = dir
        self.registry = registry
        self.config = config
        self.logger = logger
    }

    var current: ServiceRecord { lock.withLock { record } }
    var spec: ServiceSpec { lock.withLock { specValue } }
    var storage: ResolvedStorage { lock.withLock { storageValue } }

    /// The token an instance checks (instances started before a rotate-token keep the old one
    /// until they are replaced).
    func token(of instance: String) -> String {
        lock.withLock { instances.first { $0.id == instance }?.plan.token ?? record.token }
    }
    var processes: [InstanceProcess] { lock.withLock { instances } }
    var queueEndpoints: QueueEndpoints? { lock.withLock { queue?.endpoints } }
    var logsDir: URL { dir.appendingPathComponent("logs") }

    // MARK: launch

    /// The `atelier serve` command line of an instance of `spec`.
    func plan(for spec: ServiceSpec, storage: ResolvedStorage, token: String) -> LaunchPlan {
        var args = ["serve", "--data-dir", storage.dataDir, "--mount-path", spec.containerDataDir,
                    "--threads", String(max(1, ProcessInfo.processInfo.activeProcessorCount / max(spec.instances, 1)))]
        let virtual: Set<String> = ["--listen", "--port", "--data-dir", "--api"]
        let dirFlags: Set<String> = ["--ckpt-dir", "--lora-dir", "--vae-dir", "--embeddings-dir", "--hypernetwork-dir", "--gfpgan-dir",
                                     "--controlnet-dir", "--vae-path"]
        for f in spec.script.flags where !virtual.contains(f.name) && WebUIScript.knownFlags[f.name] != nil {
            if dirFlags.contains(f.name), let v = f.value {
                // container paths under the data dir map into the local data dir; others cannot exist here
                let c = ServiceSpec.containerPath(v)
                let root = spec.containerDataDir
                guard c == root || c.hasPrefix(root + "/") else {
                    logger.warning("\(name): \(f.name) \(v) is outside the data dir's mount; ignored")
                    continue
                }
                args += [f.name, storage.dataDir + String(c.dropFirst(root.count))]
            } else if let v = f.value {
                args += [f.name, v]
            } else {
                args.append(f.name)
            }
        }
        if !spec.enableWebservice && !spec.script.has("--nowebui") { args.append("--nowebui") }
        var env = ProcessInfo.processInfo.environment
        if let oss = storage.oss, let s3 = config.s3 {
            args += ["--oss-path", oss, "--oss-cache-mb", String(config.ossCacheMB), "--oss-sync-seconds", String(config.ossSyncSeconds)]
            if storage.readOnly { args.append("--oss-read-only") }
            for (k, v) in s3.environment { env[k] = v }
        } else if storage.readOnly {
            args += ["--read-only-storage", storage.summary]
        }
        env["ATELIER_TOKEN"] = token
        return LaunchPlan(executable: Controller.executablePath, arguments: args, environment: env, capacity: spec.workerThreads, token: token)
    }

    func newInstance(plan: LaunchPlan) -> InstanceProcess {
        let id = lock.withLock { () -> String in
            generation += 1
            let suffix = (0..<5).map { _ in String("abcdefghijklmnopqrstuvwxyz0123456789".randomElement()!) }.joined()
            return "\(name)-\(generation)-\(suffix)"
        }
        return InstanceProcess(id: id, service: name, plan: plan, runDir: dir.appendingPathComponent("run"),
                               logFile: logsDir.appendingPathComponent("\(id).log"), pool: pool, registry: registry, logger: logger, logLimit: config.logRotateBytes)
    }

    // MARK: operations

    /// Starts the queue (API edition) and the instances; `adopt` are processes of a previous controller.
    func start(adopt: [InstanceRecord] = []) async throws {
        try await operations.run {
            try startQueue()
            let r = current
            let plan = plan(for: spec, storage: storage, token: r.token)
            var adoptable = adopt
            for _ in 0..<r.instances {
                let p: InstanceProcess
                let adopted = adoptable.popLast()
                if let a = adopted {
                    p = InstanceProcess(id: a.id, service: name, plan: plan, runDir: dir.appendingPathComponent("run"),
                                        logFile: logsDir.appendingPathComponent("\(a.id).log"), pool: pool, registry: registry, logger: logger, logLimit: config.logRotateBytes)
                } else {
                    p = newInstance(plan: plan)
                }
                // listed before it starts: the gateway needs its token as soon as the pool has it
                lock.withLock { instances.append(p) }
                p.start(adopt: adopted)
            }
            // processes of a previous controller beyond the desired count go
            for a in adoptable where InstanceProcess.isInstance(a.pid, id: a.id) {
                kill(a.pid, SIGTERM)
                try? registry.removeInstance(service: name, id: a.id)
            }
        }
    }

    private func startQueue() throws {
        guard spec.async, lock.withLock({ queue == nil }) else { return }
        var qc = QueueConfiguration()
        qc.maxDelivery = spec.maxDelivery
        let store = try SQLiteQueueStore(path: dir.appendingPathComponent("queue.sqlite3").path)
        let service = QueueService(name: name, store: store, configuration: qc) { entry, reason in
            QueueWorkers.failureBody(request: entry.frame.data, message: "delivered \(entry.deliveries) time(s) without success: \(reason)")
        }
        // the gateway checks the (rotatable) token before the queue sees a request
        let endpoints = QueueEndpoints(service: service, token: nil, backend: "sqlite")
        let capacity = max(current.instances * spec.workerThreads, 1)
        let workers = QueueWorkers(service: service, count: capacity, consumerPrefix: "gateway.\(name)", logger: logger) { [weak self] path, body in
            guard let self else { return (503, .object(["detail": .string("the service is gone")])) }
            return await self.runQueued(path: path, body: body)
        }
        lock.withLock { queue = (service, workers, endpoints); workerCount = capacity }
        Task {
            let recovered = (try? await service.recover()) ?? []
            if !recovered.isEmpty { self.logger.warning("\(self.name): queue: \(recovered.count) request(s) died with the previous controller") }
            workers.start()
        }
    }

    /// Runs one queue entry on a free instance (the queue's executor).
    func runQueued(path: String, body: Data) async -> (status: Int, body: JSONValue) {
        let lease: InstancePool.Lease
        do { lease = try await pool.acquire(task: nil, timeout: .seconds(3600)) } catch {
            return (503, .object(["detail": .string("no instance could run it: \(error)")]))
        }
        do {
            let (status, _, data) = try await Gateway.call(port: lease.port, method: .POST, path: path, query: nil,
                                                           headers: ["Content-Type": "application/json", "Authorization": token(of: lease.id)], body: ByteBuffer(data: body))
            await pool.release(lease)
            let json = (try? JSONSerialization.jsonObject(with: Data(buffer: data), options: [.fragmentsAllowed])).map(JSONValue.init(any:))
                ?? .string(String(buffer: data))
            return (status, json)
        } catch {
            // the instance died under the job: no one else gets it before its watchdog has it back
            await pool.setHealthy(lease.id, false)
            await pool.release(lease)
            return (503, .object(["detail": .string("instance \(lease.id) stopped while running it: \(error)")]))
        }
    }

    /// Queue consumers for `capacity` jobs at once: the service's instances × `rpc.worker_threads`.
    func addQueueWorkers(upTo capacity: Int) {
        guard let q = lock.withLock({ queue }) else { return }
        let more = lock.withLock { () -> Int in
            let m = capacity - workerCount
            if m > 0 { workerCount = capacity }
            return m
        }
        guard more > 0 else { return }
        let workers = QueueWorkers(service: q.service, count: more, consumerPrefix: "gateway.\(name).\(capacity)", logger: logger) { [weak self] path, body in
            guard let self else { return (503, .object(["detail": .string("the service is gone")])) }
            return await self.runQueued(path: path, body: body)
        }
        lock.withLock { extraWorkers.append(workers) }
        workers.start()
    }

    /// Stops taking new jobs and stops every instance (running jobs finish first).
    func stopAll(keepQueue: Bool = true) async {
        await operations.run {
            let all = lock.withLock { let a = instances; instances = []; return a }
            await withTaskGroup(of: Void.self) { g in for p in all { g.addTask { await p.stop() } } }
            if !keepQueue, let q = lock.withLock({ queue }) {
                await q.workers.stop()
                for w in lock.withLock({ extraWorkers }) { await w.stop() }
                lock.withLock { queue = nil; extraWorkers = [] }
            }
        }
    }

    /// Leaves the processes running for the next controller.
    func detach() {
        for p in processes { p.detach() }
        if let q = lock.withLock({ queue }) { q.workers.stopTaking() }
        for w in lock.withLock({ extraWorkers }) { w.stopTaking() }
    }

    /// Changes the instance count: new ones start (and must answer) before the count is reported;
    /// removed ones first finish their jobs.
    func scale(to n: Int) async throws {
        try await operations.run {
            var r = current
            guard r.desired == "running" else {
                throw ServiceError(409, field: "name", "\(name) is stopped: start it before scaling (atelier services start \(name))")
            }
            let old = r.instances
            r.instances = n
            try registry.update(r)
            lock.withLock { record = r }
            let plan = plan(for: spec, storage: storage, token: r.token)
            if n > old || processes.count < n {
                var added: [InstanceProcess] = []
                for _ in processes.count..<n {
                    let p = newInstance(plan: plan)
                    lock.withLock { instances.append(p) }
                    p.start()
                    added.append(p)
                }
                addQueueWorkers(upTo: n * spec.workerThreads)
                for p in added where !(await p.waitHealthy(timeout: .seconds(180))) {
                    throw ServiceError(500, "\(p.id) did not become healthy; see `atelier services logs \(name)`")
                }
            } else {
                let removed = lock.withLock { () -> [InstanceProcess] in
                    let extra = Array(instances.suffix(instances.count - n))
                    instances.removeLast(instances.count - n)
                    return extra
                }
                for p in removed { await pool.drain(p.id) }
                for p in removed {
                    while await pool.busy(p.id) > 0 { try? await Task.sleep(for: .milliseconds(50)) }
                    await p.stop()
                }
            }
        }
    }

    /// Rolling replacement (update, restart, rotate-token): for each old instance a new one starts
    /// and answers first, then the old one takes no new job, finishes what it runs and stops —
    /// so no request is dropped and capacity never falls.
    func roll(to newSpec: ServiceSpec, storage newStorage: ResolvedStorage, record newRecord: ServiceRecord) async throws {
        try await operations.run {
            // the old record (token, spec) stays in force until every new instance answers
            let plan = plan(for: newSpec, storage: newStorage, token: newRecord.token)
            addQueueWorkers(upTo: newRecord.instances * newSpec.workerThreads)
            let old = processes
            var fresh: [InstanceProcess] = []
            for i in 0..<max(newRecord.instances, 1) {
                let p = newInstance(plan: plan)
                // listed before it starts: the gateway needs its token as soon as the pool has it
                lock.withLock { instances.append(p) }
                p.start()
                guard await p.waitHealthy(timeout: .seconds(180)) else {
                    for f in fresh + [p] {
                        await f.stop(grace: .seconds(5))
                        lock.withLock { instances.removeAll { $0 === f } }
                    }
                    throw ServiceError(500, "the new instance \(p.id) did not become healthy; the old instances keep serving (see its log)")
                }
                fresh.append(p)
                if i < old.count {
                    let o = old[i]
                    await pool.drain(o.id)
                    while await pool.busy(o.id) > 0 { try? await Task.sleep(for: .milliseconds(50)) }
                    await o.stop()
                    lock.withLock { instances.removeAll { $0 === o } }
                }
            }
            for o in old.dropFirst(fresh.count) {
                await pool.drain(o.id)
                while await pool.busy(o.id) > 0 { try? await Task.sleep(for: .milliseconds(50)) }
                await o.stop()
                lock.withLock { instances.removeAll { $0 === o } }
            }
            try registry.update(newRecord)
            lock.withLock { specValue = newSpec; storageValue = newStorage; record = newRecord }
        }
    }

    func updateRecord(_ r: ServiceRecord) throws {
        try registry.update(r)
        lock.withLock { record = r }
    }

    /// The service as `describe` shows it.
    func describe(publicURL: String) async -> JSONValue {
        let r = current
        let slots = Dictionary(uniqueKeysWithValues: await pool.snapshot().map { ($0.id, $0) })
        let list: [JSONValue] = processes.map { p in
            let s = p.status
            let slot = slots[p.id]
            let state = s.state == "running" && (slot?.busy ?? 0) > 0 ? "busy" : s.state
            return .object(["id": .string(p.id), "pid": .int(Int(s.pid)), "port": .int(s.port), "state": .string(state),
                            "jobs_running": .int(slot?.busy ?? 0), "jobs_served": .int(slot?.jobsServed ?? 0),
                            "restarts": .int(s.restarts), "log": .string(p.logFile.path)])
        }
        let running = list.filter { if case .object(let o) = $0 { return ["running", "busy"].contains(o["state"]?.string ?? "") } else { return false } }.count
        let status = r.desired == "stopped" ? "Stopped" : running == r.instances ? "Running" : processes.contains { $0.status.state == "failed" } ? "Failed" : "Waiting"
        var endpoints: [String: JSONValue] = [:]
        if spec.async {
            endpoints["async_input"] = .string("\(publicURL)/api/predict/\(name)")
            endpoints["async_sink"] = .string("\(publicURL)/api/predict/\(name)/sink")
            endpoints["sync"] = .string("\(publicURL)/api/sync/\(name)")
        } else {
            endpoints["sync"] = .string("\(publicURL)/api/predict/\(name)")
        }
        if spec.enableWebservice { endpoints["webui"] = .string("\(publicURL)/api/predict/\(name)/") }
        var queueInfo: JSONValue = .null
        if let q = lock.withLock({ queue }) {
            let input = try? await q.service.attributes(q.service.input, backend: "sqlite")
            let sink = try? await q.service.attributes(q.service.sink, backend: "sqlite")
            queueInfo = .object(["input": .object((input ?? [:]).mapValues(JSONValue.string)), "sink": .object((sink ?? [:]).mapValues(JSONValue.string)),
                                 "max_delivery": .int(spec.maxDelivery)])
        }
        return .object([
            "name": .string(name), "edition": .string(spec.edition.rawValue), "status": .string(status),
            "desired": .string(r.desired), "instances": .int(r.instances), "running_instances": .int(running),
            "endpoint": endpoints["async_input"] ?? endpoints["sync"]!, "endpoints": .object(endpoints), "token": .string(r.token),
            "image": .string(spec.image), "program": .string(spec.script.program), "storage": .string(storage.summary),
            "data_dir": .string(storage.dataDir), "mount_path": .string(spec.containerDataDir), "worker_threads": .int(spec.workerThreads),
            "instance_list": .array(list), "queue": queueInfo, "waiting_requests": .int(await pool.waiting),
            "cloud": Self.field(spec.raw, "cloud"), "diagnostics": .array(spec.diagnostics.map { .string($0.description) }),
            "created": .string(ISO8601DateFormatter().string(from: r.created)), "updated": .string(ISO8601DateFormatter().string(from: r.updated)),
        ])
    }

    static func field(_ v: JSONValue, _ key: String) -> JSONValue {
        if case .object(let o) = v { return o[key] ?? .null }
        return .null
    }
}

/// A mutual-exclusion lock for async operations (one at a time, in call order).
actor AsyncLock {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        }
        busy = true
        defer {
            if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}
