import Foundation

/// Wall time per operation kind, for `atelier bench --profile`. Off by default: one branch per op.
public enum Profiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) private static var totals: [String: (seconds: Double, calls: Int, flops: Double)] = [:]
    private static let lock = NSLock()

    @inline(__always)
    public static func measure<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let start = Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        let f0 = flops
        defer {
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let dt = Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9 - start
            lock.withLock {
                let t = totals[name] ?? (0, 0, 0)
                totals[name] = (t.seconds + dt, t.calls + 1, t.flops + _flops - f0)
            }
        }
        return try body()
    }

    nonisolated(unsafe) private static var _flops: Double = 0

    /// Adds multiply-add work (2 FLOP per MAC) done by a GEMM-like op.
    @inline(__always)
    public static func count(macs: Int) {
        guard enabled else { return }
        lock.withLock { _flops += 2 * Double(macs) }
    }

    public static var flops: Double { lock.withLock { _flops } }

    public static func reset() { lock.withLock { totals = [:]; _flops = 0 } }

    /// (name, seconds, calls, FLOP), most expensive first.
    public static var report: [(String, Double, Int, Double)] {
        lock.withLock { totals.map { ($0.key, $0.value.seconds, $0.value.calls, $0.value.flops) }.sorted { $0.1 > $1.1 } }
    }
}
