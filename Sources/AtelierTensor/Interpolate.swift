import Foundation

/// `torch.nn.functional.interpolate` on `[N, C, H, W]` float32 tensors (align_corners=False), the
/// modes A1111's latent upscalers use; coordinates and weights as PyTorch's CPU kernels compute them.
public enum InterpolationMode: String, Sendable, CaseIterable {
    case bilinear, bicubic, nearest
    case nearestExact = "nearest-exact"
}

extension Ops {
    /// Resizes the last two axes to `height × width`. `antialias` (bilinear / bicubic) widens the
    /// filter when shrinking and normalises the weights, as PyTorch's `_upsample_*_aa`.
    public static func interpolate(_ x: Tensor, height oh: Int, width ow: Int, mode: InterpolationMode, antialias: Bool = false) -> Tensor {
        precondition(x.shape.count == 4)
        let (n, c, ih, iw) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let wy = taps(input: ih, output: oh, mode: mode, antialias: antialias)
        let wx = taps(input: iw, output: ow, mode: mode, antialias: antialias)
        let out = Tensor(uninitialized: Dims(n, c, oh, ow))
        let src = x.unsafePointer, dst = out.unsafePointer
        var row = [Float](repeating: 0, count: ow)
        for plane in 0..<(n * c) {
            let s = src + plane * ih * iw, d = dst + plane * oh * ow
            for oy in 0..<oh {
                for i in 0..<ow { row[i] = 0 }
                for (yIndex, yWeight) in wy[oy] {
                    let line = s + yIndex * iw
                    for ox in 0..<ow {
                        var acc: Float = 0
                        for (xIndex, xWeight) in wx[ox] { acc += xWeight * line[xIndex] }
                        row[ox] += yWeight * acc
                    }
                }
                for ox in 0..<ow { d[oy * ow + ox] = row[ox] }
            }
        }
        return out
    }

    /// For each output index, its (input index, weight) taps along one axis.
    static func taps(input: Int, output: Int, mode: InterpolationMode, antialias: Bool) -> [[(Int, Float)]] {
        let scale = Float(input) / Float(output)
        switch mode {
        case .nearest, .nearestExact:
            return (0..<output).map { o in
                // nearest-exact: the product in double, rounded to float, floored (as PyTorch)
                let v = mode == .nearest ? Float(o) * scale : Float((Double(o) + 0.5) * Double(scale))
                return [(min(Int(v.rounded(.down)), input - 1), 1)]
            }
        case .bilinear where !antialias:
            return (0..<output).map { o in
                let real = max(scale * (Float(o) + 0.5) - 0.5, 0)
                let i0 = min(Int(real.rounded(.down)), input - 1)
                let i1 = i0 < input - 1 ? i0 + 1 : i0
                let lambda = min(max(real - Float(i0), 0), 1)
                return [(i0, 1 - lambda), (i1, lambda)]
            }
        case .bicubic where !antialias:
            let a: Float = -0.75
            return (0..<output).map { o in
                let real = scale * (Float(o) + 0.5) - 0.5
                let i = Int(real.rounded(.down))
                let t = real - Float(i)
                // cubic convolution (Keys, A = −0.75): taps at i−1 … i+2, indices clamped
                let x1 = t + 1, x2 = 1 - t, x3 = 2 - t
                let w0 = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
                let w1 = ((a + 2) * t - (a + 3)) * t * t + 1
                let w2 = ((a + 2) * x2 - (a + 3)) * x2 * x2 + 1
                let w3 = ((a * x3 - 5 * a) * x3 + 8 * a) * x3 - 4 * a
                return zip([i - 1, i, i + 1, i + 2], [w0, w1, w2, w3]).map { (min(max($0, 0), input - 1), $1) }
            }
        default:
            // antialiased: a triangle (bilinear) or cubic (A = −0.5) filter stretched by the
            // scale when shrinking, sampled at pixel centres, weights normalised to sum 1
            let size: Float = mode == .bilinear ? 2 : 4
            let support = scale >= 1 ? size * 0.5 * scale : size * 0.5
            let inv: Float = scale >= 1 ? 1 / scale : 1
            func filter(_ x: Float) -> Float {
                let x = abs(x)
                if mode == .bilinear { return x < 1 ? 1 - x : 0 }
                let a: Float = -0.5
                if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
                if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
                return 0
            }
            return (0..<output).map { o in
                let center = scale * (Float(o) + 0.5)
                let lo = max(Int(center - support + 0.5), 0)
                let hi = min(Int(center + support + 0.5), input)
                var weights = (lo..<hi).map { j in filter((Float(j) - center + 0.5) * inv) }
                let total = weights.reduce(0, +)
                if total != 0 { weights = weights.map { $0 / total } }
                return zip(lo..<hi, weights).map { ($0, $1) }
            }
        }
    }
}
