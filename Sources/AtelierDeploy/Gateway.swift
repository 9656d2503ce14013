import AsyncHTTPClient
import AtelierHTTP
import AtelierService
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1

/// The gateway's routing of `/api/predict/<service>/…`: checks the service token, sends each
/// job to a free instance (others wait in order), progress/interrupt/skip to the instance
/// running the caller's job, settings changes and refreshes to every instance, the rest to any
/// healthy one. Every answer names the instance in `X-Atelier-Instance`.
public enum Gateway {
    static let jobPaths: Set<String> = ["/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/extra-single-image",
                                        "/sdapi/v1/extra-batch-images", "/controlnet/detect"]
    static let broadcastPaths: Set<String> = ["/sdapi/v1/options", "/sdapi/v1/refresh-checkpoints", "/sdapi/v1/refresh-loras",
                                              "/sdapi/v1/refresh-vae", "/sdapi/v1/refresh-embeddings", "/sdapi/v1/reload-checkpoint",
                                              "/sdapi/v1/unload-checkpoint", "/controlnet/model_list"]
    static let jobControlPaths: Set<String> = ["/sdapi/v1/progress", "/sdapi/v1/interrupt", "/sdapi/v1/skip", "/internal/progress"]
    static let publicPaths: Set<String> = ["/internal/ping", "/internal/auth-status", "/login", "/logout"]
    static let hopByHop: Set<String> = ["connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
                                        "content-length", "proxy-authorization", "proxy-connection"]

