import CKernels
import Foundation

/// 64-byte aligned float32 buffer owned by one or more tensors.
///
/// Tensors are values whose storage is shared, never written after the op that made it: every
/// op in this layer returns a fresh tensor. Activations come from `BufferPool` (a step loop
/// reuses the previous step's buffers, storage objects included); weights are allocated outside it.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    /// A buffer of its own, freed with the storage (weights; activations use `BufferPool.storage`).
    public init(count: Int) {
        self.count = count
        pointer = BufferPool.allocate(count)
    }

    deinit { free(pointer) }
}

/// Activation buffers kept for reuse, by exact size.
///
/// Every op returns a fresh tensor; without reuse each large buffer is a fresh `mmap` whose
/// pages fault in (zeroed by the kernel) on first write — measured at about 1.2 GB and
/// several seconds of system time per SD 1.5 UNet forward. The same shapes recur every
/// sampler step, so steps 2…N find every buffer here (`freshAllocations` stops growing).
///
/// The pool keeps a reference to each storage it hands out; a storage is free again when the
/// pool's is its only reference. So a reused tensor costs no allocation at all — neither its
/// buffer nor its storage object (steps 2…N make no malloc calls for tensors).
/// Bounded: before a fresh allocation, free buffers past `limitBytes` are let go, the sizes
/// used longest ago first.
public enum BufferPool {
    /// The storages of one size, and when that size was last asked for (for eviction).
    private final class Bucket {
        var storages: [TensorStorage] = []
        var used = 0
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var buckets: [Int: Bucket] = [:]
    nonisolated(unsafe) private static var tick = 0
    nonisolated(unsafe) private static var _fresh = 0

    /// Bound on free buffers (ATELIER_BUFFER_POOL_MB, default 1024 MB), enforced before each fresh
    /// allocation: buffers freed in between may go past it until the next one.
    nonisolated(unsafe) public static var limitBytes =
        (Int(ProcessInfo.processInfo.environment["ATELIER_BUFFER_POOL_MB"] ?? "") ?? 1024) << 20

    /// Bound on free buffers while a one-off phase runs (`oneOffPhase`).
    public static let oneOffBoundBytes = 256 << 20
    nonisolated(unsafe) private static var oneOffPhases = 0

    /// The bound in force (call under the lock).
    private static var bound: Int { oneOffPhases > 0 ? min(limitBytes, oneOffBoundBytes) : limitBytes }

    /// Runs a phase whose buffer sizes do not recur in the step loop (the final VAE decode, an init
    /// image's encode). While it runs, each fresh allocation first lets go of free buffers past
    /// `oneOffBoundBytes`, so the phase's earlier levels' sizes do not add to its peak; afterwards
    /// the kernel scratch and the free buffers are freed, so an idle server does not hold them.
    /// The bound is the process's: a generation running beside the phase sees it too (slower, not
    /// wrong), and the drain frees its free buffers as well. SD 1.5's 512² decode: peak RSS
    /// 3.46 → 2.96 GiB for about 3.5 % more decode time (buffers faulted in again).
    public static func oneOffPhase<R>(_ body: () throws -> R) rethrows -> R {
        lock.withLock { oneOffPhases += 1 }
        defer {
            lock.withLock { oneOffPhases -= 1 }
            Scratch.drain()
            drain()
        }
        return try body()
    }

    /// Activation buffers allocated from the system (not found in the pool) since start.
    public static var freshAllocations: Int { lock.withLock { _fresh } }

    /// Bytes held for reuse now (free buffers).
    public static var bytesCached: Int { lock.withLock { freeBytes() } }

    /// Buffers from this size up are 2 MB aligned and asked for transparent huge pages: a
    /// 3.4 GB model then faults in 1 700 pages instead of 850 000 (load time), where the
    /// kernel allows it (`/sys/kernel/mm/transparent_hugepage/enabled` = madvise or always).
    static let hugePageBytes = 4 << 20

    static func allocate(_ count: Int) -> UnsafeMutablePointer<Float> {
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let huge = bytes >= hugePageBytes
        guard posix_memalign(&raw, huge ? 2 << 20 : 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        #if os(Linux)
        if huge { _ = madvise(raw, bytes, 14 /* MADV_HUGEPAGE */) }
        #endif
        return raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// A storage of `count` floats: a free one of that size, or a fresh one.
    static func storage(_ count: Int) -> TensorStorage {
        lock.withLock {
            tick += 1
            if let bucket = buckets[count] {
                bucket.used = tick
                for i in bucket.storages.indices where isKnownUniquelyReferenced(&bucket.storages[i]) {
                    return bucket.storages[i]
                }
            }
            _fresh += 1
            let bytes = max(count, 1) * 4
            guard bytes <= bound else {
                // too large to keep: its own buffer, after letting go of the free ones past the bound
                evict(toFit: 0)
                return TensorStorage(count: count)
            }
            evict(toFit: bytes)
            let fresh = TensorStorage(count: count)
            let bucket = buckets[count] ?? Bucket()
            bucket.used = tick
            bucket.storages.append(fresh)
            buckets[count] = bucket
            return fresh
        }
    }

    /// Bytes of the storages only the pool holds (call under the lock).
    private static func freeBytes() -> Int {
        buckets.reduce(0) { $0 + freeIndices($1.value).count * max($1.key, 1) * 4 }
    }

    /// Indices of `bucket`'s storages that only the pool holds (call under the lock).
    private static func freeIndices(_ bucket: Bucket) -> [Int] {
        bucket.storages.indices.filter { isKnownUniquelyReferenced(&bucket.storages[$0]) }
    }

    /// Lets go of free storages, sizes used longest ago first, until `bytes` more fit `limitBytes`
    /// (the bound in force by default; 0 with no bytes lets go of every free one).
    private static func evict(toFit bytes: Int, limitBytes: Int? = nil) {
        let limitBytes = limitBytes ?? bound
        var free = freeBytes()
        for (size, bucket) in buckets.sorted(by: { $0.value.used < $1.value.used }) {
            for i in freeIndices(bucket).reversed() where free + bytes > limitBytes {
                bucket.storages.remove(at: i)
                free -= max(size, 1) * 4
            }
            if bucket.storages.isEmpty { buckets[size] = nil }
        }
    }

    /// Frees every free buffer (the pipeline does before a VAE decode, whose sizes differ), and
    /// hands glibc's freed heap pages back to the system: buffers under glibc's mmap threshold
    /// (up to 32 MB once it has adapted) go back to its heap on `free`, where they would stay in
    /// the resident set under the decode's own buffers (0.3 GB of a 512² UNet's activations).
    public static func drain() {
        lock.withLock { evict(toFit: 0, limitBytes: 0) }
        atelier_release_free_heap()
    }
}

/// A dense, row-major (C-contiguous) float32 tensor. Activations are NCHW, token
/// sequences `[batch, tokens, channels]`, linear weights `[out, in]`, conv weights
/// `[out, in, kh, kw]` — PyTorch's layouts, so checkpoint tensors load without reshuffling.
public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    public private(set) var storage: TensorStorage

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        self.shape = ShapeTable.shape(shape)
        let n = shape.reduce(1, *)
        storage = BufferPool.storage(n)
        storage.pointer.initialize(repeating: 0, count: n)
    }

