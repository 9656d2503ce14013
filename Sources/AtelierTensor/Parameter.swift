import Foundation

/// A model weight, kept in memory either as float32 or — when the checkpoint stores it in
/// float16 and the operator allows it — as those float16 bits, widened to float32 for each
/// use (exact: every float16 is a float32).
///
/// Half-resident weights halve a model's memory (SD 1.5's UNet: 3.4 → 1.7 GB) for the cost of
/// one widening pass per layer call into scratch memory, small next to the layer's GEMM.
/// The computed numbers are the same either way. In-place patches (LoRA) `promote` a weight
/// to a float32 copy; `demote` drops it again, which restores the checkpoint's values exactly.
public final class Parameter: @unchecked Sendable {
    public let shape: [Int]
    public var count: Int { shape.reduce(1, *) }
    private let lock = NSLock()
    /// the float32 values: always for a float32-resident weight, after `promote` for a half one
    private var resident: Tensor?
    /// the stored float16 bits of a half-resident weight
    private let half: UnsafeMutablePointer<UInt16>?

    /// A float32-resident weight sharing `tensor`'s storage.
    public init(_ tensor: Tensor) {
        shape = tensor.shape
        resident = tensor
        half = nil
    }

    /// A half-resident weight: copies `count` float16 values from `bits` (may be unaligned).
    public init(halfBits bits: UnsafeRawPointer, shape: [Int]) {
        self.shape = shape
        let n = shape.reduce(1, *)
        let p = UnsafeMutablePointer<UInt16>.allocate(capacity: max(n, 1))
        UnsafeMutableRawPointer(p).copyMemory(from: bits, byteCount: n * 2)
        half = p
        resident = nil
    }

    deinit { half?.deallocate() }

    /// True while the weight is held as float16 only.
    public var isHalfResident: Bool { lock.withLock { resident == nil } }

    /// Bytes this weight holds in memory now.
    public var residentBytes: Int {
        lock.withLock { (half == nil ? 0 : 2 * count) + (resident == nil ? 0 : 4 * count) }
    }

    /// Runs `body` with the weight as float32: the resident tensor, or the float16 bits widened
    /// into scratch memory that lives only for the call (`body` must not keep the tensor).
    public func withFloat32<R>(_ body: (Tensor) throws -> R) rethrows -> R {
        if let t = lock.withLock({ resident }) { return try body(t) }
        let n = count
        return try Scratch.withTensor(shape) { t in
            Profiler.measure("widen") { Self.widen(half!, into: t.unsafePointer, count: n) }
            return try body(t)
        }
    }

    /// A float32 copy of the values (or the resident tensor itself), for reading and tests.
    public var float32: Tensor {
        if let t = lock.withLock({ resident }) { return t }
        let t = Tensor(uninitialized: shape, pooled: false)
        Self.widen(half!, into: t.unsafePointer, count: count)
        return t
    }

    public var scalars: [Float] { float32.scalars }

    /// Makes the weight float32-resident (widening a half one) and returns that tensor, whose
    /// storage the caller may change in place.
    @discardableResult
    public func promote() -> Tensor {
        lock.withLock {
            if let t = resident { return t }
            let t = Tensor(uninitialized: shape, pooled: false)
            Self.widen(half!, into: t.unsafePointer, count: count)
            resident = t
            return t
        }
    }

    /// Drops a promoted half weight's float32 copy, so it is the checkpoint's values again.
    /// Returns false for a float32-resident weight (it has no other copy to go back to).
    @discardableResult
    public func demote() -> Bool {
        lock.withLock {
            guard half != nil else { return false }
            resident = nil
            return true
        }
    }

    /// Copies row `r` of a 2-D weight `[rows, columns]` into `dst` as float32: an embedding
    /// lookup, for which a half-resident table widens only the rows asked for.
    public func copyRow(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(shape.count == 2 && r >= 0 && r < shape[0], "row \(r) of a weight of shape \(shape)")
        let columns = shape[1]
        if let t = lock.withLock({ resident }) {
            dst.update(from: t.unsafePointer + r * columns, count: columns)
        } else {
            Self.widen(half! + r * columns, into: dst, count: columns)
        }
    }

    /// float16 → float32 over `count` values (F16C conversion where the CPU has it).
    public static func widen(_ src: UnsafePointer<UInt16>, into dst: UnsafeMutablePointer<Float>, count: Int) {
        Compute.split(count, minimum: 1 << 18, (src, dst)) { context, r in
            let (src, dst) = context
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                let h = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<UInt16>.self)
                let f = SIMD8<Float>(unsafeBitCast(h, to: SIMD8<Float16>.self))
                UnsafeMutableRawPointer(dst + i).storeBytes(of: f, as: SIMD8<Float>.self)
                i += 8
            }
            while i < r.upperBound {
                dst[i] = Float(Float16(bitPattern: src[i]))
                i += 1
            }
        }
    }
}
