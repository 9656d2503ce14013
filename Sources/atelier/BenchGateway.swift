import ArgumentParser
import AsyncHTTPClient
import AtelierDeploy
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// `atelier bench gateway`: what the gateway adds to a request. A throw-away controller deploys
/// one standard-edition instance; 16 concurrent clients call a cheap endpoint
/// (`GET /sdapi/v1/progress`) straight on the instance and through `/api/predict/<service>`,
/// in the same run; p50/p99 of both and their difference are reported.
struct GatewayBench {
    let requests: Int
    let clients: Int
    let json: Bool

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atelier-bench-gateway-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        var logger = Logger(label: "bench")
        logger.logLevel = .critical  // the cancelled server's shutdown lines are not the bench's business
        let controller = try Controller(dir: dir, config: ControllerConfig(), logger: logger)
        let bound = AsyncStream<Int>.makeStream()
        let server = Task { try await controller.run(host: "127.0.0.1", port: 0) { bound.continuation.yield($0) } }
        var it = bound.stream.makeAsyncIterator()
        guard let port = await it.next() else { throw ValidationError("the controller did not start") }
        let base = "http://127.0.0.1:\(port)"
        let spec = #"{"metadata": {"name": "bench", "instance": 1}, "containers": [{"image": "local/stable-diffusion-webui:bench-standard", "script": "./webui.sh --nowebui --port 8000", "port": 8000}]}"#
        let created = try await call(base + "/api/services", method: .POST, token: "Bearer \(controller.adminToken)", body: Data(spec.utf8))
        guard let token = created["token"] as? String else { throw ValidationError("deploy failed: \(created)") }
        var instancePort = 0
        for _ in 0..<600 where instancePort == 0 {
            let s = try await call(base + "/api/services/bench", method: .GET, token: "Bearer \(controller.adminToken)", body: nil)
            if s["status"] as? String == "Running", let list = s["instance_list"] as? [[String: Any]] { instancePort = list.first?["port"] as? Int ?? 0 }
            try await Task.sleep(for: .milliseconds(100))
        }
        guard instancePort > 0 else {
            _ = try? await call(base + "/api/services/bench", method: .DELETE, token: "Bearer \(controller.adminToken)", body: nil)
            throw ValidationError("the bench instance did not start (log under \(dir.path)/services/bench/logs)")
        }
        let direct = "http://127.0.0.1:\(instancePort)/sdapi/v1/progress"
        let viaGateway = "\(base)/api/predict/bench/sdapi/v1/progress"
        _ = try await latencies(direct, token: token, count: 64)  // warm-up: connections, caches
        _ = try await latencies(viaGateway, token: token, count: 64)
        let d = try await latencies(direct, token: token, count: requests).sorted()
        let g = try await latencies(viaGateway, token: token, count: requests).sorted()
        _ = try await call(base + "/api/services/bench", method: .DELETE, token: "Bearer \(controller.adminToken)", body: nil)
        server.cancel()
        func p(_ a: [Double], _ q: Double) -> Double { a[min(a.count - 1, Int(Double(a.count) * q))] * 1000 }
        let gflops = measureSGEMM(n: 1024, runs: 2)
        if json {
            let o: [String: Any] = ["name": "gateway", "clients": clients, "requests": requests,
                                    "direct_p50_ms": p(d, 0.5), "direct_p99_ms": p(d, 0.99), "gateway_p50_ms": p(g, 0.5), "gateway_p99_ms": p(g, 0.99),
                                    "added_p50_ms": p(g, 0.5) - p(d, 0.5), "added_p99_ms": p(g, 0.99) - p(d, 0.99),
                                    "ratio": p(g, 0.5) / max(p(d, 0.5), 1e-9), "sgemm_gflops": gflops, "load_average": loadAverage()]
            print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: "gateway, %d clients, %d requests: direct p50 %.2f ms p99 %.2f ms | through the gateway p50 %.2f ms p99 %.2f ms | added p50 %.2f ms p99 %.2f ms (target p99 ≤ 2 ms) | sgemm %.0f GFLOP/s, load %.2f",
                         clients, requests, p(d, 0.5), p(d, 0.99), p(g, 0.5), p(g, 0.99), p(g, 0.5) - p(d, 0.5), p(g, 0.99) - p(d, 0.99), gflops, loadAverage()))
        }
    }

    func latencies(_ url: String, token: String, count: Int) async throws -> [Double] {
        try await concurrentLatencies(url, headers: ["Authorization": token], count: count, clients: clients)
    }

    func call(_ url: String, method: HTTPMethod, token: String, body: Data?) async throws -> [String: Any] {
        try await benchCall(url, method: method, headers: ["Authorization": token], body: body)
    }
}

/// One request of a bench's set-up (deploy, start a job, interrupt), its JSON answer as a
/// dictionary (`["raw": text]` when it is not JSON).
func benchCall(_ url: String, method: HTTPMethod, headers: [String: String] = [:], body: Data?) async throws -> [String: Any] {
    var r = HTTPClientRequest(url: url)
    r.method = method
    for (k, v) in headers { r.headers.add(name: k, value: v) }
    if let body { r.body = .bytes(ByteBuffer(data: body)) }
    let response = try await Gateway.client.execute(r, timeout: .seconds(3600))
    let data = Data(buffer: try await response.body.collect(upTo: 64 << 20))
    return (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? ["raw": String(decoding: data, as: UTF8.self)]
}

/// `count` GETs of `url` spread over `clients` concurrent loops on the gateway's pooled client;
/// seconds per request (a non-200 answer is an error).
func concurrentLatencies(_ url: String, headers: [String: String] = [:], count: Int, clients: Int) async throws -> [Double] {
    try await withThrowingTaskGroup(of: [Double].self) { group in
        for c in 0..<clients {
            let share = count / clients + (c < count % clients ? 1 : 0)
            group.addTask {
                var out: [Double] = []
                for _ in 0..<share {
                    var r = HTTPClientRequest(url: url)
                    for (k, v) in headers { r.headers.add(name: k, value: v) }
                    let t0 = now()
                    let response = try await Gateway.client.execute(r, timeout: .seconds(30))
                    _ = try await response.body.collect(upTo: 4 << 20)
                    out.append(now() - t0)
                    guard response.status.code == 200 else { throw ValidationError("\(url): HTTP \(response.status.code)") }
                }
                return out
            }
        }
        var all: [Double] = []
        for try await part in group { all += part }
        return all
    }
}
