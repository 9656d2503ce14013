import AtelierDiffusion
import AtelierImaging
import AtelierQueue
import AtelierService
import Crypto
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore

/// How the server is configured (the `webui.sh` flags that concern HTTP).
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 7860
    /// EAS service token (`Authorization: <token>` or `Bearer <token>`)
    public var token: String?
    /// A1111 `--api-auth user:pass[,user2:pass2]` (HTTP Basic)
    public var apiAuth: [(user: String, password: String)] = []
    public var apiLog = false
    public var maxBodyBytes = 64 << 20
    /// the WebUI's static files (`Web/`); nil = no WebUI (`--nowebui`)
    public var webDir: String?
    /// what `/sdapi/v1/cmd-flags` reports (secrets already removed)
    public var cmdFlags: [String: JSONValue] = [:]
    /// a deployed instance's name, reported as `info.hostname` and in `X-Atelier-Instance`
    public var instanceName: String?
    /// `--filebrowser`: the data dir's files under `/atelier/files`
    public var fileBrowser = false
    public var maxUploadBytes = 8 << 30
    public init() {}
}

/// An A1111-shaped error response: `{"error", "detail", "body", "errors"}` (a1111-api.md §5.2).
public struct APIError: Error {
    public let status: Int
    public let error: String
    public let detail: String

    public init(status: Int, error: String, detail: String) {
        self.status = status
        self.error = error
        self.detail = detail
    }

    var json: JSONValue {
        .object(["error": .string(error), "detail": .string(detail), "body": .string(""), "errors": .string("\(status): \(detail)")])
    }
}

public func jsonResponse(_ value: JSONValue, status: Int = 200) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(data: value.data())))
}

/// Renders every thrown error as JSON: validation problems as FastAPI's 422, client mistakes
/// as 4xx in A1111's error shape, and only genuine faults as 500. Adds `X-Process-Time` and
/// logs one line per request.
public struct ErrorAndTimingMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger
    let maxBodyMB: Int

    public init(logger: Logger, maxBodyMB: Int) {
        self.logger = logger
        self.maxBodyMB = maxBodyMB
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = Date()
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            if !(error is HTTPError) && errorStatus(error) == 500 { logger.error("\(request.method) \(request.uri.path) failed: \(error)") }
            response = errorResponse(error, maxBodyMB: maxBodyMB)
        }
        let seconds = Date().timeIntervalSince(start)
        response.headers[.init("X-Process-Time")!] = String(format: "%.4f", seconds)
        // the watchdog's pings (twice a second from a controller) are not worth a log line each
        let level: Logger.Level = request.uri.path == "/internal/ping" && response.status.code == 200 ? .debug : .info
        logger.log(level: level, "\(request.method) \(request.uri.path) \(response.status.code) \(String(format: "%.1f", seconds * 1000)) ms")
        return response
    }
}

/// The HTTP status an error maps to (500 only for genuine faults).
func errorStatus(_ error: Error) -> Int {
    switch error {
    case is ValidationFailure, is RequestError: return 422
    case let e as ServiceError: return e.status
    case let e as APIError: return e.status
    case let e as QueueError: return e.status
    case let e as HTTPError: return Int(e.status.code)
    case is NIOTooManyBytesError: return 413
    default: return 500
    }
}

/// Renders an error as JSON: validation problems as FastAPI's 422, client mistakes as 4xx in
/// A1111's error shape, queue-protocol refusals as `{"code", "field", "message"}`.
func errorResponse(_ error: Error, maxBodyMB: Int) -> Response {
    switch error {
    case let e as ValidationFailure:
        return jsonResponse(.object(["detail": .array(e.problems.map(\.json))]), status: 422)
    case let e as ServiceError:
        return jsonResponse(APIError(status: e.status, error: "HTTPException", detail: e.detail).json, status: e.status)
    case let e as RequestError:
        return jsonResponse(.object(["detail": .array([FieldProblem(loc: [.string("body"), .string(e.field)], msg: e.message, type: "value_error").json])]), status: 422)
    case let e as APIError:
        return jsonResponse(e.json, status: e.status)
    case let e as QueueError:
        return jsonResponse(.object(["code": .int(e.status), "field": .string(e.field), "message": .string(e.message)]), status: e.status)
    case let e as HTTPError:
        let code = Int(e.status.code)
        let detail = code == 404 ? "Not Found" : code == 405 ? "Method Not Allowed" : code == 413 ? "Request body too large" : (e.body ?? e.status.reasonPhrase)
        return jsonResponse(.object(["detail": .string(detail)]), status: code)
    case is NIOTooManyBytesError:
        return jsonResponse(APIError(status: 413, error: "HTTPException", detail: "request body larger than the \(maxBodyMB) MB limit").json, status: 413)
    default:
        return jsonResponse(APIError(status: 500, error: String(describing: type(of: error)), detail: "").json.merging(errors: "\(error)"), status: 500)
    }
}

