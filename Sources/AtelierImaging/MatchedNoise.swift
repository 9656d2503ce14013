import Foundation

/// numpy's `np.random.default_rng(0)`: PCG64 (128-bit LCG, XSL-RR output) seeded through
/// SeedSequence(0), whose state after seeding is the constant below (tools/OUTPAINT_MK2.md §4).
/// `random()` is numpy's `Generator.random`: the top 53 bits of one draw times 2⁻⁵³.
public struct NumpyPCG64: Sendable {
    var state: UInt128
    let inc: UInt128
    static let multiplier: UInt128 = (0x2360ed051fc65da4 << 64) | 0x4385df649fccf645

    /// `default_rng(0)`
    public init() {
        state = (0x1aa1b5345996452d << 64) | 0x09585eb7a69561e3
        inc = (0x418ddadb3af71a82 << 64) | 0x588133bc447873a9
    }

    public mutating func next64() -> UInt64 {
        state = state &* Self.multiplier &+ inc
        let x = UInt64(truncatingIfNeeded: state >> 64) ^ UInt64(truncatingIfNeeded: state)
        let rot = UInt64(truncatingIfNeeded: state >> 122)
        return (x >> rot) | (x << ((64 &- rot) & 63))
    }

    public mutating func random() -> Double { Double(next64() >> 11) * (1.0 / 9007199254740992.0) }
}

/// Complex FFTs in double precision, numpy's conventions (`norm="ortho"`: each axis scaled by
/// 1/√n). Mixed radix by decimation in time with explicit radix-2 and radix-3 butterflies (the
/// sizes here are 64·k), so, like numpy's pocketfft, a constant input gives exact zeros outside
/// DC; other prime factors go through a direct DFT of that length.
enum FFT {
    static func transform(_ re: [Double], _ im: [Double], inverse: Bool) -> ([Double], [Double]) {
        let n = re.count
        if n == 1 { return (re, im) }
        var p = 2
        while n % p != 0 { p += 1 }
        if p * p > n && n % p != 0 { p = n }
        let m = n / p
        var subRe = [[Double]](), subIm = [[Double]]()
        for r in 0..<p {
            var sr = [Double](repeating: 0, count: m), si = sr
            for k in 0..<m { sr[k] = re[k * p + r]; si[k] = im[k * p + r] }
            let (a, b) = transform(sr, si, inverse: inverse)
            subRe.append(a)
            subIm.append(b)
        }
        var outRe = [Double](repeating: 0, count: n), outIm = outRe
        let sign: Double = inverse ? 1 : -1
        var tr = [Double](repeating: 0, count: p), ti = tr
        for k in 0..<m {
            // twiddled inputs of the radix-p butterfly
            for r in 0..<p {
                if r == 0 || k == 0 {
                    tr[r] = subRe[r][k]; ti[r] = subIm[r][k]
                } else {
                    let angle = sign * 2 * Double.pi * Double(r * k) / Double(n)
                    let c = cos(angle), s = sin(angle)
                    let a = subRe[r][k], b = subIm[r][k]
                    tr[r] = a * c - b * s
                    ti[r] = a * s + b * c
                }
            }
            switch p {
            case 2:
                outRe[k] = tr[0] + tr[1]; outIm[k] = ti[0] + ti[1]
                outRe[k + m] = tr[0] - tr[1]; outIm[k + m] = ti[0] - ti[1]
            case 3:
                // pocketfft's pass3: t1 = b + c, t2 = b − c; X0 = a + t1; X1,2 = (a − t1/2) ∓ i·(√3/2)·t2
                let tw1i = sign * 0.86602540378443864676
                let t1r = tr[1] + tr[2], t1i = ti[1] + ti[2]
                let t2r = tr[1] - tr[2], t2i = ti[1] - ti[2]
                outRe[k] = tr[0] + t1r; outIm[k] = ti[0] + t1i
                let car = tr[0] - 0.5 * t1r, cai = ti[0] - 0.5 * t1i
                let cbr = -tw1i * t2i, cbi = tw1i * t2r
                outRe[k + m] = car + cbr; outIm[k + m] = cai + cbi
                outRe[k + 2 * m] = car - cbr; outIm[k + 2 * m] = cai - cbi
            default:
                for q in 0..<p {
                    var sr = 0.0, si = 0.0
                    for r in 0..<p {
                        let angle = sign * 2 * Double.pi * Double((r * q) % p) / Double(p)
                        let c = cos(angle), s = sin(angle)
                        sr += tr[r] * c - ti[r] * s
                        si += tr[r] * s + ti[r] * c
                    }
                    outRe[k + q * m] = sr; outIm[k + q * m] = si
                }
            }
        }
        return (outRe, outIm)
    }

