import Foundation

/// A1111's `randn_source` setting.
public enum NoiseSource: String, CaseIterable, Sendable, Codable {
    /// `torch.randn` on the CPU generator (MT19937), bit for bit as PyTorch on x86-64/AVX2.
    case cpu = "CPU"
    /// A1111's default "GPU": the CUDA generator. Atelier gives what an NVIDIA GPU user gets
    /// through A1111's NV source (Philox) — the same numbers for the same seed.
    case gpu = "GPU"
    /// A1111's `rng_philox` (Philox4x32-10 + Box–Muller), independent of the hardware.
    case nv = "NV"

    public init?(label: String) {
        self.init(rawValue: label.uppercased())
    }
}

/// A stream of standard-normal float32 blocks, one generator per image.
public protocol NormalGenerator {
    /// The next `count` values, as `torch.randn([count])` on this generator would give them.
    mutating func randn(_ count: Int) -> [Float]
    /// The same values written into `out` (`out.count` of them): a sampler's per-step draw, no array made.
    mutating func randn(into out: UnsafeMutableBufferPointer<Float>)
}

extension NormalGenerator {
    public mutating func randn(_ count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buf, initialized in
            randn(into: buf)
            initialized = count
        }
    }
}

// MARK: - CPU: PyTorch's MT19937 + normal_fill

/// `torch.Generator("cpu").manual_seed(seed)` and `torch.randn` (see docs/noise: the AVX2
/// `normal_fill` kernel with Cephes-style log/sincos and fused multiply-adds at fixed points).
public struct TorchCPUGenerator: NormalGenerator {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624
    /// the cached second value of the double Box–Muller path (numel < 16)
    private var cachedNormal: Double?