extension JSONValue {
    func merging(errors: String) -> JSONValue {
        guard case .object(var o) = self else { return self }
        o["errors"] = .string(errors)
        return .object(o)
    }
}

/// Browser sessions made by `POST /login`: a random id in an HttpOnly, SameSite=Strict cookie
/// and a CSRF token (double-submit: readable cookie echoed in `X-CSRF-Token` on state changes).
final class SessionStore: @unchecked Sendable {
    private let lock = NSLock()
    private var sessions: [String: String] = [:]  // session id → csrf token

    static func random() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    func create() -> (id: String, csrf: String) {
        let id = Self.random(), csrf = Self.random()
        lock.withLock { sessions[id] = csrf }
        return (id, csrf)
    }

    func csrf(for id: String) -> String? { lock.withLock { sessions[id] } }
    func remove(_ id: String) { lock.withLock { _ = sessions.removeValue(forKey: id) } }
}

/// The service token as callers send it, and how it is compared: EAS clients put it verbatim in
/// `Authorization`, others as `Bearer <token>`; compared in constant time (through SHA-256
/// digests), an empty token never matching.
public enum ServiceToken {
    public static func given(_ authorization: String?) -> String {
        let header = authorization ?? ""
        return header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : header
    }

    public static func matches(_ given: String, _ token: String) -> Bool {
        !given.isEmpty && AuthMiddleware<BasicRequestContext>.constantTimeEqual(given, token)
    }
}

/// Token / HTTP Basic / session-cookie authentication for `/sdapi` and `/internal` (ping and
/// the auth status excepted). Secrets are compared in constant time and never logged.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?
    let basic: [(user: String, password: String)]
    let sessions: SessionStore

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = SHA256.hash(data: Data(a.utf8)), y = SHA256.hash(data: Data(b.utf8))
        var diff: UInt8 = 0
        for (p, q) in zip(x, y) { diff |= p ^ q }
        return diff == 0
    }

    static func cookie(_ name: String, in request: Request) -> String? {
        guard let header = request.headers[.cookie] else { return nil }
        for part in header.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2 && kv[0] == name { return String(kv[1]) }
        }
        return nil
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        // the queue paths (/api/predict/…) check the token themselves, answering in the queue's error shape
        let guarded = (path.hasPrefix("/sdapi") || path.hasPrefix("/internal") || path.hasPrefix("/atelier/") || (path.hasPrefix("/api/") && !path.hasPrefix("/api/predict/"))
                       || path == "/openapi.json" || path == "/docs")
            && path != "/internal/ping" && path != "/internal/auth-status"
        guard guarded, token != nil || !basic.isEmpty else { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        if let token {
            if ServiceToken.matches(ServiceToken.given(header), token) { return try await next(request, context) }
        }
        if !basic.isEmpty, header.hasPrefix("Basic "),
           let decoded = Data(base64Encoded: String(header.dropFirst(6))).flatMap({ String(data: $0, encoding: .utf8) }),
           let colon = decoded.firstIndex(of: ":") {
            let user = String(decoded[..<colon]), pass = String(decoded[decoded.index(after: colon)...])
            if basic.contains(where: { Self.constantTimeEqual($0.user, user) && Self.constantTimeEqual($0.password, pass) }) {
                return try await next(request, context)
            }
        }
        if let id = Self.cookie("atelier_session", in: request), let csrf = sessions.csrf(for: id) {
            let safe = request.method == .get || request.method == .head
            if safe || Self.constantTimeEqual(request.headers[.init("X-CSRF-Token")!] ?? "", csrf) {
                return try await next(request, context)
            }
            throw APIError(status: 403, error: "Forbidden", detail: "missing or wrong X-CSRF-Token header")
        }
        if token == nil {
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            headers[.wwwAuthenticate] = "Basic"
            return Response(status: .unauthorized, headers: headers,
                            body: .init(byteBuffer: ByteBuffer(data: JSONValue.object(["detail": .string("Incorrect username or password")]).data())))
        }
        throw APIError(status: 401, error: "Unauthorized", detail: "missing or invalid Authorization token")
    }
}