    /// numpy's `fftshift(fft2(ifftshift(x), norm="ortho"))` for even sizes (both shifts are a roll
    /// by half on each axis), on an `h × w` plane: the last axis first, then the first.
    static func centred2D(_ re: [Double], _ im: [Double], h: Int, w: Int, inverse: Bool) -> ([Double], [Double]) {
        func roll(_ a: [Double]) -> [Double] {
            var out = a
            for r in 0..<h { for c in 0..<w { out[((r + h / 2) % h) * w + (c + w / 2) % w] = a[r * w + c] } }
            return out
        }
        var xr = roll(re), xi = roll(im)
        let sw = 1 / Double(w).squareRoot(), sh = 1 / Double(h).squareRoot()
        for r in 0..<h {
            let (a, b) = transform(Array(xr[(r * w)..<((r + 1) * w)]), Array(xi[(r * w)..<((r + 1) * w)]), inverse: inverse)
            for c in 0..<w { xr[r * w + c] = a[c] * sw; xi[r * w + c] = b[c] * sw }
        }
        var colR = [Double](repeating: 0, count: h), colI = colR
        for c in 0..<w {
            for r in 0..<h { colR[r] = xr[r * w + c]; colI[r] = xi[r * w + c] }
            let (a, b) = transform(colR, colI, inverse: inverse)
            for r in 0..<h { xr[r * w + c] = a[r] * sh; xi[r * w + c] = b[r] * sh }
        }
        return (roll(xr), roll(xi))
    }
}

/// A1111's `get_matched_noise` (scripts/outpainting_mk_2.py, tools/OUTPAINT_MK2.md §3): noise whose
/// spectrum follows the kept part of the picture, low-passed, then mapped onto the kept pixels'
/// histogram per channel; the kept pixels themselves are returned unchanged. Planes are
/// `[rows][cols][3]` doubles in 0…1, the mask 0 (keep) or 1 (repaint), the same in each channel.
public enum MatchedNoise {
    public static func make(source src: [Double], mask: [Double], rows h: Int, cols w: Int,
                            noiseQ: Double, colorVariation cv: Double) -> [Double] {
        let n = h * w
        precondition(src.count == n * 3 && mask.count == n * 3 && h % 2 == 0 && w % 2 == 0)
        var grey = [Double](repeating: 0, count: n)
        for i in 0..<n { grey[i] = ((mask[i * 3] + mask[i * 3 + 1]) + mask[i * 3 + 2]) / 3 }
        // the windowed source: kept pixels scaled by the global max, the rest the source's mean
        var windowed = [Double](repeating: 0, count: n * 3)
        for i in 0..<n { for c in 0..<3 { windowed[i * 3 + c] = src[i * 3 + c] * (1 - grey[i]) } }
        let peak = windowed.max()!
        for i in windowed.indices { windowed[i] /= peak }
        let mean = pairwiseSum(src[...]) / Double(src.count)
        for i in windowed.indices { windowed[i] += mean * mask[i] }

        var srcDist = [[Double]](), phaseRe = [[Double]](), phaseIm = [[Double]]()
        for c in 0..<3 {
            let (fr, fi) = FFT.centred2D(channel(windowed, c, n), [Double](repeating: 0, count: n), h: h, w: w, inverse: false)
            var d = [Double](repeating: 0, count: n), pr = d, pi = d
            for i in 0..<n {
                d[i] = hypot(fr[i], fi[i])
                pr[i] = fr[i] / d[i]
                pi[i] = fi[i] / d[i]
            }
            srcDist.append(d); phaseRe.append(pr); phaseIm.append(pi)
        }
        // numpy default_rng(0) noise, grey-blended by the colour variation
        var rng = NumpyPCG64()
        var noise = [Double](repeating: 0, count: n * 3)
        for i in noise.indices { noise[i] = rng.random() }
        for i in 0..<n {
            let g = ((noise[i * 3] + noise[i * 3 + 1]) + noise[i * 3 + 2]) / 3
            for c in 0..<3 {
                noise[i * 3 + c] *= cv
                noise[i * 3 + c] += (1 - cv) * g
            }
        }
        // the low-pass window (A1111's _get_gaussian_window, mode 1; its exponent is exactly 1)
        let sx = Double(h) / Double(min(h, w)), sy = Double(w) / Double(min(h, w))
        var window = [Double](repeating: 0, count: n)
        for r in 0..<h {
            let x = ((Double(r) / Double(h)) * 2 - 1) * sx
            for cI in 0..<w {
                let y = ((Double(cI) / Double(w)) * 2 - 1) * sy
                window[r * w + cI] = 1 / ((x * x + 1) * (y * y + 1))
            }
        }
        var shaped = [Double](repeating: 0, count: n * 3)
        for c in 0..<3 {
            var (fr, fi) = FFT.centred2D(channel(noise, c, n), [Double](repeating: 0, count: n), h: h, w: w, inverse: false)
            for i in 0..<n { fr[i] *= window[i]; fi[i] *= window[i] }
            let (lr, _) = FFT.centred2D(fr, fi, h: h, w: w, inverse: true)
            var (sr, si) = FFT.centred2D(lr, [Double](repeating: 0, count: n), h: h, w: w, inverse: false)
            for i in 0..<n {
                let a = hypot(sr[i], si[i])
                let dq: Double
                switch noiseQ {
                case 1: dq = srcDist[c][i]
                case 2: dq = srcDist[c][i] * srcDist[c][i]
                case 0.5: dq = srcDist[c][i].squareRoot()
                case 0: dq = 1
                default: dq = pow(srcDist[c][i], noiseQ)
                }
                let mag = (a * a) * dq
                sr[i] = mag * phaseRe[c][i]
                si[i] = mag * phaseIm[c][i]
            }
            let (out, _) = FFT.centred2D(sr, si, h: h, w: w, inverse: true)
            for i in 0..<n { shaped[i * 3 + c] = out[i] }
        }
        // global min/max over all values (NaN spreads, as numpy's min/max do)
        var lo = Double.infinity, hi = -Double.infinity, sawNaN = false
        for v in shaped { if v.isNaN { sawNaN = true } else { lo = min(lo, v); hi = max(hi, v) } }
        if sawNaN { lo = .nan }
        for i in shaped.indices { shaped[i] -= lo }
        if sawNaN { hi = .nan } else { hi = shaped.max()! }
        for i in shaped.indices { shaped[i] /= hi }
        // histogram matching of the repainted values onto the kept source values, per channel
        let repaint = (0..<n).filter { grey[$0] > 1e-6 }, kept = (0..<n).filter { grey[$0] < 1e-3 }
        if !repaint.isEmpty && !kept.isEmpty {
            for c in 0..<3 {
                let matched = matchHistogram(repaint.map { shaped[$0 * 3 + c] }, template: kept.map { src[$0 * 3 + c] })
                for (j, i) in repaint.enumerated() { shaped[i * 3 + c] = matched[j] }
            }
        }
        var out = [Double](repeating: 0, count: n * 3)
        for i in out.indices {
            let v = src[i] * (1 - mask[i]) + shaped[i] * mask[i]
            out[i] = v.isNaN ? v : min(max(v, 0), 1)
        }
        return out
    }

