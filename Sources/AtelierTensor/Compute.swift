import CBLAS
import CKernels
import Foundation

/// The engine's thread budget: how many compute threads one generation may use.
///
/// One scheme for the whole process (docs/ARCHITECTURE.md): a GEMM splits its output between
/// `threads` threads, or this layer splits independent work into `threads` tasks whose GEMMs run on
/// their own thread — never both at once. The threads are the engine's own pool (CKernels'
/// `atelier_parallel_for`), which posts a job without allocating. No result depends on the split: the GEMM sums every
/// element in the same order however its output is divided (`atelier_gemm`).
public enum Compute {
    nonisolated(unsafe) private static var _threads = max(1, ProcessInfo.processInfo.activeProcessorCount)

    public static var threads: Int { _threads }

    /// Sets the thread budget (operator flag `--threads`); OpenBLAS, used only as the bench's
    /// yardstick, gets the same count.
    public static func setThreads(_ n: Int) {
        _threads = max(1, n)
        openblas_set_num_threads(Int32(_threads))
    }

    /// Runs `body(task)` for `tasks` independent tasks on the thread budget; GEMMs inside a task
    /// stay on its thread. `body` may capture: with 2+ threads that costs one small allocation per
    /// call (`withoutActuallyEscaping`); the step loop's ops use `parallel(tasks:_:_:)` instead.
    public static func parallel(tasks: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in parallel(tasks: tasks, body) { body, t in body(t) } }
    }

    /// Splits `0..<n` into at most `threads` contiguous ranges for elementwise work;
    /// small inputs stay on the calling thread. `body` may capture, as in `parallel(tasks:_:)`.
    public static func split(_ n: Int, minimum: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
        withoutActuallyEscaping(body) { body in split(n, minimum: minimum, body) { body, range in body(range) } }
    }
}

extension Compute {
    /// `parallel(tasks:)` for the step loop's ops: `body` captures nothing — what it reads comes in
    /// `context` — so a call allocates nothing, where a capturing closure's context is allocated per
    /// call (`withoutActuallyEscaping`). A capture still works, allocated.
    @inline(__always)
    public static func parallel<Context>(tasks: Int, _ context: Context, _ body: @escaping (Context, Int) -> Void) {
        if tasks <= 1 || _threads <= 1 {
            for t in 0..<tasks { body(context, t) }
            return
        }
        var job = ContextJob(context: context, body: body)
        run(parts: tasks, &job) { raw, part in
            let job = raw.assumingMemoryBound(to: ContextJob<Context>.self)
            ParallelRegion.inside(true) { job.pointee.body(job.pointee.context, part) }
        }
    }

    /// `split` for the step loop's ops, allocating nothing as `parallel(tasks:_:_:)`.
    @inline(__always)
    public static func split<Context>(_ n: Int, minimum: Int = 1 << 15, _ context: Context,
                                      _ body: @escaping (Context, Range<Int>) -> Void) {
        let parts = min(_threads, max(1, n / minimum))
        if parts <= 1 { body(context, 0..<n); return }
        var job = SplitContext(context: context, body: body, n: n, chunk: (n + parts - 1) / parts,
                               inside: ParallelRegion.isInside)
        run(parts: parts, &job) { raw, part in
            let s = raw.assumingMemoryBound(to: SplitContext<Context>.self).pointee
            let lo = part * s.chunk, hi = min(s.n, lo + s.chunk)
            if lo < hi { ParallelRegion.inside(s.inside) { s.body(s.context, lo..<hi) } }
        }
    }

    /// Posts `job` to the pool: `invoke(job, part)` for every part. The job and its header live on
    /// this stack for the call (`atelier_parallel_for` returns when every part is done).
    @inline(__always)
    private static func run<Job>(parts: Int, _ job: inout Job, _ invoke: @escaping (UnsafeMutableRawPointer, Int) -> Void) {
        withUnsafeMutablePointer(to: &job) { jobPointer in
            var header = JobHeader(invoke: invoke, job: UnsafeMutableRawPointer(jobPointer))
            withUnsafeMutablePointer(to: &header) { headerPointer in
                atelier_parallel_for(parts, Int32(_threads), { raw, part in
                    let header = raw!.assumingMemoryBound(to: JobHeader.self)
                    header.pointee.invoke(header.pointee.job, part)
                }, headerPointer)
            }
        }
    }
}

/// What `atelier_parallel_for` gets as its context: the part runner and the job it reads.
private struct JobHeader {
    let invoke: (UnsafeMutableRawPointer, Int) -> Void
    let job: UnsafeMutableRawPointer
}

/// A job whose body reads its inputs from `context`.
private struct ContextJob<Context> {
    let context: Context
    let body: (Context, Int) -> Void
}

/// A split's context: the caller's, its body and the chunking.
private struct SplitContext<Context> {
    let context: Context
    let body: (Context, Range<Int>) -> Void
    let n: Int, chunk: Int, inside: Bool
}

