import CBLAS
import Foundation

/// The engine's thread budget: how many compute threads one generation may use.
///
/// One scheme for the whole process (docs/ARCHITECTURE.md): either the BLAS library
/// uses `threads` threads inside one call, or this layer splits independent work into
/// `threads` tasks with BLAS at one thread each — never both at once.
public enum Compute {
    nonisolated(unsafe) private static var _threads = max(1, ProcessInfo.processInfo.activeProcessorCount)

    public static var threads: Int { _threads }

    /// Sets the thread budget (operator flag `--threads`).
    public static func setThreads(_ n: Int) {
        _threads = max(1, n)
        BLASThreads.shared.setMultiThreaded()
    }

    /// Runs `body(task)` for `tasks` independent tasks on the thread budget, with BLAS at
    /// one thread inside each task.
    public static func parallel(tasks: Int, _ body: (Int) -> Void) {
        if tasks <= 1 || _threads <= 1 {
            for t in 0..<tasks { body(t) }
            return
        }
        BLASThreads.shared.enter(single: true)
        defer { BLASThreads.shared.leave() }
        DispatchQueue.concurrentPerform(iterations: tasks) { t in BLASThreads.inside(true) { body(t) } }
    }

    /// Splits `0..<n` into at most `threads` contiguous ranges for elementwise work;
    /// small inputs stay on the calling thread.
    public static func split(_ n: Int, minimum: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
        let parts = min(_threads, max(1, n / minimum))
        if parts <= 1 { body(0..<n); return }
        let chunk = (n + parts - 1) / parts
        let inside = BLASThreads.isInside
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = p * chunk, hi = min(n, lo + chunk)
            if lo < hi { BLASThreads.inside(inside) { body(lo..<hi) } }
        }
    }
}

/// OpenBLAS's thread count is process-wide, and its sums depend on it: the same GEMM run with 1 and
/// with 2 threads differs in the last bits. `Compute.parallel` runs BLAS at one thread inside its
/// tasks; calls elsewhere run at `Compute.threads`. The two modes never overlap: a call waits until
/// no call of the other mode is in flight, so generations running side by side in one process (or
/// test suites) cannot change each other's numbers. One generation at a time never waits.
final class BLASThreads: @unchecked Sendable {
    static let shared = BLASThreads()
    /// marks the threads working for a `Compute.parallel` region (their BLAS calls are already
    /// single-threaded, and must not wait for the other mode)
    private static let insideKey = "atelier.compute.parallel"
    private let condition = NSCondition()
    private var active = 0
    private var single = false
    private var count: Int32 = -1

    static var isInside: Bool { Thread.current.threadDictionary[insideKey] != nil }

    /// Runs `body` with this thread marked as working for a parallel region when `inside`.
    static func inside(_ inside: Bool, _ body: () -> Void) {
        guard inside, !isInside else { return body() }
        Thread.current.threadDictionary[insideKey] = true
        defer { Thread.current.threadDictionary.removeObject(forKey: insideKey) }
        body()
    }

    func enter(single wanted: Bool) {
        condition.lock()
        while active > 0 && single != wanted { condition.wait() }
        let wantedCount = wanted ? 1 : Int32(Compute.threads)
        if active == 0 && count != wantedCount {
            openblas_set_num_threads(wantedCount)
            count = wantedCount
        }
        single = wanted
        active += 1
        condition.unlock()
    }

    /// Sets BLAS to `Compute.threads` now (start-up, `--threads`), when no call is in flight.
    func setMultiThreaded() {
        enter(single: false)
        leave()
    }

    func leave() {
        condition.lock()
        active -= 1
        if active == 0 { condition.broadcast() }
        condition.unlock()
    }
}

/// Row-major single-precision GEMM: `C[m,n] = alpha * op(A) op(B) + beta * C`.
@inline(__always)
public func sgemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    Profiler.count(macs: m * n * k)
    // inside a Compute.parallel task the region holds single-threaded BLAS; elsewhere hold the
    // multi-threaded mode for this call
    let outside = !BLASThreads.isInside
    if outside { BLASThreads.shared.enter(single: false) }
    defer { if outside { BLASThreads.shared.leave() } }
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Reusable scratch memory for kernels (im2col columns, Winograd tiles). Buffers are kept
/// after use, so a step loop of same-shaped calls does not fault in fresh pages each call.
public enum Scratch {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var pool: [TensorStorage] = []
    /// Buffers kept at most (the largest win when full).
    static let poolLimit = 4

    /// Runs `body` with at least `count` floats of uninitialised memory.
    public static func with<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let buffer = take(count)
        defer { giveBack(buffer) }
        return try body(buffer.pointer)
    }

    /// Runs `body` with a tensor of `shape` over scratch memory (uninitialised); the tensor
    /// must not outlive the call — its buffer goes back to the scratch pool afterwards.
    public static func withTensor<R>(_ shape: [Int], _ body: (Tensor) throws -> R) rethrows -> R {
        let count = shape.reduce(1, *)
        let buffer = take(count)
        defer { giveBack(buffer) }
        return try body(Tensor(shape: shape, borrowing: buffer))
    }

    /// Lets go of the kept buffers (before a phase whose shapes differ, e.g. the VAE decode); they
    /// return to `BufferPool`, whose `drain` frees them.
    public static func drain() {
        let kept = lock.withLock { () -> [TensorStorage] in
            defer { pool = [] }
            return pool
        }
        withExtendedLifetime(kept) {}  // released here, outside the lock
    }

    private static func take(_ count: Int) -> TensorStorage {
        lock.withLock { () -> TensorStorage? in
            guard let i = pool.indices.filter({ pool[$0].count >= count })
                .min(by: { pool[$0].count < pool[$1].count }) else { return nil }
            return pool.remove(at: i)
        } ?? TensorStorage(count: count)
    }

    private static func giveBack(_ buffer: TensorStorage) {
        lock.withLock {
            pool.append(buffer)
            if pool.count > poolLimit {
                pool.remove(at: pool.indices.min(by: { pool[$0].count < pool[$1].count })!)
            }
        }
    }
}