    /// The gateway's connections to the instances: kept alive, up to 128 per instance (the
    /// shared client's 8 would queue the 9th concurrent request behind the others).
    public static let client: HTTPClient = {
        var c = HTTPClient.Configuration()
        c.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 128)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }()

    /// One request to an instance; the whole answer is read (bounded).
    static func call(port: Int, method: HTTPMethod, path: String, query: String?, headers: [String: String], body: ByteBuffer?,
                     timeout: TimeAmount = .hours(2)) async throws -> (status: Int, headers: HTTPHeaders, body: ByteBuffer) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)" + (query.map { $0.isEmpty ? "" : "?\($0)" } ?? ""))
        request.method = method
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body { request.body = .bytes(body) }
        let r = try await client.execute(request, timeout: timeout)
        let data = try await r.body.collect(upTo: 512 << 20)
        return (Int(r.status.code), r.headers, data)
    }

    static func token(_ request: Request) -> String { ServiceToken.given(request.headers[.authorization]) }

    static func hasSession(_ request: Request) -> Bool {
        (request.headers[.cookie] ?? "").contains("atelier_session=")
    }

    /// Proxies a synchronous request of `service` (path already without `/api/predict/<name>`).
    static func proxy(_ request: Request, rest: String, service: ServiceRuntime) async throws -> Response {
        var path = rest.isEmpty ? "/" : rest
        if path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let isAPI = path.hasPrefix("/sdapi") || path.hasPrefix("/controlnet") || path.hasPrefix("/atelier/") || (path.hasPrefix("/internal") && !publicPaths.contains(path))
            || path == "/openapi.json" || path == "/docs"
        let token = service.current.token
        if isAPI && !(hasSession(request) && !request.headers.contains(.authorization)) {
            guard ServiceToken.matches(Self.token(request), token) else {
                throw APIError(status: 401, error: "Unauthorized", detail: "missing or invalid Authorization token for service \(service.name)")
            }
        }
        if !isAPI && !publicPaths.contains(path) && !service.spec.enableWebservice {
            throw APIError(status: 404, error: "Not Found", detail: "service \(service.name) serves no WebUI (metadata.enable_webservice is not true)")
        }
        var request = request
        let body = try await request.collectBody(upTo: 64 << 20)
        var headers: [String: String] = [:]
        for f in request.headers where !hopByHop.contains(f.name.canonicalName) { headers[f.name.canonicalName] = f.value }
        // the caller's token is replaced by the instance's own in `forward` (they differ during a rotation)
        let method = HTTPMethod(rawValue: request.method.rawValue)
        let query = request.uri.query
        let isJob = request.method == .post && jobPaths.contains(path)

        if isJob {
            let task = taskID(body)
            let lease: InstancePool.Lease
            do { lease = try await service.pool.acquire(task: task, timeout: .seconds(3600)) } catch {
                throw APIError(status: 503, error: "Service Unavailable", detail: "\(service.name): \(error)")
            }
            defer { Task { await service.pool.release(lease) } }
            return try await forward(port: lease.port, id: lease.id, method: method, path: path, query: query, headers: headers, body: body, service: service)
        }
        if request.method == .post && broadcastPaths.contains(path) {
            let targets = await service.pool.allHealthy()
            guard !targets.isEmpty else { throw APIError(status: 503, error: "Service Unavailable", detail: "\(service.name): no instance is running") }
            var first: Response?
            for t in targets {
                let r = try await forward(port: t.port, id: t.id, method: method, path: path, query: query, headers: headers, body: body, service: service)
                if first == nil || r.status.code >= 400 { first = r }
            }
            return first!
        }
        var target: (id: String, port: Int)?
        if jobControlPaths.contains(path) {
            target = await service.pool.running(task: taskID(body) ?? query.flatMap(queryTask))
        }
        if target == nil { target = await service.pool.any() }
        if target == nil { target = await waitAny(service) }
        guard let t = target else {
            throw APIError(status: 503, error: "Service Unavailable", detail: "\(service.name): no instance is running (starting or restarting; try again)")
        }
        return try await forward(port: t.port, id: t.id, method: method, path: path, query: query, headers: headers, body: body, service: service)
    }

    /// Waits up to 60 s for an instance to come (back) up.
    static func waitAny(_ service: ServiceRuntime) async -> (id: String, port: Int)? {
        for _ in 0..<600 {
            if let t = await service.pool.any() { return t }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    static func forward(port: Int, id: String, method: HTTPMethod, path: String, query: String?, headers: [String: String], body: ByteBuffer,
                        service: ServiceRuntime) async throws -> Response {
        var headers = headers
        if headers["authorization"] != nil { headers["authorization"] = service.token(of: id) }
        let answer: (status: Int, headers: HTTPHeaders, body: ByteBuffer)
        do {
            answer = try await call(port: port, method: method, path: path, query: query, headers: headers, body: method == .GET || method == .HEAD ? nil : body)
        } catch {
            await service.pool.setHealthy(id, false)
            throw APIError(status: 502, error: "Bad Gateway",
                           detail: "instance \(id) of \(service.name) stopped while serving \(path) (\(error)); it is being restarted — send the request again")
        }
        var fields = HTTPFields()
        for h in answer.headers where !hopByHop.contains(h.name.lowercased()) {
            if let name = HTTPField.Name(h.name) { fields.append(HTTPField(name: name, value: h.value)) }
        }
        fields[HTTPField.Name("X-Atelier-Instance")!] = id
        return Response(status: .init(code: answer.status), headers: fields, body: .init(byteBuffer: answer.body))
    }

    /// `force_task_id` / `id_task` / `alwayson_scripts.id_task` of a JSON body.
    static func taskID(_ body: ByteBuffer) -> String? {
        guard body.readableBytes > 0, body.readableBytes < 64 << 20,
              let o = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else { return nil }
        if let t = o["force_task_id"] as? String { return t }
        if let t = o["id_task"] as? String { return t }
        if let s = o["alwayson_scripts"] as? [String: Any], let t = s["id_task"] { return "\(t)" }
        return nil
    }

    static func queryTask(_ query: String) -> String? {
        for part in query.split(separator: "&") where part.hasPrefix("id_task=") { return String(part.dropFirst(8)) }
        return nil
    }
}