/// The queue of the API edition: the service's queues and how many workers run them.
public struct QueueSetup: Sendable {
    public var service: QueueService
    /// `rpc.worker_threads`: jobs this instance takes at once
    public var workerThreads: Int
    /// what `meta.backend` reports
    public var backend: String

    public init(service: QueueService, workerThreads: Int, backend: String) {
        self.service = service
        self.workerThreads = workerThreads
        self.backend = backend
    }
}

/// The HTTP server: the AUTOMATIC1111 API over one instance (standard edition), plus the
/// asynchronous queue and its workers when `queue` is set (API edition).
public struct AtelierServer {
    public let instance: Instance
    public let configuration: ServerConfiguration
    public let queue: QueueSetup?
    let logger: Logger
    let sessions = SessionStore()

    public init(instance: Instance, configuration: ServerConfiguration, queue: QueueSetup? = nil, logger: Logger = Logger(label: "atelier")) {
        self.instance = instance
        self.configuration = configuration
        self.queue = queue
        self.logger = logger
    }

    var sdapi: SDAPIRoutes { SDAPIRoutes(instance: instance, configuration: configuration, logger: logger) }

    var queueRoutes: QueueRoutes? {
        queue.map { QueueRoutes(service: $0.service, token: configuration.token, backend: $0.backend, servablePaths: SDAPIRoutes.queueablePaths) }
    }

    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorAndTimingMiddleware(logger: logger, maxBodyMB: configuration.maxBodyBytes >> 20))
        if let webDir = configuration.webDir {
            // static files stay public: the page itself asks for the token (login form)
            router.add(middleware: FileMiddleware(webDir, searchForIndexHtml: true, logger: logger))
        }
        router.add(middleware: AuthMiddleware(token: configuration.token, basic: configuration.apiAuth, sessions: sessions))
        sdapi.register(on: router)
        ControlNetRoutes(instance: instance, configuration: configuration).register(on: router)
        queueRoutes?.register(on: router)
        LoginRoutes(configuration: configuration, sessions: sessions).register(on: router)
        OpenAPI.register(on: router)
        if configuration.fileBrowser {
            FileBrowserRoutes(data: instance.data, maxUploadBytes: configuration.maxUploadBytes).register(on: router)
        }
        return router
    }

    /// Runs until SIGTERM/SIGINT; `onListening` gets the bound port (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let address = BindAddress.hostname(configuration.host, port: configuration.port)
        let appConfiguration = ApplicationConfiguration(address: address, serverName: "Atelier")
        let onRunning: @Sendable (any Channel) async -> Void = { channel in onListening(channel.localAddress?.port ?? 0) }
        guard let queue, let queueRoutes else {
            // SIGTERM/SIGINT: the server's graceful shutdown waits for open requests, so first make
            // the running job stop at its next step (its images so far are still returned).
            let sources = Self.onTerminate { [instance] in instance.shutDown() }
            defer { sources.forEach { $0.cancel() } }
            let app = Application(router: buildRouter(), configuration: appConfiguration, onServerRunning: onRunning, logger: logger)
            try await app.runService()
            return
        }
        // API edition: a stop lets the workers finish (and publish) the jobs they hold, so a
        // graceful restart never costs a delivery; only a crash does.
        let recovered = try await queue.service.recover()
        if !recovered.isEmpty {
            logger.warning("queue: \(recovered.count) request(s) died with the previous process (max_delivery \(queue.service.configuration.maxDelivery)): error results written for index \(recovered.map(String.init).joined(separator: ", "))")
        }
        let routes = sdapi
        let workers = QueueWorkers(service: queue.service, count: queue.workerThreads, logger: logger) { path, body in
            await routes.respond(path: path, body: body)
        }
        // Our pings find dead watchers whose TCP connection never closed. websocket-client answers
        // a ping only while its owner waits in recv(), so a short period would cut off SDK users
        // whose loop body takes a while (and redeliver what they hold): one minute.
        let ws = WebSocketServerConfiguration(maxFrameSize: queue.service.configuration.maxPayloadBytes + (64 << 10),
                                              autoPing: .enabled(timePeriod: .seconds(60)))
        let app = Application(router: buildRouter(), server: .http1QueueWatch(configuration: ws, handlerFor: queueRoutes.watchHandler),
                              configuration: appConfiguration, onServerRunning: onRunning, logger: logger)
        workers.start()
        let sources = Self.onTerminate { workers.stopTaking() }
        defer { sources.forEach { $0.cancel() } }
        try await app.runService()
        logger.info("queue: stopping; waiting for running jobs to finish")
        await workers.stop()
    }

    static func onTerminate(_ action: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler(handler: action)
            source.resume()
            return source
        }
    }
}

