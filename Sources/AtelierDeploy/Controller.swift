import AtelierHTTP
import AtelierQueue
import AtelierService
import AtelierStorage
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `atelier controller`: the control plane and the gateway in one process. Services live in a
/// SQLite registry in the controller's data dir, so a restarted controller finds them again and
/// adopts their still-running instances (or starts new ones). Its REST API (`/api/services…`,
/// admin token in `<dir>/admin-token`) is what `atelier deploy` and `atelier services` call.
public final class Controller: @unchecked Sendable {
    public let dir: URL
    public let config: ControllerConfig
    let registry: Registry
    let logger: Logger
    public let adminToken: String
    private let lock = NSLock()
    private var runtimes: [String: ServiceRuntime] = [:]
    /// creations in progress (a second spec with the same name is refused meanwhile)
    private var creating: Set<String> = []
    private var publicURL = ""

    /// The running `atelier` binary, which instances are started from.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    public init(dir: URL, config: ControllerConfig, logger: Logger) throws {
        self.dir = dir
        self.config = config
        self.logger = logger
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("services"), withIntermediateDirectories: true)
        registry = try Registry(path: dir.appendingPathComponent("registry.sqlite3").path)
        let tokenFile = dir.appendingPathComponent("admin-token")
        if let t = try? String(contentsOf: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty {
            adminToken = t
        } else {
            adminToken = Self.newToken()
            FileManager.default.createFile(atPath: tokenFile.path, contents: Data(adminToken.utf8), attributes: [.posixPermissions: 0o600])
        }
    }

    static func newToken() -> String {
        var g = SystemRandomNumberGenerator()
        return Data((0..<24).map { _ in UInt8.random(in: 0...255, using: &g) }).base64EncodedString()
            .replacingOccurrences(of: "+", with: "A").replacingOccurrences(of: "/", with: "B").replacingOccurrences(of: "=", with: "")
    }

    func serviceDir(_ name: String) -> URL { dir.appendingPathComponent("services").appendingPathComponent(name) }
    func runtime(_ name: String) -> ServiceRuntime? { lock.withLock { runtimes[name] } }

    // MARK: life cycle

    /// Brings back every registered service: adopts its live instances, starts the missing ones.
    func restore() async {
        for r in (try? registry.services()) ?? [] {
            do {
                let spec = try ServiceSpec(json: r.spec, allowedMountRoots: config.mountRoots)
                let storage = try ResolvedStorage.resolve(spec, config: config, serviceDir: serviceDir(r.name))
                let rt = ServiceRuntime(record: r, spec: spec, storage: storage, dir: serviceDir(r.name), registry: registry, config: config, logger: logger)
                lock.withLock { runtimes[r.name] = rt }
                let live = ((try? registry.instances(r.name)) ?? []).filter { InstanceProcess.isInstance($0.pid, id: $0.id) }
                for dead in ((try? registry.instances(r.name)) ?? []) where !InstanceProcess.isInstance(dead.pid, id: dead.id) {
                    try? registry.removeInstance(service: r.name, id: dead.id)
                }
                if r.desired == "running" {
                    try await rt.start(adopt: live)
                    logger.info("restored \(r.name): \(live.count) instance(s) adopted, \(max(r.instances - live.count, 0)) started")
                } else {
                    for a in live { kill(a.pid, SIGTERM); try? registry.removeInstance(service: r.name, id: a.id) }
                }
            } catch {
                logger.error("cannot restore \(r.name): \(error)")
            }
        }
    }

    // MARK: operations (the REST API's)

    /// Validates, records and starts a service; on any error nothing remains.
    func create(specData: Data) async throws -> (ServiceRuntime, [SpecDiagnostic]) {
        let spec = try ServiceSpec(json: specData, allowedMountRoots: config.mountRoots)
        let name = spec.name
        let reserved = lock.withLock { () -> Bool in
            guard runtimes[name] == nil, !creating.contains(name) else { return false }
            creating.insert(name)
            return true
        }
        guard reserved, try registry.service(name) == nil else {
            if reserved { lock.withLock { _ = creating.remove(name) } }
            throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "metadata.name", message: "a service named \(name) already exists")])
        }
        defer { lock.withLock { _ = creating.remove(name) } }
        let sdir = serviceDir(name)
        let storage = try ResolvedStorage.resolve(spec, config: config, serviceDir: sdir)
        if storage.oss == nil {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: storage.dataDir, isDirectory: &isDir), !isDir.boolValue {
                throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "containers[0].script", message: "--data-dir maps to \(storage.dataDir), which is a file")])
            }
        }
        let record = ServiceRecord(name: name, spec: specData, token: Self.newToken(), desired: "running", instances: spec.instances,
                                   created: Date(), updated: Date())
        do {
            try FileManager.default.createDirectory(at: sdir, withIntermediateDirectories: true)
            guard try registry.insert(record) else {
                throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "metadata.name", message: "a service named \(name) already exists")])
            }
            let rt = ServiceRuntime(record: record, spec: spec, storage: storage, dir: sdir, registry: registry, config: config, logger: logger)
            try await rt.start()
            lock.withLock { runtimes[name] = rt }
            logger.info("deployed \(name) (\(spec.edition.rawValue), \(spec.instances) instance(s)) on \(storage.summary)")
            return (rt, spec.diagnostics)
        } catch {
            try? registry.delete(name)
            try? FileManager.default.removeItem(at: sdir)
            throw error
        }
    }

    func delete(_ name: String) async throws {
        guard let rt = runtime(name) else { throw ServiceError(404, field: "name", "no service named \(name)") }
        // a create with the same name waits until the old directory is gone
        lock.withLock { _ = creating.insert(name) }
        defer { lock.withLock { _ = creating.remove(name) } }
        await rt.pool.failWaiters("service \(name) was deleted")
        await rt.stopAll(keepQueue: false)
        lock.withLock { _ = runtimes.removeValue(forKey: name) }
        try registry.delete(name)
        // moved aside first (the name is free at once), then removed; the queue store may still
        // be closing its WAL files meanwhile, so the removal is retried
        let tomb = dir.appendingPathComponent("services").appendingPathComponent(".deleted-\(name)-\(UUID().uuidString.prefix(8))")
        if (try? FileManager.default.moveItem(at: serviceDir(name), to: tomb)) != nil {
            for attempt in 0..<20 {
                if (try? FileManager.default.removeItem(at: tomb)) != nil || !FileManager.default.fileExists(atPath: tomb.path) { break }
                if attempt == 19 { logger.error("could not remove \(tomb.path)") }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        logger.info("deleted \(name)")
    }

    func update(_ name: String, specData: Data) async throws -> [SpecDiagnostic] {
        guard let rt = runtime(name) else { throw ServiceError(404, field: "name", "no service named \(name)") }
        let spec = try ServiceSpec(json: specData, allowedMountRoots: config.mountRoots)
        guard spec.name == name else {
            throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "metadata.name", message: "is \(spec.name); an update keeps the name \(name)")])
        }
        guard spec.async == rt.spec.async else {
            throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "metadata.type", message: "an update cannot change the edition; delete and deploy again")])
        }
        let storage = try ResolvedStorage.resolve(spec, config: config, serviceDir: serviceDir(name))
        var r = rt.current
        r.spec = specData
        r.instances = spec.instances
        r.desired = "running"
        try await rt.roll(to: spec, storage: storage, record: r)
        return spec.diagnostics
    }

    // MARK: HTTP

    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorAndTimingMiddleware(logger: logger, maxBodyMB: 64))
        router.add(middleware: DeployErrorMiddleware())
        router.get("/") { _, _ in
            jsonResponse(.object(["atelier": .string("controller"), "services": .string("/api/services"), "gateway": .string("/api/predict/<service>/…")]))
        }
        // control plane
        router.get("api/services") { request, _ -> Response in
            try self.admin(request)
            var list: [JSONValue] = []
            for name in self.lock.withLock({ self.runtimes.keys.sorted() }) {
                if let rt = self.runtime(name) { list.append(await rt.describe(publicURL: self.publicURL)) }
            }
            return jsonResponse(.object(["services": .array(list)]))
        }
        router.post("api/services") { request, _ -> Response in
            try self.admin(request)
            var request = request
            let body = Data(buffer: try await request.collectBody(upTo: 1 << 20))
            let (rt, diagnostics) = try await self.create(specData: body)
            var d = await rt.describe(publicURL: self.publicURL)
            if case .object(var o) = d { o["diagnostics"] = .array(diagnostics.map { .string($0.description) }); d = .object(o) }
            return jsonResponse(d, status: 201)
        }
        router.get("api/services/:name") { request, context -> Response in
            try self.admin(request)
            let rt = try self.named(context)
            return jsonResponse(await rt.describe(publicURL: self.publicURL))
        }
        router.put("api/services/:name") { request, context -> Response in
            try self.admin(request)
            let name = context.parameters.get("name") ?? ""
            var request = request
            let body = Data(buffer: try await request.collectBody(upTo: 1 << 20))
            let diagnostics = try await self.update(name, specData: body)
            var d = await try self.named(context).describe(publicURL: self.publicURL)
            if case .object(var o) = d { o["diagnostics"] = .array(diagnostics.map { .string($0.description) }); d = .object(o) }
            return jsonResponse(d)
        }
        router.delete("api/services/:name") { request, context -> Response in
            try self.admin(request)
            try await self.delete(context.parameters.get("name") ?? "")
            return jsonResponse(.object(["deleted": .string(context.parameters.get("name") ?? "")]))
        }
        router.post("api/services/:name/:operation") { request, context -> Response in
            try self.admin(request)
            let rt = try self.named(context)
            var request = request
            let body = Data(buffer: try await request.collectBody(upTo: 1 << 16))
            switch context.parameters.get("operation") ?? "" {
            case "stop":
                var r = rt.current
                r.desired = "stopped"
                try rt.updateRecord(r)
                await rt.stopAll()
            case "start":
                var r = rt.current
                r.desired = "running"
                try rt.updateRecord(r)
                if rt.processes.isEmpty { try await rt.start() }
            case "restart":
                var r = rt.current
                r.desired = "running"
                try await rt.roll(to: rt.spec, storage: rt.storage, record: r)
            case "rotate-token":
                var r = rt.current
                r.token = Self.newToken()
                if r.desired == "stopped" {
                    try rt.updateRecord(r)   // no instance runs; the next start uses the new token
                } else {
                    try await rt.roll(to: rt.spec, storage: rt.storage, record: r)
                }
            case "scale":
                let o = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
                guard let n = o?["instances"] as? Int else { throw ServiceError(422, field: "instances", "instances: an integer ≥ 1") }
                guard n >= 1 else { throw ServiceError(422, field: "instances", "instances must be at least 1 (got \(n)); stop the service to run none") }
                if rt.spec.edition == .standard && n != 1 {
                    throw ServiceError(422, field: "instances", "the standard edition runs exactly one instance")
                }
                try await rt.scale(to: n)
            default:
                throw ServiceError(404, field: "operation", "unknown operation \(context.parameters.get("operation") ?? "")")
            }
            return jsonResponse(await rt.describe(publicURL: self.publicURL))
        }
        router.get("api/services/:name/logs") { request, context -> Response in
            try self.admin(request)
            let rt = try self.named(context)
            let q = request.uri.queryParameters
            let instance = q["instance"].map(String.init)
            let offset = max(q["offset"].flatMap { Int(String($0)) } ?? -1, -1)
            let tail = min(max(q["tail"].flatMap { Int(String($0)) } ?? 200, 0), 100_000)
            var files = (try? FileManager.default.contentsOfDirectory(at: rt.logsDir, includingPropertiesForKeys: [.contentModificationDateKey]))?
                .filter { $0.pathExtension == "log" } ?? []
            if let instance { files = files.filter { $0.deletingPathExtension().lastPathComponent == instance } }
            var out: [JSONValue] = []
            for f in files.sorted(by: { $0.lastPathComponent < $1.lastPathComponent }) {
                let data = (try? Data(contentsOf: f)) ?? Data()
                var text: String
                if offset >= 0 {
                    text = offset < data.count ? String(decoding: data[offset...], as: UTF8.self) : ""
                } else {
                    text = String(decoding: data, as: UTF8.self)
                    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                    if lines.count > tail { text = lines.suffix(tail).joined(separator: "\n") }
                }
                var entry: [String: JSONValue] = ["instance": .string(f.deletingPathExtension().lastPathComponent), "text": .string(text), "size": .int(data.count)]
                // a follower behind a rotation reads the rest of the rotated part from where it was
                if let from = q["previous_offset"].flatMap({ Int(String($0)) }), from >= 0,
                   let old = try? Data(contentsOf: f.appendingPathExtension("1")), from < old.count {
                    entry["previous"] = .string(String(decoding: old[from...], as: UTF8.self))
                }
                out.append(.object(entry))
            }
            return jsonResponse(.object(["logs": .array(out)]))
        }
        // gateway
        for method: HTTPRequest.Method in [.get, .post, .put, .delete, .head, .patch] {
            router.on("api/predict/**", method: method) { request, _ -> Response in try await self.gateway(request, sync: false) }
            router.on("api/sync/**", method: method) { request, _ -> Response in try await self.gateway(request, sync: true) }
        }
        return router
    }

    func named(_ context: BasicRequestContext) throws -> ServiceRuntime {
        let name = context.parameters.get("name") ?? ""
        guard let rt = runtime(name) else { throw ServiceError(404, field: "name", "no service named \(name)") }
        return rt
    }

    func admin(_ request: Request) throws {
        guard ServiceToken.matches(Gateway.token(request), adminToken) else {
            throw ServiceError(401, field: "Authorization", "the controller's admin token is required (\(dir.path)/admin-token)")
        }
    }

    /// `/api/predict/<name>…` (queue for the API edition, else the synchronous API) and `/api/sync/<name>…`.
    func gateway(_ request: Request, sync: Bool) async throws -> Response {
        let prefix = sync ? "/api/sync/" : "/api/predict/"
        let rest = request.uri.path.dropFirst(prefix.count)
        let nameEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let name = String(rest[..<nameEnd]).removingPercentEncoding ?? String(rest[..<nameEnd])
        guard let rt = runtime(name) else { throw ServiceError(404, field: "path", "no service named \(name)") }
        if !sync, rt.spec.async, let q = rt.queueEndpoints {
            // a stopped service keeps its queue: puts wait for its instances
            guard ServiceToken.matches(Gateway.token(request), rt.current.token) else {
                throw QueueError(401, field: "Authorization", "invalid or missing service token")
            }
            return try await q.handle(request)
        }
        if sync && !rt.spec.async { throw ServiceError(404, field: "path", "\(name) is a synchronous service: call /api/predict/\(name)") }
        if rt.current.desired == "stopped" { throw ServiceError(503, field: "path", "service \(name) is stopped (atelier services start \(name))") }
        return try await Gateway.proxy(request, rest: String(rest[nameEnd...]), service: rt)
    }

    /// Runs the controller until SIGTERM/SIGINT; then stops every instance. (`SIGKILL` leaves them
    /// running, and the next controller adopts them.)
    public func run(host: String, port: Int, onListening: @escaping @Sendable (Int) -> Void) async throws {
        await restore()
        let app = QueueAwareApplication.make(router: buildRouter(), host: host, port: port, maxFrameSize: (8 << 20) + (64 << 10), logger: logger,
            endpoints: { [weak self] head in
                let path = head.path ?? ""
                guard let self, path.hasPrefix("/api/predict/") else { return .failure(QueueError(404, field: "path", "no queue at \(path)")) }
                let raw = path.dropFirst("/api/predict/".count).split(separator: "/").first.map(String.init) ?? ""
                let name = raw.removingPercentEncoding ?? raw
                guard let rt = self.runtime(name), let q = rt.queueEndpoints else {
                    return .failure(QueueError(404, field: "path", "no queue service named '\(name)'"))
                }
                guard ServiceToken.matches(ServiceToken.given(head.headerFields[.authorization]), rt.current.token) else {
                    return .failure(QueueError(401, field: "Authorization", "invalid or missing service token"))
                }
                return .success(q)
            },
            onListening: { [weak self] bound in
                self?.lock.withLock { self?.publicURL = "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(bound)" }
                onListening(bound)
            })
        try await app.runService()
        logger.info("controller stopping: stopping every instance")
        for rt in lock.withLock({ Array(runtimes.values) }) { await rt.stopAll(keepQueue: false) }
    }
}

/// Renders the deploy layer's errors as JSON: spec errors as 422 with every diagnostic and its path.
struct DeployErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as SpecError {
            let errors = e.diagnostics.filter { $0.severity == .error }
            return jsonResponse(.object([
                "detail": .string(e.description),
                "errors": .array(errors.map { .object(["field": .string($0.path), "message": .string($0.message)]) }),
                "warnings": .array(e.diagnostics.filter { $0.severity == .warning }.map { .object(["field": .string($0.path), "message": .string($0.message)]) }),
            ]), status: 422)
        } catch let e as ServiceError {
            // the controller's own refusals (the instances' A1111 errors pass through as they are)
            return jsonResponse(.object(["detail": .string(e.detail), "field": e.field.map(JSONValue.string) ?? .null]), status: e.status)
        }
    }
}