    public init(seed: UInt64) {
        state[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1..<624 {
            let prev = state[j - 1]
            state[j] = 1_812_433_253 &* (prev ^ (prev >> 30)) &+ UInt32(j)
        }
        index = 624
    }

    mutating func nextWord() -> UInt32 {
        if index >= 624 { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    private mutating func twist() {
        for i in 0..<624 {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
            var v = state[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { v ^= 0x9908_B0DF }
            state[i] = v
        }
        index = 0
    }

    mutating func uniformFloat() -> Float { Float(nextWord() & 0xFF_FFFF) * 0x1p-24 }

    mutating func uniformDouble() -> Double {
        let hi = UInt64(nextWord()), lo = UInt64(nextWord())
        return Double(((hi << 32) | lo) & ((1 << 53) - 1)) * 0x1p-53
    }

    public mutating func randn(into d: UnsafeMutableBufferPointer<Float>) {
        let n = d.count
        if n < 16 {
            for i in 0..<n { d[i] = Float(normalDouble()) }
            return
        }
        for i in 0..<n { d[i] = uniformFloat() }
        var k = 0
        while k + 16 <= n {
            Self.transform16(d, at: k)
            k += 16
        }
        if n % 16 != 0 {
            for i in (n - 16)..<n { d[i] = uniformFloat() }
            Self.transform16(d, at: n - 16)
        }
    }

    private mutating func normalDouble() -> Double {
        if let c = cachedNormal {
            cachedNormal = nil
            return c
        }
        let u1 = uniformDouble(), u2 = uniformDouble()
        let r = (-2 * log1p(-u2)).squareRoot()
        let theta = 2 * Double.pi * u1
        cachedNormal = r * sin(theta)
        return r * cos(theta)
    }

    /// Box–Muller on one block of 16 uniforms: pairs (j, j+8).
    static func transform16(_ d: UnsafeMutableBufferPointer<Float>, at k: Int) {
        for j in 0..<8 {
            let u1 = 1 - d[k + j], u2 = d[k + j + 8]
            let r = (-2 * AVXMath.log(u1)).squareRoot()
            let theta = Float(bitPattern: 0x40C9_0FDB) * u2
            let (s, c) = AVXMath.sincos(theta)
            d[k + j] = r * c + 0  // + 0 turns −0 into +0 as `* std + mean` does
            d[k + j + 8] = r * s + 0
        }
    }
}

/// The float32 log and sincos of PyTorch's `avx_mathfun.h`, with the fused multiply-adds
/// GCC emits under -mfma (each `fma` below is one rounding; everything else is plain).
enum AVXMath {
    @inline(__always) static func f(_ bits: UInt32) -> Float { Float(bitPattern: bits) }

    static func log(_ x: Float) -> Float {
        let bits = x.bitPattern
        var e = Float(Int32(bitPattern: bits >> 23) - 127) + 1
        var m = Float(bitPattern: (bits & 0x807F_FFFF) | 0x3F00_0000)
        if m < f(0x3F35_04F3) {
            e -= 1
            m = (m - 1) + m
        } else {
            m = (m - 1) + 0
        }
        let z = m * m
        var y = f(0x3D90_21BB)
        for p: UInt32 in [0xBDEB_D1B8, 0x3DEF_251A, 0xBDFE_5D4F, 0x3E11_E9BF, 0xBE2A_AE50, 0x3E4C_CEAC, 0xBE7F_FFFC, 0x3EAA_AAAA] {
            y = fma(y, m, f(p))
        }
        y = y * m
        y = fma(y, z, e * f(0xB95E_8083))
        y = fma(-z, 0.5, y)
        return fma(e, f(0x3F31_8000), m + y)
    }

    static func sincos(_ x0: Float) -> (sin: Float, cos: Float) {
        var j = Int32(x0 * f(0x3FA2_F983))
        j = (j + 1) & ~1
        let y = Float(j)
        var x = fma(y, f(0xBF49_0000), x0)
        x = fma(y, f(0xB97D_A000), x)
        x = fma(y, f(0xB322_2169), x)
        let z = x * x
        var c = fma(fma(f(0x37CC_F5CE), z, f(0xBAB6_061A)), z, f(0x3D2A_AAA5)) * z
        c = fma(c, z, -(z * 0.5)) + 1
        var s = fma(fma(f(0xB94C_A1F9), z, f(0x3C08_839E)), z, f(0xBE2A_AAA3)) * z
        s = fma(s, x, x)
        var sinv: Float, cosv: Float
        if j & 2 == 0 { sinv = s; cosv = c } else { sinv = c; cosv = s }
        if j & 4 != 0 { sinv = -sinv }
        if (j &- 2) & 4 == 0 { cosv = -cosv }
        return (sinv, cosv)
    }

    @inline(__always) static func fma(_ a: Float, _ b: Float, _ c: Float) -> Float {
        c.addingProduct(a, b)
    }
}

// MARK: - NV: A1111's Philox

/// A1111 `rng_philox.Generator`: element i of draw `offset` is Philox4x32-10 of counter
/// (offset, 0, i, 0) and key (seed low, seed high), then Box–Muller in double (sine half).
public struct PhiloxGenerator: NormalGenerator {
    let seed: UInt64
    var offset: UInt32 = 0

    public init(seed: UInt64) { self.seed = seed }

    public mutating func randn(into out: UnsafeMutableBufferPointer<Float>) {
        defer { offset &+= 1 }
        let k0 = UInt32(truncatingIfNeeded: seed), k1 = UInt32(truncatingIfNeeded: seed >> 32)
        let c = Double(Float(bitPattern: 0x30C9_0FDB))
        for i in out.indices {
            let (x, y) = Self.philox(counter: (offset, 0, UInt32(i), 0), key: (k0, k1))
            let u = Double(x) * 0x1p-32 + 0x1p-33
            let v = Double(y) * c + c / 2
            out[i] = Float((-2 * Foundation.log(u)).squareRoot() * Foundation.sin(v))
        }
    }

    static func philox(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)) -> (UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 {
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
            let p0 = UInt64(c0) * 0xD251_1F53, p1 = UInt64(c2) * 0xCD9E_8D57
            (c0, c1, c2, c3) = (UInt32(p1 >> 32) ^ c1 ^ k0, UInt32(truncatingIfNeeded: p1),
                                UInt32(p0 >> 32) ^ c3 ^ k1, UInt32(truncatingIfNeeded: p0))
        }
        return (c0, c1)
    }
}

// MARK: - A1111's ImageRNG

/// The noise of one batch, as A1111's `ImageRNG`: one generator per image seeded with that
/// image's seed; the first draw is the initial latent noise (with the variation seed slerped in
/// and/or made at another size and pasted centred), later draws feed the samplers
/// (k-diffusion's `randn_like`); `eta_noise_seed_delta` re-seeds the generators with
/// seed + ENSD after the first draw.
public struct ImageNoise {
    public let shape: [Int]  // [C, h, w] per image
    public let seeds: [UInt64]
    let subseeds: [UInt64]
    let subseedStrength: Double
    /// latent size the noise was made for (seed resize), [C, h', w']
    let madeFor: [Int]?
    let source: NoiseSource
    let ensd: Int64
    var generators: [any NormalGenerator]
    var drawn = 0

    public init(source: NoiseSource, shape: [Int], seeds: [UInt64], subseeds: [UInt64] = [], subseedStrength: Double = 0,
                resizeFrom: (width: Int, height: Int)? = nil, etaNoiseSeedDelta: Int64 = 0) {
        self.source = source
        self.shape = shape
        self.seeds = seeds
        self.subseeds = subseeds
        self.subseedStrength = subseedStrength
        if let r = resizeFrom, r.width > 0, r.height > 0, [shape[0], r.height / 8, r.width / 8] != shape {
            madeFor = [shape[0], r.height / 8, r.width / 8]
        } else {
            madeFor = nil
        }
        ensd = etaNoiseSeedDelta
        generators = seeds.map { Self.generator(source, seed: $0) }
    }

    public static func generator(_ source: NoiseSource, seed: UInt64) -> any NormalGenerator {
        switch source {
        case .cpu: TorchCPUGenerator(seed: seed)
        case .gpu, .nv: PhiloxGenerator(seed: seed)
        }
    }

    /// The next block for every image, concatenated: `[batch, C, h, w]` values.
    public mutating func next() -> [Float] {
        let n = shape.reduce(1, *)
        var out: [Float] = []
        out.reserveCapacity(n * generators.count)
        for i in generators.indices { out += drawn == 0 ? first(i) : generators[i].randn(n) }
        drawn += 1
        if drawn == 1 && ensd != 0 {
            generators = seeds.map { Self.generator(source, seed: UInt64(bitPattern: Int64(bitPattern: $0) &+ ensd)) }
        }
        return out
    }

    /// The next draw written into `out` (resized only when its size differs): a sampler's
    /// per-step noise without a new array. The first draw, the initial noise, is `next()`'s.
    public mutating func next(into out: inout [Float]) {
        if drawn == 0 {
            out = next()
            return
        }
        let n = shape.reduce(1, *)
        if out.count != n * generators.count { out = [Float](repeating: 0, count: n * generators.count) }
        out.withUnsafeMutableBufferPointer { buf in
            for i in generators.indices { generators[i].randn(into: UnsafeMutableBufferPointer(rebasing: buf[(i * n)..<((i + 1) * n)])) }
        }
        drawn += 1
    }

    /// The initial noise of image i (A1111 `ImageRNG.first`).
    mutating func first(_ i: Int) -> [Float] {
        let n = shape.reduce(1, *)
        let nshape = madeFor ?? shape
        let nn = nshape.reduce(1, *)
        var noise: [Float]
        if madeFor != nil {
            var fresh = Self.generator(source, seed: seeds[i])
            noise = fresh.randn(nn)
        } else {
            noise = generators[i].randn(n)
        }
        if subseedStrength != 0, i < subseeds.count {
            var sub = Self.generator(source, seed: subseeds[i])
            noise = Self.slerp(subseedStrength, noise, sub.randn(nn), shape: nshape)
        }
        guard let src = madeFor else { return noise }
        var x = generators[i].randn(n)
        let (c, h, w) = (shape[0], shape[1], shape[2]), (sh, sw) = (src[1], src[2])
        let dx = (w - sw).floorDiv(2), dy = (h - sh).floorDiv(2)
        let cw = dx >= 0 ? sw : sw + 2 * dx, ch = dy >= 0 ? sh : sh + 2 * dy
        let (tx, ty, fx, fy) = (max(dx, 0), max(dy, 0), max(-dx, 0), max(-dy, 0))
        for k in 0..<c {
            for y in 0..<ch {
                for xx in 0..<cw { x[(k * h + ty + y) * w + tx + xx] = noise[(k * sh + fy + y) * sw + fx + xx] }
            }
        }
        return x
    }

    /// A1111's `slerp` on a `[C, H, W]` block, normalising along H: linear when the mean
    /// cosine exceeds 0.9995 (with A1111's swapped weights), spherical otherwise.
    static func slerp(_ strength: Double, _ low: [Float], _ high: [Float], shape: [Int]) -> [Float] {
        let t = Float(strength), oneMinus = Float(1 - strength)
        let (c, h, w) = (shape[0], shape[1], shape[2])
        var dots = [Float](repeating: 0, count: c * w)
        for k in 0..<c {
            for x in 0..<w {
                var nl = 0.0, nh = 0.0
                for y in 0..<h {
                    let i = (k * h + y) * w + x
                    nl += Double(low[i]) * Double(low[i])
                    nh += Double(high[i]) * Double(high[i])
                }
                let (sl, shh) = (Float(nl.squareRoot()), Float(nh.squareRoot()))
                var d: Float = 0
                for y in 0..<h {
                    let i = (k * h + y) * w + x
                    d += (low[i] / sl) * (high[i] / shh)
                }
                dots[k * w + x] = d
            }
        }
        let mean = dots.reduce(0.0) { $0 + Double($1) } / Double(dots.count)
        if mean > 0.9995 { return low.indices.map { low[$0] * t + high[$0] * oneMinus } }
        var out = low
        for k in 0..<c {
            for x in 0..<w {
                let omega = acosf(dots[k * w + x]), so = sinf(omega)
                let a = sinf(oneMinus * omega) / so, b = sinf(t * omega) / so
                for y in 0..<h {
                    let i = (k * h + y) * w + x
                    out[i] = a * low[i] + b * high[i]
                }
            }
        }
        return out
    }
}

extension Int {
    /// Python's `//` (floor division).
    func floorDiv(_ d: Int) -> Int { Int((Double(self) / Double(d)).rounded(.down)) }
}
