import AtelierTensor
import Foundation
import Testing

/// The fast 3×3 convolution against a naive float64 convolution, at the shape classes of
/// SD 1.5 (UNet 320 ch @ 64², 640 ch @ 32², a 128-channel VAE layer at 512²) and odd sizes.
///
/// Tolerance: relative L2 ≤ 1e-5 over the checked outputs. Direct float32 convolution is
/// around 1e-7 here; Winograd F(4×4, 3×3)'s transforms multiply the rounding by about ten
/// (≈ 1e-6 measured), well inside what the engine's goldens allow for a whole UNet (1e-4).
@Suite struct WinogradTests {
    /// Deterministic N(0, σ²) values (Box–Muller on a 64-bit LCG).
    static func normals(_ n: Int, seed: UInt64, sigma: Float) -> [Float] {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Double(state >> 11) + 0.5) / Double(1 << 53)
        }
        return (0..<n).map { _ in Float((-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform())) * sigma }
    }

    /// One output of the convolution (stride 1, padding 1) in float64.
    static func reference(_ x: [Float], _ w: [Float], _ bias: [Float], c: Int, h: Int, wd: Int,
                          n: Int, o: Int, y: Int, xx: Int) -> Double {
        var s = Double(bias[o])
        for ch in 0..<c {
            for ky in 0..<3 {
                let iy = y + ky - 1
                if iy < 0 || iy >= h { continue }
                for kx in 0..<3 {
                    let ix = xx + kx - 1
                    if ix < 0 || ix >= wd { continue }
                    s += Double(x[((n * c + ch) * h + iy) * wd + ix]) * Double(w[((o * c + ch) * 3 + ky) * 3 + kx])
                }
            }
        }
        return s
    }

    /// Relative L2 of `out` against float64 at every output channel of the sampled pixels
    /// (all four borders and corners, plus a spread of interior pixels).
    static func relativeError(b: Int, c: Int, o: Int, h: Int, w: Int, pixels: Int) -> (Double, Tensor, Tensor, Tensor) {
        let x = Tensor(shape: [b, c, h, w], data: normals(b * c * h * w, seed: 1, sigma: 1))
        let weight = Tensor(shape: [o, c, 3, 3], data: normals(o * c * 9, seed: 2, sigma: 1 / Float(c * 9).squareRoot()))
        let bias = Tensor(shape: [o], data: normals(o, seed: 3, sigma: 0.1))
        let out = Winograd.conv3x3(x, weight: weight, bias: bias)
        let xs = x.scalars, ws = weight.scalars, bs = bias.scalars, os = out.scalars
        var points: [(Int, Int, Int)] = []
        for n in 0..<b {
            for (y, xx) in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h / 2, 0), (0, w / 2), (h - 1, w / 2), (h / 2, w - 1)] {
                points.append((n, y, xx))
            }
            for k in 0..<pixels { points.append((n, (k * 7919) % h, (k * 104_729) % w)) }
        }
        var num = 0.0, den = 0.0
        for (n, y, xx) in points {
            for oc in 0..<o {
                let ref = reference(xs, ws, bs, c: c, h: h, wd: w, n: n, o: oc, y: y, xx: xx)
                let d = Double(os[((n * o + oc) * h + y) * w + xx]) - ref
                num += d * d
                den += ref * ref
            }
        }
        return ((num / den).squareRoot(), x, weight, bias)
    }

    @Test(arguments: [
        (b: 1, c: 320, o: 320, h: 64, w: 64),   // UNet, 64² level
        (b: 2, c: 640, o: 640, h: 32, w: 32),   // UNet, 32² level (batch 2 = cond + uncond)
        (b: 1, c: 960, o: 320, h: 64, w: 64),   // UNet, first conv of an up block (skip concat)
        (b: 2, c: 1920, o: 640, h: 32, w: 32),  // UNet, 32² up block: kernel transformed in blocks of output channels
        (b: 1, c: 128, o: 128, h: 512, w: 512), // VAE decoder, last stage
        (b: 2, c: 128, o: 128, h: 256, w: 256), // several chunks of tile rows, one across the two images
        (b: 2, c: 3, o: 5, h: 13, w: 21),       // sizes not a multiple of the 4×4 tile
        (b: 1, c: 4, o: 8, h: 1, w: 30),        // one row
    ])
    func winogradConvolutionMatchesFloat64WithinOneInHundredThousand(b: Int, c: Int, o: Int, h: Int, w: Int) {
        let (err, _, _, _) = Self.relativeError(b: b, c: c, o: o, h: h, w: w, pixels: 24)
        #expect(err <= 1e-5, "relative L2 \(err) at [\(b),\(c),\(h),\(w)] → \(o)")
    }

    /// F(2×2, 3×3) against float64 at the UNet's 16² level (batch 2, 2560 → 1280: its kernel transformed
    /// in blocks) and at odd sizes; same tolerance as F(4×4), whose rounding is larger.
    @Test(arguments: [
        (b: 2, c: 2560, o: 1280, h: 16, w: 16),
        (b: 2, c: 1280, o: 1280, h: 16, w: 16),
        (b: 1, c: 5, o: 7, h: 13, w: 21),
        (b: 2, c: 3, o: 4, h: 1, w: 9),
    ])
    func winogradF2MatchesFloat64WithinOneInHundredThousand(b: Int, c: Int, o: Int, h: Int, w: Int) {
        let x = Tensor(shape: [b, c, h, w], data: Self.normals(b * c * h * w, seed: 11, sigma: 1))
        let weight = Tensor(shape: [o, c, 3, 3], data: Self.normals(o * c * 9, seed: 12, sigma: 1 / Float(c * 9).squareRoot()))
        let bias = Tensor(shape: [o], data: Self.normals(o, seed: 13, sigma: 0.1))
        let out = WinogradF2.conv3x3(x, weight: weight, bias: bias).scalars
        let xs = x.scalars, ws = weight.scalars, bs = bias.scalars
        var num = 0.0, den = 0.0
        for n in 0..<b {
            for k in 0..<12 {
                let (y, xx) = k < 4 ? [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)][k] : ((k * 7919) % h, (k * 104_729) % w)
                for oc in 0..<o {
                    let ref = Self.reference(xs, ws, bs, c: c, h: h, wd: w, n: n, o: oc, y: y, xx: xx)
                    let d = Double(out[((n * o + oc) * h + y) * w + xx]) - ref
                    num += d * d
                    den += ref * ref
                }
            }
        }
        #expect((num / den).squareRoot() <= 1e-5, "relative L2 \((num / den).squareRoot()) at [\(b),\(c),\(h),\(w)] → \(o)")
    }

    /// Output channels in blocks (each with its own kernel transform) give the whole transform's
    /// numbers bit for bit: the same products, a block of GEMM rows at a time, and the GEMM sums each
    /// element in the same order whatever the rows around it.
    @Test func kernelTransformInBlocksOfOutputChannelsGivesTheWholeTransformsBits() {
        let x = Tensor(shape: [2, 24, 32, 32], data: Self.normals(2 * 24 * 32 * 32, seed: 6, sigma: 1))
        let weight = Tensor(shape: [40, 24, 3, 3], data: Self.normals(40 * 24 * 9, seed: 7, sigma: 0.1))
        let bias = Tensor(shape: [40], data: Self.normals(40, seed: 8, sigma: 0.1))
        let whole = Winograd.conv3x3(x, weight: weight, bias: bias).scalars
        // blocks of 16, 16 and 8 output channels
        let blocked = Winograd.$kernelFloatsPerChunk.withValue(36 * 16 * 24) { Winograd.conv3x3(x, weight: weight, bias: bias).scalars }
        #expect(blocked.count == whole.count)
        let differing = zip(blocked, whole).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        #expect(differing == 0, "\(differing) outputs differ")
    }

    @Test func convolutionDispatchesSDShapesToWinogradAndSmallOnesToIm2col() {
        let pad = (top: 1, left: 1, bottom: 1, right: 1)
        #expect(Ops.convAlgorithm(input: [2, 320, 64, 64], weight: [320, 320, 3, 3], stride: 1, padding: pad) == .winograd)
        #expect(Ops.convAlgorithm(input: [2, 640, 32, 32], weight: [640, 640, 3, 3], stride: 1, padding: pad) == .winograd)
        #expect(Ops.convAlgorithm(input: [1, 128, 512, 512], weight: [128, 128, 3, 3], stride: 1, padding: pad) == .winograd)
        // 1280 channels: at 8² too few tiles, at 16² F(2×2), at 32² F(4×4) with the kernel transformed in blocks
        #expect(Ops.convAlgorithm(input: [2, 1280, 8, 8], weight: [1280, 1280, 3, 3], stride: 1, padding: pad) == .im2col)
        #expect(Ops.convAlgorithm(input: [2, 1280, 16, 16], weight: [1280, 1280, 3, 3], stride: 1, padding: pad) == .winograd2)
        #expect(Ops.convAlgorithm(input: [2, 1280, 32, 32], weight: [1280, 1280, 3, 3], stride: 1, padding: pad) == .winograd)
        // the stride-2 downsampler and the 1×1 shortcut
        #expect(Ops.convAlgorithm(input: [2, 320, 64, 64], weight: [320, 320, 3, 3], stride: 2, padding: pad) == .im2col)
        #expect(Ops.convAlgorithm(input: [2, 320, 64, 64], weight: [640, 320, 1, 1], stride: 1, padding: (0, 0, 0, 0)) == .gemm)

        // conv2d really runs Winograd for such a shape: its output is Winograd's, bit for bit
        let x = Tensor(shape: [1, 16, 48, 48], data: Self.normals(16 * 48 * 48, seed: 4, sigma: 1))
        let weight = Tensor(shape: [16, 16, 3, 3], data: Self.normals(16 * 16 * 9, seed: 5, sigma: 0.1))
        #expect(Ops.convAlgorithm(input: x.shape, weight: weight.shape, stride: 1, padding: pad) == .winograd)
        let viaConv = Ops.conv2d(x, weight: weight, bias: nil, padding: pad).scalars
        let same = viaConv == Winograd.conv3x3(x, weight: weight, bias: nil).scalars
        #expect(same)
    }
}
