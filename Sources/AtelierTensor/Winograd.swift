import Foundation

/// Winograd F(4×4, 3×3): 3×3 stride-1 convolutions with one pixel of zero padding (every
/// 3×3 conv of the SD UNet's and VAE's resnets; the stride-2 downsamplers stay im2col).
///
/// A 4×4 block of output pixels costs 36 multiplies per channel pair instead of 144: the
/// input's 6×6 tiles (overlapping by 2) and the 3×3 kernels are transformed to 6×6, the
/// products become 36 GEMMs `U_p [O×C] · V_p [C×tiles]` (one per tile position p), and each
/// product tile is transformed back. Interpolation points 0, ±1, ±2 (Lavin & Gray, "Fast
/// Algorithms for Convolutional Neural Networks", 2016). Float32 rounding grows about tenfold
/// against direct convolution; `WinogradTests` bounds it against a float64 reference at SD's
/// shapes (relative L2 ≤ 1e-5, measured around 1e-6).
///
/// Kernels are transformed per call (O·C·36 floats, cheap next to the GEMMs at the sizes
/// where Winograd is chosen) rather than cached, so weights patched in place (LoRA) need no
/// invalidation; above 64 MB of transform they are transformed a block of output channels at a
/// time. Tiles are processed in chunks of whole tile rows so the transformed input
/// and products stay a few tens of MB at 512² VAE sizes.
public enum Winograd {

    /// Transformed-tile budget (V and M together) per chunk, in floats.
    static let chunkFloats = 1 << 23
    /// Kernel-transform budget (points²·O·C floats) per block of output channels: 64 MB by default;
    /// tests bind it lower (task-local, so other work in the process keeps the default) to compare
    /// blocked and whole transforms.
    @TaskLocal public static var kernelFloatsPerChunk = 1 << 24

    /// Convolution of NCHW `x` with OIHW 3×3 `weight`, stride 1, padding 1 on every side.
    public static func conv3x3(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let o = weight.shape[0]
        let out = Tensor(uninitialized: Dims(b, o, h, w))
        guard b > 0, c > 0, o > 0, h > 0, w > 0 else {
            if let bias, out.count > 0 {
                for plane in 0..<(b * o) { (out.unsafePointer + plane * h * w).initialize(repeating: bias.unsafePointer[plane % o], count: h * w) }
            } else if out.count > 0 {
                out.unsafePointer.initialize(repeating: 0, count: out.count)
            }
            return out
        }
        let ntx = (w + 3) / 4, nty = (h + 3) / 4
        let tileRows = b * nty
        // output channels per kernel transform (blocks for the UNet's 1280- and 1920-channel convs at 32²)
        let ob = outputBlock(o: o, c: c, points: 6)
        let rowsPerChunk = max(1, min(tileRows, chunkFloats / (36 * (c + ob) * ntx)))
        let maxTiles = rowsPerChunk * ntx
        Scratch.with(36 * ob * c + 36 * (c + ob) * maxTiles) { scratch in
            let u = scratch, v = scratch + 36 * ob * c, m = v + 36 * c * maxTiles
            if ob == o { Profiler.measure("winograd.kernels") { transformKernels(weight.unsafePointer, o: o, c: c, into: u) } }
            var row0 = 0
            while row0 < tileRows {
                let rows = min(rowsPerChunk, tileRows - row0)
                let tiles = rows * ntx
                Profiler.measure("winograd.input") {
                    transformInput(x.unsafePointer, c: c, h: h, w: w, ntx: ntx, nty: nty,
                                   rows: row0..<(row0 + rows), tiles: tiles, into: v)
                }
                products(planes: 36, weight: weight.unsafePointer, o: o, c: c, block: ob, tiles: tiles, u: u, v: v, m: m,
                         transformKernels: transformKernels) { first, count in
                    transformOutput(m, o: count, channels: o, first: first, h: h, w: w, ntx: ntx, nty: nty,
                                    rows: row0..<(row0 + rows), tiles: tiles, bias: bias?.unsafePointer, into: out.unsafePointer)
                }
                row0 += rows
            }
        }
        return out
    }

