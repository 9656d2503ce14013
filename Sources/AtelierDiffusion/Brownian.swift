import Foundation

/// numpy's `SeedSequence(entropy, spawn_key, pool_size).generate_state(n)` (uint32 words):
/// the entropy pool hashing torchsde uses to give every node of its Brownian tree its own seeds.
public struct NumpySeedSequence: Sendable {
    let pool: [UInt32]

    public init(entropy: UInt64, spawnKey: [UInt64] = [], poolSize: Int = 4) {
        func words(_ v: UInt64) -> [UInt32] {
            if v == 0 { return [0] }
            var out: [UInt32] = [], n = v
            while n > 0 { out.append(UInt32(truncatingIfNeeded: n)); n >>= 32 }
            return out
        }
        var run = words(entropy)
        let spawn = spawnKey.flatMap(words)
        if !spawn.isEmpty && run.count < poolSize { run += Array(repeating: 0, count: poolSize - run.count) }
        let assembled = run + spawn

        var hashConst: UInt32 = 0x43B0_D7E5
        func hashmix(_ v: UInt32) -> UInt32 {
            var value = v ^ hashConst
            hashConst = hashConst &* 0x931E_8875
            value = value &* hashConst
            return value ^ (value >> 16)
        }
        func mix(_ x: UInt32, _ y: UInt32) -> UInt32 {
            let r = 0xCA01_F9DD &* x &- 0x4973_F715 &* y
            return r ^ (r >> 16)
        }
        var mixer = [UInt32](repeating: 0, count: poolSize)
        for i in 0..<poolSize { mixer[i] = hashmix(i < assembled.count ? assembled[i] : 0) }
        for src in 0..<poolSize {
            for dst in 0..<poolSize where src != dst { mixer[dst] = mix(mixer[dst], hashmix(mixer[src])) }
        }
        if assembled.count > poolSize {
            for src in poolSize..<assembled.count {
                for dst in 0..<poolSize { mixer[dst] = mix(mixer[dst], hashmix(assembled[src])) }
            }
        }
        pool = mixer
    }

    public func generateState(_ n: Int) -> [UInt32] {
        var hashConst: UInt32 = 0x8B51_F9DD
        return (0..<n).map { i in
            var v = pool[i % pool.count] ^ hashConst
            hashConst = hashConst &* 0x58F3_8DED
            v = v &* hashConst
            return v ^ (v >> 16)
        }
    }
}

/// torchsde 0.2.6's `BrownianTree` (a `BrownianInterval` with `halfway_tree=True`, `tol=1e-6`,
/// `pool_size=24`, no Lévy area) in float32: the Brownian motion W over [t0, t1] made by
/// bisecting intervals at their (6-decimal rounded) midpoints, every node's bridge noise a
/// standard-normal draw of the sample shape from its own seed (numpy SeedSequence of the entropy
/// and the node's (spawn key, depth)). A1111 replaces torchsde's `_randn` by its `randn_local`,
/// so the draws follow `randn_source` (CPU: PyTorch's CPU generator; NV/GPU: Philox).
/// Queries give `W(tb) − W(ta)` exactly as torchsde.
public final class BrownianTree {
    final class Node {
        let start: Double, end: Double
        let parent: Node?
        let isLeft: Bool
        var midway: Double?
        var left: Node?, right: Node?
        var wSeed: UInt32 = 0
        let spawnKey: UInt64, depth: Int
        init(start: Double, end: Double, parent: Node?, isLeft: Bool) {
            self.start = start; self.end = end; self.parent = parent; self.isLeft = isLeft
            spawnKey = parent.map { 2 * $0.spawnKey + (isLeft ? 0 : 1) } ?? 0
            depth = parent.map { $0.depth + 1 } ?? 0
        }
    }

    let count: Int
    let entropy: UInt64
    let source: NoiseSource
    let root: Node
    let rootW: [Float]
    /// torchsde keeps the 45 most recent node increments; values never depend on it (a node's
    /// increment is a pure function of its parent's and its seed), only the work does.
    private var cache: [ObjectIdentifier: (w: [Float], used: Int)] = [:]
    private var clock = 0
    private let cacheSize = 45

