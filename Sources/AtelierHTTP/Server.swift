import AtelierDiffusion
import AtelierImaging
import AtelierService
import Crypto
import Foundation
import Hummingbird
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
    /// what `/sdapi/v1/cmd-flags` reports (secrets already removed)
    public var cmdFlags: [String: JSONValue] = [:]
    public init() {}
}

/// An A1111-shaped error response: `{"error", "detail", "body", "errors"}` (a1111-api.md §5.2).
struct APIError: Error {
    let status: Int
    let error: String
    let detail: String

    var json: JSONValue {
        .object(["error": .string(error), "detail": .string(detail), "body": .string(""), "errors": .string("\(status): \(detail)")])
    }
}

func jsonResponse(_ value: JSONValue, status: Int = 200) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(data: value.data())))
}

/// Renders every thrown error as JSON: validation problems as FastAPI's 422, client mistakes
/// as 4xx in A1111's error shape, and only genuine faults as 500. Adds `X-Process-Time` and
/// logs one line per request.
struct ErrorAndTimingMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger
    let maxBodyMB: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = Date()
        var response: Response
        do {
            response = try await next(request, context)
        } catch let e as ValidationFailure {
            response = jsonResponse(.object(["detail": .array(e.problems.map(\.json))]), status: 422)
        } catch let e as ServiceError {
            response = jsonResponse(APIError(status: e.status, error: "HTTPException", detail: e.detail).json, status: e.status)
        } catch let e as RequestError {
            response = jsonResponse(.object(["detail": .array([FieldProblem(loc: [.string("body"), .string(e.field)], msg: e.message, type: "value_error").json])]), status: 422)
        } catch let e as APIError {
            response = jsonResponse(e.json, status: e.status)
        } catch let e as HTTPError {
            let code = Int(e.status.code)
            let detail = code == 404 ? "Not Found" : code == 405 ? "Method Not Allowed" : code == 413 ? "Request body too large" : (e.body ?? e.status.reasonPhrase)
            response = jsonResponse(.object(["detail": .string(detail)]), status: code)
        } catch is NIOTooManyBytesError {
            response = jsonResponse(APIError(status: 413, error: "HTTPException", detail: "request body larger than the \(maxBodyMB) MB limit").json, status: 413)
        } catch {
            logger.error("\(request.method) \(request.uri.path) failed: \(error)")
            response = jsonResponse(APIError(status: 500, error: String(describing: type(of: error)), detail: "").json
                .merging(errors: "\(error)"), status: 500)
        }
        let seconds = Date().timeIntervalSince(start)
        response.headers[.init("X-Process-Time")!] = String(format: "%.4f", seconds)
        logger.info("\(request.method) \(request.uri.path) \(response.status.code) \(String(format: "%.1f", seconds * 1000)) ms")
        return response
    }
}

extension JSONValue {
    func merging(errors: String) -> JSONValue {
        guard case .object(var o) = self else { return self }
        o["errors"] = .string(errors)
        return .object(o)
    }
}

/// Token / HTTP Basic authentication for `/sdapi` and `/internal` (ping excepted). Secrets are
/// compared in constant time and never logged.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?
    let basic: [(user: String, password: String)]

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = SHA256.hash(data: Data(a.utf8)), y = SHA256.hash(data: Data(b.utf8))
        var diff: UInt8 = 0
        for (p, q) in zip(x, y) { diff |= p ^ q }
        return diff == 0
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let guarded = (path.hasPrefix("/sdapi") || path.hasPrefix("/internal") || path == "/openapi.json" || path == "/docs")
            && path != "/internal/ping"
        guard guarded, token != nil || !basic.isEmpty else { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        if let token {
            let given = header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : header
            if !given.isEmpty && Self.constantTimeEqual(given, token) { return try await next(request, context) }
        }
        if !basic.isEmpty, header.hasPrefix("Basic "),
           let decoded = Data(base64Encoded: String(header.dropFirst(6))).flatMap({ String(data: $0, encoding: .utf8) }),
           let colon = decoded.firstIndex(of: ":") {
            let user = String(decoded[..<colon]), pass = String(decoded[decoded.index(after: colon)...])
            if basic.contains(where: { Self.constantTimeEqual($0.user, user) && Self.constantTimeEqual($0.password, pass) }) {
                return try await next(request, context)
            }
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

/// The standard edition's HTTP server: the AUTOMATIC1111 API over one instance.
public struct AtelierServer {
    public let instance: Instance
    public let configuration: ServerConfiguration
    let logger: Logger

    public init(instance: Instance, configuration: ServerConfiguration, logger: Logger = Logger(label: "atelier")) {
        self.instance = instance
        self.configuration = configuration
        self.logger = logger
    }

    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorAndTimingMiddleware(logger: logger, maxBodyMB: configuration.maxBodyBytes >> 20))
        router.add(middleware: AuthMiddleware(token: configuration.token, basic: configuration.apiAuth))
        SDAPIRoutes(instance: instance, configuration: configuration, logger: logger).register(on: router)
        return router
    }

    /// Runs until SIGTERM/SIGINT; `onListening` gets the bound port (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let app = Application(
            router: buildRouter(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "Atelier"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        try await app.runService()
    }
}