/// The WebUI's login: `POST /login` with the token (JSON `{"password"}` or a form field
/// `password`; with `--api-auth` also `username`) sets the session cookie; `POST /logout` ends it;
/// `GET /internal/auth-status` tells the page whether it must ask.
struct LoginRoutes {
    let configuration: ServerConfiguration
    let sessions: SessionStore

    func register(on router: Router<BasicRequestContext>) {
        router.get("internal/auth-status") { request, _ -> Response in
            let required = configuration.token != nil || !configuration.apiAuth.isEmpty
            let id = AuthMiddleware<BasicRequestContext>.cookie("atelier_session", in: request)
            let loggedIn = id.flatMap { sessions.csrf(for: $0) } != nil
            return jsonResponse(.object(["auth_required": .bool(required), "logged_in": .bool(!required || loggedIn),
                                         "basic": .bool(!configuration.apiAuth.isEmpty)]))
        }
        router.post("login") { request, _ -> Response in
            var request = request
            let data = Data(buffer: try await request.collectBody(upTo: 64 << 10))
            var fields: [String: String] = [:]
            if let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                for (k, v) in o { fields[k] = "\(v)" }
            } else {
                for pair in String(decoding: data, as: UTF8.self).split(separator: "&") {
                    let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
                    if kv.count == 2 { fields[kv[0]] = kv[1] }
                }
            }
            let password = fields["password"] ?? ""
            var ok = false
            if let token = configuration.token { ok = AuthMiddleware<BasicRequestContext>.constantTimeEqual(password, token) }
            if !ok, let user = fields["username"] {
                ok = configuration.apiAuth.contains { AuthMiddleware<BasicRequestContext>.constantTimeEqual($0.user, user) && AuthMiddleware<BasicRequestContext>.constantTimeEqual($0.password, password) }
            }
            if configuration.token == nil && configuration.apiAuth.isEmpty { ok = true }
            guard ok else { throw APIError(status: 401, error: "Unauthorized", detail: "wrong password") }
            let (id, csrf) = sessions.create()
            var response = jsonResponse(.object(["ok": .bool(true), "csrf_token": .string(csrf)]))
            response.headers.append(.init(name: .setCookie, value: "atelier_session=\(id); Path=/; HttpOnly; SameSite=Strict"))
            response.headers.append(.init(name: .setCookie, value: "atelier_csrf=\(csrf); Path=/; SameSite=Strict"))
            return response
        }
        router.post("logout") { request, _ -> Response in
            if let id = AuthMiddleware<BasicRequestContext>.cookie("atelier_session", in: request) { sessions.remove(id) }
            var response = jsonResponse(.object(["ok": .bool(true)]))
            response.headers.append(.init(name: .setCookie, value: "atelier_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"))
            return response
        }
    }
}

