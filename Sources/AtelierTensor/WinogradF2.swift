import Foundation

/// Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions with one pixel of zero padding on images
/// too small for F(4×4)'s tiles to fill a GEMM (the SD UNet's 16² level at batch 2: 32 tiles of
/// 4×4 pixels but 128 of 2×2).
///
/// A 2×2 block of output pixels costs 16 multiplies per channel pair instead of 36 (2.25× fewer):
/// the input's 4×4 tiles (overlapping by 2) and the 3×3 kernels are transformed to 4×4, the
/// products become 16 GEMMs `U_p [O×C] · V_p [C×tiles]`, and each product tile is transformed
/// back. Interpolation points 0, ±1 (Lavin & Gray 2016). Its rounding is smaller than F(4×4)'s;
/// `WinogradTests` bounds it against float64. Kernels are transformed per call, a block of
/// output channels at a time under `Winograd.kernelFloatsPerChunk`.
public enum WinogradF2 {
    /// Convolution of NCHW `x` with OIHW 3×3 `weight`, stride 1, padding 1 on every side.
    public static func conv3x3(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let o = weight.shape[0]
        let out = Tensor(uninitialized: Dims(b, o, h, w))
        let ntx = (w + 1) / 2, nty = (h + 1) / 2
        let tiles = b * ntx * nty
        let ob = Winograd.outputBlock(o: o, c: c, points: 4)
        Scratch.with(16 * ob * c + 16 * c * tiles + 16 * ob * tiles) { scratch in
            let u = scratch, v = u + 16 * ob * c, m = v + 16 * c * tiles
            Profiler.measure("winograd.input") { transformInput(x.unsafePointer, b: b, c: c, h: h, w: w, ntx: ntx, nty: nty, into: v) }
            if ob == o { Profiler.measure("winograd.kernels") { transformKernels(weight.unsafePointer, o: o, c: c, into: u) } }
            Winograd.products(planes: 16, weight: weight.unsafePointer, o: o, c: c, block: ob, tiles: tiles, u: u, v: v, m: m,
                              transformKernels: transformKernels) { first, count in
                transformOutput(m, o: count, channels: o, first: first, b: b, h: h, w: w, ntx: ntx, nty: nty, tiles: tiles,
                                bias: bias?.unsafePointer, into: out.unsafePointer)
            }
        }
        return out
    }

    /// `U_p[o][c] = (G g Gᵀ)_p`, G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
    static func transformKernels(_ weight: UnsafePointer<Float>, o: Int, c: Int, into u: UnsafeMutablePointer<Float>) {
        Winograd.transformKernels(weight, o: o, c: c, rows: F2Rows.self, into: u)
    }

    /// F(2×2, 3×3)'s G: four points.
    enum F2Rows: KernelRows {
        static var points: Int { 4 }
        @inline(__always) static func row(_ i: Int, _ a: V8, _ b: V8, _ c: V8) -> V8 { point(i, a, b, c) }
    }

    /// Row `i` of G applied to three values.
    @inline(__always) static func point(_ i: Int, _ a: V8, _ b: V8, _ c: V8) -> V8 {
        switch i {
        case 0: return a
        case 1: return (a + b + c) * 0.5
        case 2: return (a - b + c) * 0.5
        default: return c
        }
    }

