import Foundation

/// 64-byte aligned float32 buffer owned by one or more tensors.
///
/// Tensors are values whose storage is shared until written: every op in this layer
/// returns a fresh tensor, and in-place helpers (`withMutablePointer`) copy first when
/// the storage is shared.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int) {
        self.count = count
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit { free(pointer) }
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
        self.shape = shape
        let n = shape.reduce(1, *)
        storage = TensorStorage(count: n)
        storage.pointer.initialize(repeating: 0, count: n)
    }

    /// A tensor with unspecified contents, to be filled by the caller.
    public init(uninitialized shape: [Int]) {
        self.shape = shape
        storage = TensorStorage(count: shape.reduce(1, *))
    }

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not hold \(data.count) values")
        self.init(uninitialized: shape)
        data.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: data.count) }
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

    /// Write access; copies the storage first if another tensor shares it.
    public mutating func withMutablePointer<R>(_ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) {
            let fresh = TensorStorage(count: count)
            fresh.pointer.update(from: storage.pointer, count: count)
            storage = fresh
        }
        return try body(storage.pointer)
    }

    /// The raw pointer, for kernels that write into a tensor they just created.
    public var unsafePointer: UnsafeMutablePointer<Float> { storage.pointer }

    /// Same elements, new shape (no copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        var t = self
        t.shape = s
        return t
    }

    public subscript(flat i: Int) -> Float {
        get { storage.pointer[i] }
    }

    /// Slice along the first axis: rows `range` of a tensor whose first axis is the batch.
    public func slice(_ range: Range<Int>) -> Tensor {
        let inner = shape.dropFirst().reduce(1, *)
        let out = Tensor(uninitialized: [range.count] + shape.dropFirst())
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