    /// The products of transformed tiles `v` for each block of `block` output channels: the block's
    /// kernel transform into `u` (when the blocks are not the whole, whose transform the caller made
    /// once), the `planes` GEMMs `U_p · V_p` into `m`, then `output(first channel, count)`.
    @inline(__always)
    static func products(planes: Int, weight: UnsafePointer<Float>, o: Int, c: Int, block: Int, tiles: Int,
                         u: UnsafeMutablePointer<Float>, v: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
                         transformKernels: (UnsafePointer<Float>, Int, Int, UnsafeMutablePointer<Float>) -> Void,
                         output: (Int, Int) -> Void) {
        var o0 = 0
        while o0 < o {
            let oc = min(block, o - o0)
            if block < o { Profiler.measure("winograd.kernels") { transformKernels(weight + o0 * c * 9, oc, c, u) } }
            Profiler.measure("winograd.gemm") {
                Compute.parallel(tasks: planes, (u, v, m, oc, tiles, c)) { context, p in
                    let (u, v, m, oc, tiles, c) = context
                    sgemm(m: oc, n: tiles, k: c, a: u + p * oc * c, lda: c, b: v + p * c * tiles, ldb: tiles,
                          c: m + p * oc * tiles, ldc: tiles)
                }
            }
            Profiler.measure("winograd.output") { output(o0, oc) }
            o0 += oc
        }
    }

    /// `U_p[o][c] = (G g Gᵀ)_p` for every kernel `g = weight[o][c]` (F(4×4): six points).
    static func transformKernels(_ weight: UnsafePointer<Float>, o: Int, c: Int, into u: UnsafeMutablePointer<Float>) {
        transformKernels(weight, o: o, c: c, rows: F4Rows.self, into: u)
    }

    /// F(4×4, 3×3)'s G: six points.
    enum F4Rows: KernelRows {
        static var points: Int { 6 }
        @inline(__always) static func row(_ i: Int, _ a: V8, _ b: V8, _ c: V8) -> V8 { kernelPoint(i, a, b, c) }
    }

    /// `U_p[o][c] = (G g Gᵀ)_p` with `R.row(i, a, b, c)` = row i of G applied to three values, for
    /// `R.points` rows: eight kernels at a time (lanes = consecutive (o, c) pairs, so the planes are
    /// written with vector stores). G comes as a type so its rows inline into the loop.
    @inline(__always)
    static func transformKernels<R: KernelRows>(_ weight: UnsafePointer<Float>, o: Int, c: Int, rows: R.Type,
                                                into u: UnsafeMutablePointer<Float>) {
        let plane = o * c
        Compute.split((plane + 7) / 8, minimum: 512, (weight, u, plane)) { context, range in
            let (weight, u, plane) = context
            let points = R.points
            @inline(__always) func row(_ i: Int, _ a: V8, _ b: V8, _ c: V8) -> V8 { R.row(i, a, b, c) }
            for block in range {
                let k0 = block * 8, count = min(8, plane - k0)
                // g[r][s] of the eight kernels, one vector per tap
                var taps = (V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8())
                withUnsafeMutableBytes(of: &taps) { raw in
                    let tv = raw.baseAddress!.assumingMemoryBound(to: Float.self)
                    for l in 0..<count {
                        let g = weight + (k0 + l) * 9
                        for tap in 0..<9 { tv[tap * 8 + l] = g[tap] }
                    }
                }
                // rows of G·g (one per interpolation point), three taps each
                for i in 0..<points {
                    let (a, b, cc) = (row(i, taps.0, taps.3, taps.6), row(i, taps.1, taps.4, taps.7), row(i, taps.2, taps.5, taps.8))
                    let dst = u + i * points * plane + k0
                    for q in 0..<points { store(row(q, a, b, cc), dst + q * plane, count) }
                }
            }
        }
    }

    /// Output channels per kernel transform of `points²` planes: all `o`, or even blocks (multiples
    /// of 8) whose transform fits `kernelFloatsPerChunk`.
    static func outputBlock(o: Int, c: Int, points: Int) -> Int {
        let blocks = max(1, (points * points * o * c + kernelFloatsPerChunk - 1) / kernelFloatsPerChunk)
        return blocks == 1 ? o : min(o, ((o + blocks - 1) / blocks + 7) / 8 * 8)
    }

    /// Row `i` of G (points 0, 1, −1, 2, −2, ∞) applied to three values.
    @inline(__always) static func kernelPoint(_ i: Int, _ a: V8, _ b: V8, _ c: V8) -> V8 {
        switch i {
        case 0: return a * 0.25
        case 1: return (a + b + c) * (-1 / 6 as Float)
        case 2: return (a - b + c) * (-1 / 6 as Float)
        case 3: return a * (1 / 24 as Float) + b * (1 / 12 as Float) + c * (1 / 6 as Float)
        case 4: return a * (1 / 24 as Float) - b * (1 / 12 as Float) + c * (1 / 6 as Float)
        default: return c
        }
    }