/// Marks the threads working for a `Compute.parallel` task: their GEMMs run on the thread itself
/// (the task split already uses the thread budget). The mark is a C thread-local flag: read by
/// every GEMM call and set around every split chunk, so it must cost no lookup or allocation.
enum ParallelRegion {
    static var isInside: Bool { atelier_parallel_region() != 0 }

    /// Runs `body` with this thread marked as working for a parallel region when `inside`.
    static func inside(_ inside: Bool, _ body: () -> Void) {
        guard inside, !isInside else { return body() }
        atelier_set_parallel_region(1)
        defer { atelier_set_parallel_region(0) }
        body()
    }
}

/// Row-major single-precision GEMM: `C[m,n] = alpha * op(A) op(B) + beta * C`.
///
/// Atelier's own kernels (`atelier_gemm` in CKernels): 512-bit tiles where the CPU runs AVX-512F
/// (unless ATELIER_AVX512=0), 256-bit tiles otherwise, with the same bits either way and for any
/// thread count, since each element is one chain of fused multiply-adds over k in order. OpenBLAS
/// 0.3.21 sums in an order that depends on its thread count and kernel set, and its kernel set is
/// whatever OPENBLAS_CORETYPE pins (AVX2 kernels on some AVX-512 machines: half the rate).
/// Outside a `Compute.parallel` task the output is split between `Compute.threads` threads: by rows
/// when C is at least as tall as wide, else by columns (`parts` overrides the count, for tests).
@inline(__always)
public func sgemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, parts wanted: Int? = nil
) {
    Profiler.count(macs: m * n * k)
    let wide: Int32 = GEMM.wide ? 1 : 0
    let ta: Int32 = transA ? 1 : 0, tb: Int32 = transB ? 1 : 0
    // small products and those inside a parallel task stay on this thread
    let threads = wanted ?? (ParallelRegion.isInside || m * n * k < 1 << 18 ? 1 : Compute.threads)
    // parts of whole tiles (rows in 12s, columns in 32s), at least one tile-row/-column each
    let byRows = m >= n
    let unit = byRows ? 12 : 32
    let units = ((byRows ? m : n) + unit - 1) / unit
    let parts = min(threads, units)
    if parts <= 1 {
        atelier_gemm(wide, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    let per = (units + parts - 1) / parts * unit
    atelier_gemm_split(parts, Int32(Compute.threads), byRows ? 1 : 0, per, wide, ta, tb, m, n, k, alpha, a, lda, b, ldb,
                       beta, c, ldc)
}

/// The GEMM's tile width, and OpenBLAS as the machine's yardstick for the bench.
public enum GEMM {
    /// 512-bit tiles (where the CPU runs AVX-512F; ATELIER_AVX512=0 turns them off). Both widths
    /// give the same bits; a test flips this to compare them.
    nonisolated(unsafe) public static var wide = Ops.avx512ByDefault {
        didSet { if !Ops.cpuHasAVX512 { wide = false } }
    }

    /// OpenBLAS's kernel set (e.g. "Haswell", "Cooperlake"), and "set by OPENBLAS_CORETYPE" where the
    /// environment pinned it: Debian's build picks its kernels once, at load, and a pin to AVX2
    /// kernels on an AVX-512 CPU halves its sgemm rate (255 vs 477 GFLOP/s measured on a Zen 5).
    public static var openBLASCore: String {
        let name = String(cString: openblas_get_corename())
        guard let pinned = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] else { return name }
        return "\(name) (set by OPENBLAS_CORETYPE=\(pinned))"
    }

    /// OpenBLAS's sgemm (`C = A·B`, row-major, on `Compute.threads` threads): the bench's reference
    /// for the machine's matmul rate. The engine never calls it.
    public static func openBLAS(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
    }
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
            // the smallest kept buffer that holds `count` (a plain loop: no array or closure context per call)
            var best: Int?
            for i in pool.indices where pool[i].count >= count {
                if let b = best, pool[b].count <= pool[i].count { continue }
                best = i
            }
            return best.map { pool.remove(at: $0) }
        } ?? BufferPool.storage(count)
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

/// Per-thread scratch for leaf kernels whose `Compute.split` parts do not know which worker they
/// are (`atelier_thread_scratch`): each kernel its own slot, the memory kept for the thread's life,
/// so calls in a step loop allocate nothing. Kernels that do know (a `Compute.parallel` task per
/// worker) slice one `Scratch` buffer instead.
enum ThreadScratch: Int32 {
    case winogradRows = 0

    /// At least `count` floats of this thread's slot (requests bounded by an image row); not to be
    /// held past the kernel's call.
    func pointer(_ count: Int) -> UnsafeMutablePointer<Float> { atelier_thread_scratch(rawValue, count) }
}
