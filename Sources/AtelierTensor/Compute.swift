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
        openblas_set_num_threads(Int32(_threads))
    }

    /// Runs `body(task)` for `tasks` independent tasks on the thread budget, with BLAS at
    /// one thread inside each task.
    public static func parallel(tasks: Int, _ body: (Int) -> Void) {
        if tasks <= 1 || _threads <= 1 {
            for t in 0..<tasks { body(t) }
            return
        }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(_threads)) }
        DispatchQueue.concurrentPerform(iterations: tasks, execute: body)
    }

    /// Splits `0..<n` into at most `threads` contiguous ranges for elementwise work;
    /// small inputs stay on the calling thread.
    public static func split(_ n: Int, minimum: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
        let parts = min(_threads, max(1, n / minimum))
        if parts <= 1 { body(0..<n); return }
        let chunk = (n + parts - 1) / parts
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = p * chunk, hi = min(n, lo + chunk)
            if lo < hi { body(lo..<hi) }
        }
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