    static func channel(_ a: [Double], _ c: Int, _ n: Int) -> [Double] { (0..<n).map { a[$0 * 3 + c] } }

    static func pairwiseSum(_ a: ArraySlice<Double>) -> Double {
        if a.count <= 128 { return a.reduce(0, +) }
        let mid = a.startIndex + a.count / 2
        return pairwiseSum(a[a.startIndex..<mid]) + pairwiseSum(a[mid...])
    }

    /// skimage `match_histograms` for one channel: a value's quantile `#{s ≤ v}/N` among the
    /// source values mapped through numpy's `interp` onto the template's cumulative distribution.
    /// NaNs form one group, sorted last.
    static func matchHistogram(_ s: [Double], template t: [Double]) -> [Double] {
        func unique(_ a: [Double]) -> (values: [Double], counts: [Int]) {
            let sorted = a.sorted { x, y in x.isNaN ? false : y.isNaN ? true : x < y }
            var values: [Double] = [], counts: [Int] = []
            for v in sorted {
                if let last = values.last, last == v || (last.isNaN && v.isNaN) { counts[counts.count - 1] += 1 } else { values.append(v); counts.append(1) }
            }
            return (values, counts)
        }
        let (sv, sc) = unique(s), (tv, tc) = unique(t)
        var sq = [Double](repeating: 0, count: sv.count), tq = [Double](repeating: 0, count: tv.count)
        var acc = 0
        for i in sc.indices { acc += sc[i]; sq[i] = Double(acc) / Double(s.count) }
        acc = 0
        for i in tc.indices { acc += tc[i]; tq[i] = Double(acc) / Double(t.count) }
        var mapped = [Double](repeating: 0, count: sv.count)
        for i in sq.indices { mapped[i] = interp(sq[i], tq, tv) }
        return s.map { v in
            let i: Int
            if v.isNaN { i = sv.count - 1 } else {
                var lo = 0, hi = sv.count - 1
                while lo < hi { let mid = (lo + hi) / 2; if sv[mid] < v { lo = mid + 1 } else { hi = mid } }
                i = lo
            }
            return mapped[i]
        }
    }

    /// numpy's `interp` for increasing `xp` (compiled_base.c `arr_interp`), without fused multiply-add.
    static func interp(_ x: Double, _ xp: [Double], _ fp: [Double]) -> Double {
        let last = xp.count - 1
        if xp.count == 1 { return fp[0] }
        if x < xp[0] { return fp[0] }
        if x > xp[last] { return fp[last] }
        var lo = 0, hi = last
        while hi - lo > 1 { let mid = (lo + hi) / 2; if xp[mid] <= x { lo = mid } else { hi = mid } }
        let j = xp[hi] <= x ? hi : lo
        if j == last { return fp[last] }
        if xp[j] == x { return fp[j] }
        let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
        let product = slope * (x - xp[j])
        return product + fp[j]
    }
}