    /// `Bᵀ d` for six values `d` (rows 0…5 of Bᵀ), used for both passes of `Bᵀ d B`.
    @inline(__always)
    static func inputTransform<T: SIMD>(_ d0: T, _ d1: T, _ d2: T, _ d3: T, _ d4: T, _ d5: T)
        -> (T, T, T, T, T, T) where T.Scalar == Float {
        let p = d4 - d2 * 4, q = d3 - d1 * 4        // −4d2 + d4, −4d1 + d3
        let r = d4 - d2, s = (d3 - d1) * 2           // −d2 + d4, −2d1 + 2d3
        return (d0 * 4 - d2 * 5 + d4, p + q, p - q, r + s, r - s, d1 * 4 - d3 * 5 + d5)
    }

    /// `V_p[c][tile] = (Bᵀ d B)_p` for the input tiles of the given tile rows (image, tile row).
    static func transformInput(
        _ x: UnsafePointer<Float>, c: Int, h: Int, w: Int, ntx: Int, nty: Int, rows: Range<Int>,
        tiles: Int, into v: UnsafeMutablePointer<Float>
    ) {
        let wp = 4 * ntx + 2          // padded width: input x = k − 1
        let plane = c * tiles
        let phaseCount = (ntx + 1 + 7) / 8 * 8
        Compute.split(c, minimum: max(1, 16384 / max(1, rows.count * wp)),
                      (x, v, (c, h, w, ntx, nty, rows, tiles, wp, plane, phaseCount))) { context, range in
            let (x, v, (c, h, w, ntx, nty, rows, tiles, wp, plane, phaseCount)) = context
            let t = ThreadScratch.winogradRows.pointer(6 * wp + 4 * phaseCount + w)
            let phases = t + 6 * wp, zero = phases + 4 * phaseCount
            zero.initialize(repeating: 0, count: w)
            phases.initialize(repeating: 0, count: 4 * phaseCount)
            for i in 0..<6 { (t + i * wp).initialize(repeating: 0, count: wp) }
            for ch in range {
                for (k, r) in rows.enumerated() {
                    let n = r / nty, ty = r % nty
                    let xc = x + (n * c + ch) * h * w
                    func row(_ j: Int) -> UnsafePointer<Float> {
                        let y = 4 * ty - 1 + j
                        return y >= 0 && y < h ? xc + y * w : UnsafePointer(zero)
                    }
                    let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5)
                    // vertical pass along x, into t_i[1...w]; t_i[0] and t_i[w+1...] stay zero
                    var xi = 0
                    while xi + 8 <= w {
                        let z = inputTransform(vload8(r0 + xi), vload8(r1 + xi), vload8(r2 + xi),
                                               vload8(r3 + xi), vload8(r4 + xi), vload8(r5 + xi))
                        let d = t + 1 + xi
                        vstore8(z.0, d); vstore8(z.1, d + wp); vstore8(z.2, d + 2 * wp)
                        vstore8(z.3, d + 3 * wp); vstore8(z.4, d + 4 * wp); vstore8(z.5, d + 5 * wp)
                        xi += 8
                    }
                    while xi < w {
                        let z = inputTransform(SIMD2(r0[xi], 0), SIMD2(r1[xi], 0), SIMD2(r2[xi], 0),
                                               SIMD2(r3[xi], 0), SIMD2(r4[xi], 0), SIMD2(r5[xi], 0))
                        let d = t + 1 + xi
                        d[0] = z.0[0]; d[wp] = z.1[0]; d[2 * wp] = z.2[0]
                        d[3 * wp] = z.3[0]; d[4 * wp] = z.4[0]; d[5 * wp] = z.5[0]
                        xi += 1
                    }
                    // horizontal pass: deinterleave t_i into phases (x mod 4), then SIMD over tiles
                    let tile0 = k * ntx
                    for i in 0..<6 {
                        let ti = t + i * wp
                        for tx in 0...ntx {
                            phases[tx] = ti[4 * tx]
                            phases[phaseCount + tx] = ti[4 * tx + 1]
                            if tx < ntx {
                                phases[2 * phaseCount + tx] = ti[4 * tx + 2]
                                phases[3 * phaseCount + tx] = ti[4 * tx + 3]
                            }
                        }
                        var tx = 0
                        while tx < ntx {
                            let e0 = vload8(phases + tx), e1 = vload8(phases + phaseCount + tx)
                            let e2 = vload8(phases + 2 * phaseCount + tx), e3 = vload8(phases + 3 * phaseCount + tx)
                            let e4 = vload8(phases + tx + 1), e5 = vload8(phases + phaseCount + tx + 1)
                            let z = inputTransform(e0, e1, e2, e3, e4, e5)
                            let dst = v + (i * 6) * plane + ch * tiles + tile0 + tx
                            let count = min(8, ntx - tx)
                            store(z.0, dst, count); store(z.1, dst + plane, count); store(z.2, dst + 2 * plane, count)
                            store(z.3, dst + 3 * plane, count); store(z.4, dst + 4 * plane, count)
                            store(z.5, dst + 5 * plane, count)
                            tx += 8
                        }
                    }
                }
            }
        }
    }

    /// `Aᵀ m` for six values (rows 0…3 of Aᵀ), used for both passes of `Aᵀ M A`.
    @inline(__always)
    static func outputTransform(_ m0: V8, _ m1: V8, _ m2: V8, _ m3: V8, _ m4: V8, _ m5: V8) -> (V8, V8, V8, V8) {
        let a = m1 + m2, s = m1 - m2, c = m3 + m4, d = m3 - m4
        return (m0 + a + c, s + d * 2, a + c * 4, s + d * 8 + m5)
    }

    /// Output pixels from the products `M_p[o][tile]`: `Aᵀ M A` per tile, plus the bias, into output
    /// channels `first ..< first + o` of an image with `channels` channels.
    static func transformOutput(
        _ m: UnsafePointer<Float>, o: Int, channels: Int, first: Int, h: Int, w: Int, ntx: Int, nty: Int, rows: Range<Int>,
        tiles: Int, bias: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>
    ) {
        let plane = o * tiles
        Compute.split(o, minimum: max(1, 16384 / max(1, tiles * 36)),
                      (m, out, bias, (channels, first, h, w, ntx, nty, rows, tiles, plane))) { context, range in
            let (m, out, bias, (channels, first, h, w, ntx, nty, rows, tiles, plane)) = context
            for oc in range {
                let bv = V8(repeating: bias?[first + oc] ?? 0)
                for (k, r) in rows.enumerated() {
                    let n = r / nty, ty = r % nty
                    let dst = out + ((n * channels + first + oc) * h) * w
                    var tx = 0
                    while tx < ntx {
                        let count = min(8, ntx - tx)
                        let src = m + oc * tiles + k * ntx + tx
                        // vertical pass: s_iq = Σ_p Aᵀ[i][p] m_pq, one q (column) at a time
                        var s = (V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(),
                                 V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8(), V8())
                        withUnsafeMutableBytes(of: &s) { raw in
                            let sv = raw.baseAddress!.assumingMemoryBound(to: V8.self)
                            for q in 0..<6 {
                                let col = src + q * plane
                                let z = outputTransform(load(col, count), load(col + 6 * plane, count),
                                                        load(col + 12 * plane, count), load(col + 18 * plane, count),
                                                        load(col + 24 * plane, count), load(col + 30 * plane, count))
                                sv[q] = z.0; sv[6 + q] = z.1; sv[12 + q] = z.2; sv[18 + q] = z.3
                            }
                            // horizontal pass and scatter of the 4×4 pixels of each tile
                            for i in 0..<4 {
                                let y = 4 * ty + i
                                if y >= h { break }
                                let row = sv + 6 * i
                                let z = outputTransform(row[0], row[1], row[2], row[3], row[4], row[5])
                                let (y0, y1, y2, y3) = (z.0 + bv, z.1 + bv, z.2 + bv, z.3 + bv)
                                let line = dst + y * w
                                for l in 0..<count {
                                    let x0 = 4 * (tx + l)
                                    if x0 + 4 <= w {
                                        line[x0] = y0[l]; line[x0 + 1] = y1[l]; line[x0 + 2] = y2[l]; line[x0 + 3] = y3[l]
                                    } else {
                                        let vals = SIMD4(y0[l], y1[l], y2[l], y3[l])
                                        for j in 0..<(w - x0) { line[x0 + j] = vals[j] }
                                    }
                                }
                            }
                        }
                        tx += 8
                    }
                }
            }
        }
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>, _ count: Int) -> V8 {
        if count == 8 { return vload8(p) }
        var v = V8()
        for l in 0..<count { v[l] = p[l] }
        return v
    }

    @inline(__always) static func store(_ v: V8, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
        if count == 8 { vstore8(v, p); return }
        for l in 0..<count { p[l] = v[l] }
    }
}

/// The rows of a Winograd kernel transform's G: `points` rows, each applied to three values.
protocol KernelRows {
    static var points: Int { get }
    static func row(_ i: Int, _ a: V8, _ b: V8, _ c: V8) -> V8
}