    /// Python's `round(x, 6)` (correctly rounded decimal, as printf's `%.6f`).
    static func round6(_ x: Double) -> Double { Double(String(format: "%.6f", x))! }

    /// `t0 ≤ t1`, both finite (the sampler checks its schedule first).
    public init(t0: Double, t1: Double, count: Int, entropy: UInt64, source: NoiseSource = .cpu) {
        self.count = count
        self.entropy = entropy
        self.source = source
        root = Node(start: Self.round6(t0), end: Self.round6(t1), parent: nil, isLeft: false)
        let seeds = NumpySeedSequence(entropy: entropy, poolSize: 24).generateState(3)
        var g = ImageNoise.generator(source, seed: UInt64(seeds[0]))
        let scale = Float((t1 - t0).squareRoot())
        rootW = g.randn(count).map { $0 * scale }
    }

    /// `W(tb) − W(ta)` for ta ≤ tb (clamped to [t0, t1] as torchsde does, with its warning).
    public func increment(_ a: Double, _ b: Double) -> [Float] {
        let ta = min(max(a, root.start), root.end), tb = min(max(b, root.start), root.end)
        guard ta <= tb else { return [Float](repeating: .nan, count: count) }  // NaN times: NaN noise, no trap
        let ra = Self.round6(ta), rb = Self.round6(tb)
        if ta == tb || ra == rb { return [Float](repeating: 0, count: count) }
        var nodes: [Node] = []
        locate(root, ra, rb, &nodes, depth: 0)
        var w = increment(of: nodes[0])
        for n in nodes.dropFirst() {
            let wi = increment(of: n)
            for j in w.indices { w[j] = w[j] + wi[j] }
        }
        return w
    }

    private func split(_ node: Node) {
        let mid = Self.round6(0.5 * (node.end + node.start))
        node.midway = mid
        let seeds = NumpySeedSequence(entropy: entropy, spawnKey: [node.spawnKey, UInt64(node.depth)], poolSize: 24).generateState(4)
        node.wSeed = seeds[0]
        node.left = Node(start: node.start, end: mid, parent: node, isLeft: true)
        node.right = Node(start: mid, end: node.end, parent: node, isLeft: false)
    }

    /// The tree's nodes that tile [ta, tb], left to right (torchsde's `_loc`; with the halfway
    /// tree the nodes do not depend on where the search starts).
    private func locate(_ node: Node, _ ta: Double, _ tb: Double, _ out: inout [Node], depth: Int) {
        if depth >= 256 { out.append(node); return }  // cannot happen for times on the 1e-6 grid
        if ta == node.start && tb == node.end { out.append(node); return }
        if node.midway == nil { split(node) }
        let mid = node.midway!
        if tb <= mid {
            locate(node.left!, ta, tb, &out, depth: depth + 1)
        } else if ta >= mid {
            locate(node.right!, ta, tb, &out, depth: depth + 1)
        } else {
            locate(node.left!, ta, mid, &out, depth: depth + 1)
            locate(node.right!, mid, tb, &out, depth: depth + 1)
        }
    }

    /// A node's increment from its parent's (the Brownian bridge at the parent's midpoint):
    /// left = W·l/h + √(l·r/h)·z, right = W − left, z the parent's seeded draw.
    private func increment(of node: Node) -> [Float] {
        guard let parent = node.parent else { return rootW }
        clock += 1
        if let hit = cache[ObjectIdentifier(node)] {
            cache[ObjectIdentifier(node)] = (hit.w, clock)
            return hit.w
        }
        let w = increment(of: parent)
        let hRecip = 1 / (parent.end - parent.start)
        let leftDiff = parent.midway! - parent.start, rightDiff = parent.end - parent.midway!
        let l = Float(leftDiff), hr = Float(hRecip), sd = Float((leftDiff * rightDiff * hRecip).squareRoot())
        var g = ImageNoise.generator(source, seed: UInt64(parent.wSeed))
        let z = g.randn(count)
        var out = [Float](repeating: 0, count: count)
        for j in 0..<count {
            let leftW = (w[j] * l) * hr + sd * z[j]
            out[j] = node.isLeft ? leftW : w[j] - leftW
        }
        if cache.count >= cacheSize, let oldest = cache.min(by: { $0.value.used < $1.value.used }) {
            cache.removeValue(forKey: oldest.key)
        }
        cache[ObjectIdentifier(node)] = (out, clock)
        return out
    }
}