    /// A tensor with unspecified contents, to be filled by the caller. Weights that live as
    /// long as their model pass `pooled: false` (see `BufferPool`).
    public init(uninitialized shape: [Int], pooled: Bool = true) {
        self.shape = ShapeTable.shape(shape)
        let n = shape.reduce(1, *)
        storage = pooled ? BufferPool.storage(n) : TensorStorage(count: n)
    }

    /// A pooled tensor of `dims` with unspecified contents (the step loop's way: no array built).
    public init(uninitialized dims: Dims) {
        shape = ShapeTable.shape(dims)
        storage = BufferPool.storage(dims.count)
    }

    /// The shape inline, for building other shapes without arrays (rank ≤ `Dims.maxRank`).
    public var dims: Dims {
        guard let d = Dims(shape) else { preconditionFailure("rank \(rank) is past Dims.maxRank") }
        return d
    }

    public init(shape: [Int], data: [Float], pooled: Bool = true) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not hold \(data.count) values")
        self.init(uninitialized: shape, pooled: pooled)
        data.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: data.count) }
    }

    /// A tensor over (the first elements of) an existing buffer, shared, not copied.
    init(shape: [Int], borrowing storage: TensorStorage) {
        precondition(shape.reduce(1, *) <= storage.count, "shape \(shape) does not fit a buffer of \(storage.count)")
        self.shape = shape
        self.storage = storage
    }

    public init(filling shape: [Int], with value: Float) {
        self.init(uninitialized: shape)
        storage.pointer.initialize(repeating: value, count: count)
    }

    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }

    /// Read-only access to the elements.
    @inlinable public func withPointer<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafePointer(storage.pointer))
    }

    /// The raw pointer, for kernels that write into a tensor they just created.
    public var unsafePointer: UnsafeMutablePointer<Float> { storage.pointer }

    /// Same elements, new shape (no copy, no array built).
    public func reshaped(_ dims: Dims) -> Tensor {
        precondition(dims.count == count, "cannot reshape \(shape) to \(dims)")
        var t = self
        t.shape = ShapeTable.shape(dims)
        return t
    }

    /// Same elements, new shape (no copy); one dimension may be -1 (inferred).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        var t = self
        t.shape = ShapeTable.shape(s)
        return t
    }

    public subscript(flat i: Int) -> Float {
        get { storage.pointer[i] }
    }

    /// Slice along the first axis: rows `range` of a tensor whose first axis is the batch, copied
    /// (the shape built inline up to `Dims.maxRank`: no array in a sampler's steps).
    public func slice(_ range: Range<Int>) -> Tensor {
        let inner = count / shape[0]
        let out = Dims(shape).map { Tensor(uninitialized: $0.replacing(0, with: range.count)) }
            ?? Tensor(uninitialized: [range.count] + shape.dropFirst())
        out.storage.pointer.update(from: storage.pointer + range.lowerBound * inner, count: range.count * inner)
        return out
    }

    /// Concatenation along the first axis.
    /// `[1, T_i, C]` tensors padded to the longest T by repeating their last row (A1111's
    /// `stack_conds`), each returned separately.
    public static func padToLongest(_ parts: [Tensor]) -> [Tensor] {
        let longest = parts.map { $0.shape[1] }.max() ?? 0
        return parts.map { t in
            guard t.shape[1] < longest else { return t }
            let c = t.shape[2]
            var data = t.scalars
            let last = Array(data[((t.shape[1] - 1) * c)...])
            for _ in t.shape[1]..<longest { data += last }
            return Tensor(shape: [1, longest, c], data: data)
        }
    }

    public static func stack(_ parts: [Tensor]) -> Tensor {
        precondition(!parts.isEmpty)
        let inner = Array(parts[0].shape.dropFirst())
        let rows = parts.reduce(0) { $0 + $1.shape[0] }
        let out = Tensor(uninitialized: [rows] + inner)
        var offset = 0
        for p in parts {
            precondition(Array(p.shape.dropFirst()) == inner, "stack: \(p.shape) vs \(inner)")
            (out.storage.pointer + offset).update(from: p.storage.pointer, count: p.count)
            offset += p.count
        }
        return out
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor\(shape)" }
}