    /// `V_p[c][tile] = (Bᵀ d B)_p` for every 4×4 input tile d (origin (2ty − 1, 2tx − 1), zero outside),
    /// Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]. Tiles in (image, ty, tx) order.
    /// The vertical pass runs along x eight pixels at a time; the horizontal one eight tiles at a
    /// time on the even / odd columns.
    static func transformInput(_ x: UnsafePointer<Float>, b: Int, c: Int, h: Int, w: Int, ntx: Int, nty: Int,
                               into v: UnsafeMutablePointer<Float>) {
        let tiles = b * ntx * nty, plane = c * tiles
        let wp = 2 * ntx + 2            // padded width: input x = k − 1
        let half = (ntx + 1 + 7) / 8 * 8
        Compute.split(b * c, minimum: 16, (x, v, (c, h, w, ntx, nty, tiles, plane, wp, half))) { context, range in
            let (x, v, (c, h, w, ntx, nty, tiles, plane, wp, half)) = context
            let t = ThreadScratch.winogradRows.pointer(4 * wp + 2 * half + w)
            let even = t + 4 * wp, odd = even + half, zero = odd + half
            t.initialize(repeating: 0, count: 4 * wp + 2 * half + w)
            for nc in range {
                let n = nc / c, ch = nc % c
                let xc = x + nc * h * w
                for ty in 0..<nty {
                    func row(_ j: Int) -> UnsafePointer<Float> {
                        let y = 2 * ty - 1 + j
                        return y >= 0 && y < h ? xc + y * w : UnsafePointer(zero)
                    }
                    let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3)
                    // vertical pass (Bᵀ d) along x into t_i[1 ... w]; t_i[0] and t_i[w + 1 ...] stay zero
                    var xi = 0
                    while xi + 8 <= w {
                        let d0 = vload8(r0 + xi), d1 = vload8(r1 + xi), d2 = vload8(r2 + xi), d3 = vload8(r3 + xi)
                        let dst = t + 1 + xi
                        vstore8(d0 - d2, dst); vstore8(d1 + d2, dst + wp); vstore8(d2 - d1, dst + 2 * wp); vstore8(d1 - d3, dst + 3 * wp)
                        xi += 8
                    }
                    while xi < w {
                        let d0 = r0[xi], d1 = r1[xi], d2 = r2[xi], d3 = r3[xi]
                        let dst = t + 1 + xi
                        dst[0] = d0 - d2; dst[wp] = d1 + d2; dst[2 * wp] = d2 - d1; dst[3 * wp] = d1 - d3
                        xi += 1
                    }
                    // horizontal pass (· B): tile tx reads columns 2tx … 2tx + 3 = even[tx], odd[tx], even[tx+1], odd[tx+1]
                    let tile0 = (n * nty + ty) * ntx
                    for i in 0..<4 {
                        let ti = t + i * wp
                        for tx in 0...ntx {
                            even[tx] = ti[2 * tx]
                            odd[tx] = 2 * tx + 1 < wp ? ti[2 * tx + 1] : 0
                        }
                        var tx = 0
                        while tx < ntx {
                            let e0 = vload8(even + tx), e1 = vload8(odd + tx), e2 = vload8(even + tx + 1), e3 = vload8(odd + tx + 1)
                            let dst = v + (4 * i) * plane + ch * tiles + tile0 + tx
                            let count = min(8, ntx - tx)
                            Winograd.store(e0 - e2, dst, count); Winograd.store(e1 + e2, dst + plane, count)
                            Winograd.store(e2 - e1, dst + 2 * plane, count); Winograd.store(e1 - e3, dst + 3 * plane, count)
                            tx += 8
                        }
                    }
                }
            }
        }
    }

    /// Output pixels from the products `M_p[o][tile]`: `Aᵀ M A` with Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]],
    /// plus the bias, into channels `first ..< first + o` of images with `channels` channels.
    static func transformOutput(_ m: UnsafePointer<Float>, o: Int, channels: Int, first: Int, b: Int, h: Int, w: Int,
                                ntx: Int, nty: Int, tiles: Int, bias: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>) {
        let plane = o * tiles
        Compute.split(o, minimum: 8, (m, out, bias, (channels, first, b, h, w, ntx, nty, tiles, plane))) { context, range in
            let (m, out, bias, (channels, first, b, h, w, ntx, nty, tiles, plane)) = context
            for oc in range {
                let bv = bias?[first + oc] ?? 0
                for n in 0..<b {
                    let dst = out + (n * channels + first + oc) * h * w
                    for ty in 0..<nty {
                        for tx in 0..<ntx {
                            let src = m + oc * tiles + (n * nty + ty) * ntx + tx
                            @inline(__always) func mp(_ p: Int) -> Float { src[p * plane] }
                            // vertical pass: s[i][q] = (Aᵀ M)[i][q]
                            var s0 = (Float(0), Float(0), Float(0), Float(0)), s1 = s0
                            for q in 0..<4 {
                                let a = mp(q), bq = mp(4 + q), cq = mp(8 + q), dq = mp(12 + q)
                                let top = a + bq + cq, bottom = bq - cq - dq
                                switch q {
                                case 0: s0.0 = top; s1.0 = bottom
                                case 1: s0.1 = top; s1.1 = bottom
                                case 2: s0.2 = top; s1.2 = bottom
                                default: s0.3 = top; s1.3 = bottom
                                }
                            }
                            let y = 2 * ty, x0 = 2 * tx
                            dst[y * w + x0] = s0.0 + s0.1 + s0.2 + bv
                            if x0 + 1 < w { dst[y * w + x0 + 1] = s0.1 - s0.2 - s0.3 + bv }
                            if y + 1 < h {
                                dst[(y + 1) * w + x0] = s1.0 + s1.1 + s1.2 + bv
                                if x0 + 1 < w { dst[(y + 1) * w + x0 + 1] = s1.1 - s1.2 - s1.3 + bv }
                            }
                        }
                    }
                }
            }
        }
    }
}