/// k-diffusion's `BrownianTreeNoiseSampler` as A1111 builds it for the SDE samplers: one
/// torchsde tree per image over [σ_min, σ_max] (the full schedule's smallest positive and largest
/// σ, float32), entropy = the image's seed; `(σ, σ_next)` gives `(W(σ_next) − W(σ)) / √|σ_next − σ|`
/// for every image, concatenated.
public final class BrownianNoiseSampler {
    let trees: [BrownianTree]
    /// the queries computed ahead (`prepare`) and their noise, one block each
    private var prepared: [(sigma: Float, next: Float)] = []
    private var table: [Float] = []

    public init(seeds: [UInt64], perImage: Int, sigmaMin: Float, sigmaMax: Float, source: NoiseSource = .cpu) {
        let (lo, hi) = sigmaMin < sigmaMax ? (sigmaMin, sigmaMax) : (sigmaMax, sigmaMin)
        trees = seeds.map { BrownianTree(t0: Double(lo), t1: Double(hi), count: perImage, entropy: $0, source: source) }
    }

    /// Floats the noise of one query takes (every image's block).
    var blockCount: Int { trees.reduce(0) { $0 + $1.count } }

    /// Computes the noise of a sampler's `queries` before its first step, so the steps look it up
    /// (`callAsFunction(_:_:into:)`) without building the tree's nodes and arrays then. The values
    /// are the same (a node's increment does not depend on the order of queries); skipped past
    /// `maxFloats` of noise (then each query is computed when asked).
    public func prepare(_ queries: [(Float, Float)], maxFloats: Int = 1 << 24) {
        (prepared, table) = ([], [])
        guard !queries.isEmpty, queries.count * blockCount <= maxFloats else { return }
        table.reserveCapacity(queries.count * blockCount)
        for (a, b) in queries { table += self(a, b) }
        prepared = queries.map { (sigma: $0.0, next: $0.1) }
    }

    /// The noise for the step σ → σ_next written into `out`: a prepared query is copied from the
    /// table (no allocation); any other is computed.
    public func callAsFunction(_ sigma: Float, _ sigmaNext: Float, into out: inout [Float]) {
        guard let k = prepared.firstIndex(where: { $0.sigma == sigma && $0.next == sigmaNext }) else {
            out = self(sigma, sigmaNext)
            return
        }
        let n = blockCount
        if out.count != n { out = [Float](repeating: 0, count: n) }
        table.withUnsafeBufferPointer { t in
            out.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: t.baseAddress! + k * n, count: n) }
        }
    }

    /// `W(σ_next) − W(σ)` of every image's tree (sign-corrected), before the scaling.
    public func increments(_ sigma: Float, _ sigmaNext: Float) -> [Float] {
        let (lo, hi, sign): (Float, Float, Float) = sigma < sigmaNext ? (sigma, sigmaNext, 1) : (sigmaNext, sigma, -1)
        return trees.flatMap { tree in tree.increment(Double(lo), Double(hi)).map { $0 * sign } }
    }

    /// The noise for the step σ → σ_next: increments / √|σ_next − σ| (a correctly rounded
    /// square root, as CUDA's; PyTorch's CPU build takes MKL's, which may be 1 ulp away).
    public func callAsFunction(_ sigma: Float, _ sigmaNext: Float) -> [Float] {
        let d = abs(sigmaNext - sigma).squareRoot()
        return increments(sigma, sigmaNext).map { $0 / d }
    }
}
