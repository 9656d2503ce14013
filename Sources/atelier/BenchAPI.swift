import ArgumentParser
import AsyncHTTPClient
import AtelierDeploy
import AtelierHTTP
import AtelierService
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// `atelier bench api`: how fast the API answers while the instance is idle and while it
/// generates. An in-process server on a temporary data dir; 16 concurrent clients call
/// `GET /sdapi/v1/options` and, in the same run, the trivial `GET /internal/ping` (the framework's
/// floor); then the same while a txt2img runs (needs `--model`).
struct APIBench {
    let requests: Int
    let clients: Int
    let model: String?
    let size: Int
    let json: Bool

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atelier-bench-api-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = DataDirectory(root: dir)
        try data.create()
        if let model {
            let src = URL(fileURLWithPath: model)
            for ext in ["safetensors", "yaml", "json"] {
                let f = src.deletingPathExtension().appendingPathExtension(ext)
                if FileManager.default.fileExists(atPath: f.path) {
                    try FileManager.default.createSymbolicLink(at: data.checkpointDir.appendingPathComponent("bench.\(ext)"), withDestinationURL: f)
                }
            }
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        let instance = try Instance(data: data, hashing: false)
        var config = ServerConfiguration()
        config.port = 0
        let server = AtelierServer(instance: instance, configuration: config, logger: logger)
        let bound = AsyncStream<Int>.makeStream()
        let task = Task { try await server.run { bound.continuation.yield($0) } }
        var it = bound.stream.makeAsyncIterator()
        guard let port = await it.next() else { throw ValidationError("the server did not start") }
        defer { task.cancel() }
        let base = "http://127.0.0.1:\(port)"
        let gflops = measureSGEMM(n: 1024, runs: 2)
        _ = try await latencies(base + "/sdapi/v1/options", count: 64)
        var rows: [(String, [Double], [Double])] = []
        rows.append(("idle", try await latencies(base + "/sdapi/v1/options", count: requests).sorted(),
                     try await latencies(base + "/internal/ping", count: requests).sorted()))
        if model != nil {
            let body = #"{"prompt": "bench", "steps": 200, "width": \#(size), "height": \#(size), "seed": 1}"#
            let generation = Task { try await call(base + "/sdapi/v1/txt2img", body: Data(body.utf8)) }
            // wait until the job runs
            for _ in 0..<600 {
                let p = try await call(base + "/sdapi/v1/progress?skip_current_image=true", body: nil)
                if (p["state"] as? [String: Any])?["job_count"] as? Int ?? 0 > 0 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let busyOptions = try await latencies(base + "/sdapi/v1/options", count: requests).sorted()
            let busyPing = try await latencies(base + "/internal/ping", count: requests).sorted()
            _ = try? await call(base + "/sdapi/v1/interrupt", body: Data("{}".utf8))
            _ = try? await generation.value
            rows.append(("generating", busyOptions, busyPing))
        }
        func p(_ a: [Double], _ q: Double) -> Double { a[min(a.count - 1, Int(Double(a.count) * q))] * 1000 }
        for (state, options, ping) in rows {
            if json {
                let o: [String: Any] = ["name": "api", "state": state, "clients": clients, "requests": requests,
                                        "options_p50_ms": p(options, 0.5), "options_p99_ms": p(options, 0.99),
                                        "floor_ping_p50_ms": p(ping, 0.5), "floor_ping_p99_ms": p(ping, 0.99),
                                        "ratio": p(options, 0.5) / max(p(ping, 0.5), 1e-9), "sgemm_gflops": gflops, "load_average": loadAverage()]
                print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
            } else {
                print(String(format: "api %@, %d clients: /sdapi/v1/options p50 %.2f ms p99 %.2f ms | floor /internal/ping p50 %.2f ms p99 %.2f ms | ratio %.2f (target p99 ≤ 5 ms while generating) | sgemm %.0f GFLOP/s, load %.2f",
                             state as NSString, clients, p(options, 0.5), p(options, 0.99), p(ping, 0.5), p(ping, 0.99),
                             p(options, 0.5) / max(p(ping, 0.5), 1e-9), gflops, loadAverage()))
            }
        }
    }

    func latencies(_ url: String, count: Int) async throws -> [Double] {
        try await concurrentLatencies(url, count: count, clients: clients)
    }

    func call(_ url: String, body: Data?) async throws -> [String: Any] {
        try await benchCall(url, method: body == nil ? .GET : .POST, headers: body == nil ? [:] : ["Content-Type": "application/json"], body: body)
    }
}
