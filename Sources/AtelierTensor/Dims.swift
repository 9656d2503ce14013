import Foundation

/// A tensor shape of rank ≤ 6 held inline (no heap array): what ops build their output
/// shapes from, and the key under which `ShapeTable` interns shapes.
public struct Dims: Hashable, Sendable, CustomStringConvertible {
    public static let maxRank = 6
    public private(set) var rank: Int
    private var d: (Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0)

    public init(_ d0: Int) { rank = 1; d.0 = d0 }
    public init(_ d0: Int, _ d1: Int) { rank = 2; d.0 = d0; d.1 = d1 }
    public init(_ d0: Int, _ d1: Int, _ d2: Int) { rank = 3; d.0 = d0; d.1 = d1; d.2 = d2 }
    public init(_ d0: Int, _ d1: Int, _ d2: Int, _ d3: Int) { rank = 4; d.0 = d0; d.1 = d1; d.2 = d2; d.3 = d3 }

    /// The dims of `shape`, or nil past `maxRank`.
    public init?(_ shape: [Int]) {
        guard shape.count <= Self.maxRank else { return nil }
        rank = shape.count
        for (i, v) in shape.enumerated() { self[i] = v }
    }

    public subscript(i: Int) -> Int {
        get {
            precondition(i >= 0 && i < rank, "dimension \(i) of a rank-\(rank) shape")
            return withUnsafeBytes(of: d) { $0.load(fromByteOffset: i * 8, as: Int.self) }
        }
        set {
            precondition(i >= 0 && i < rank, "dimension \(i) of a rank-\(rank) shape")
            withUnsafeMutableBytes(of: &d) { $0.storeBytes(of: newValue, toByteOffset: i * 8, as: Int.self) }
        }
    }

    public var count: Int { (0..<rank).reduce(1) { $0 * self[$1] } }

    /// These dims with the last one set to `n` (a linear layer's output).
    public func replacingLast(_ n: Int) -> Dims { var r = self; r[rank - 1] = n; return r }

    /// These dims with dimension `i` set to `n`.
    public func replacing(_ i: Int, with n: Int) -> Dims { var r = self; r[i] = n; return r }

    /// The shape as an array (allocates; `ShapeTable` does this once per distinct shape).
    public var array: [Int] { (0..<rank).map { self[$0] } }

    public static func == (a: Dims, b: Dims) -> Bool {
        a.rank == b.rank && (0..<a.rank).allSatisfy { a[$0] == b[$0] }
    }

    public func hash(into h: inout Hasher) {
        h.combine(rank)
        for i in 0..<rank { h.combine(self[i]) }
    }

    public var description: String { "\(array)" }
}

/// Interned shapes: each distinct shape of rank ≤ 6 is one `[Int]`, shared by every tensor of
/// that shape. A step loop makes the same shapes every step, so after the first step making a
/// tensor allocates nothing for its shape (the arrays are retained, not built).
enum ShapeTable {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var table: [Dims: [Int]] = [:]

    static func shape(_ dims: Dims) -> [Int] {
        lock.withLock {
            if let s = table[dims] { return s }
            let s = dims.array
            table[dims] = s
            return s
        }
    }

    /// The interned equal of `shape` (itself past `Dims.maxRank`).
    static func shape(_ shape: [Int]) -> [Int] {
        guard let dims = Dims(shape) else { return shape }
        return self.shape(dims)
    }
}
