import Foundation

/// OpenCV's `cv2.GaussianBlur` on 8-bit images, as A1111 blurs inpainting masks, bit for bit.
///
/// For `uint8` OpenCV (4.x and 5.0) always takes its bit-exact fixed-point path: the kernel is
/// computed in (soft) double, rounded to 8 fractional bits by error diffusion from the outer taps
/// inward with the centre tap taking the rest (so the taps sum to exactly 256), the rows are
/// filtered into 16-bit values with 8 fractional bits, the columns into 32-bit values with 16,
/// and each result is rounded half up. The taps never overflow (the sum of a row's products is
/// at most 255·256), so the order of summation does not matter. Borders are `BORDER_REFLECT_101`
/// (OpenCV's default), reflected again as often as needed when the kernel is wider than the image.
public enum CVGaussianBlur {
    /// `getGaussianKernelBitExact` for `n` taps (odd) and `sigma` (≤ 0: OpenCV's size-derived
    /// sigma, or its fixed small binomial kernels), then `getGaussianKernelFixedPoint_ED` to 8
    /// fractional bits.
    public static func fixedPointKernel(size n: Int, sigma: Double) -> [Int] {
        precondition(n > 0 && n % 2 == 1, "Gaussian kernel size must be odd")
        let exact = exactKernel(size: n, sigma: sigma)
        var out = [Int](repeating: 0, count: n)
        let half = n / 2
        var err = 0.0
        var sum = 0
        for i in 0..<half {
            let adj = exact[i] * 256 + err
            let v = Int(adj.rounded(.toNearestOrEven))
            err = adj - Double(v)
            out[i] = v
            out[n - 1 - i] = v
            sum += v
        }
        out[half] = 256 - 2 * sum
        return out
    }

    /// The double-precision kernel (`getGaussianKernelBitExact`), normalised to sum 1.
    static func exactKernel(size n: Int, sigma: Double) -> [Double] {
        if sigma <= 0 {
            switch n {
            case 1: return [1]
            case 3: return [0.25, 0.5, 0.25]
            case 5: return [0.0625, 0.25, 0.375, 0.25, 0.0625]
            case 7: return [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]
            case 9: return [4, 13, 30, 51, 60, 51, 30, 13, 4].map { $0 / 256 }
            default: break
            }
        }
        let s = sigma > 0 ? sigma : Double(n) * 0.15 + 0.35
        let scale2X = -0.125 / (s * s)
        let half = (n - 1) / 2
        var values = [Double](repeating: 0, count: half)
        var sum = 0.0
        var x = 1 - n
        for i in 0..<half {
            let t = exp(Double(x * x) * scale2X)
            values[i] = t
            sum += t
            x += 2
        }
        sum *= 2
        sum += 1
        let mul = 1 / sum
        var out = [Double](repeating: 0, count: n)
        for i in 0..<half {
            out[i] = values[i] * mul
            out[n - 1 - i] = out[i]
        }
        out[half] = mul
        return out
    }

    /// OpenCV's `borderInterpolate` for `BORDER_REFLECT_101`.
    @inline(__always)
    static func reflect101(_ p: Int, _ len: Int) -> Int {
        if p >= 0 && p < len { return p }
        if len == 1 { return 0 }
        var q = p
        repeat {
            q = q < 0 ? -q : len - 1 - (q - len) - 1
        } while q < 0 || q >= len
        return q
    }

    /// `cv2.GaussianBlur(img, (kw, kh), sigmaX, sigmaY)` for an 8-bit image with any number of
    /// channels (`sigmaY` 0 means `sigmaX`, as in OpenCV).
    public static func blur(_ image: Image8, kernelWidth kw: Int, kernelHeight kh: Int,
                            sigmaX: Double, sigmaY: Double = 0) -> Image8 {
        let (w, h, cn) = (image.width, image.height, image.channels)
        // a one-pixel-wide or -high image is not filtered along that axis (OpenCV's rule)
        let kw = w == 1 ? 1 : kw, kh = h == 1 ? 1 : kh
        if kw == 1 && kh == 1 { return image }
        let sy = sigmaY <= 0 ? sigmaX : sigmaY
        let kx = fixedPointKernel(size: kw, sigma: max(sigmaX, 0))
        let ky = (kh == kw && abs(sigmaX - sy) < Double.ulpOfOne) ? kx : fixedPointKernel(size: kh, sigma: max(sy, 0))
        let src = image.pixels
        let rx = kw / 2, ry = kh / 2
        // row pass: 8 fractional bits
        var rows = [UInt32](repeating: 0, count: w * h * cn)
        let xIndex = (0..<w).map { x in (0..<kw).map { reflect101(x + $0 - rx, w) } }
        for y in 0..<h {
            let base = y * w * cn
            for x in 0..<w {
                let idx = xIndex[x]
                for c in 0..<cn {
                    var s: UInt32 = 0
                    for j in 0..<kw { s += UInt32(kx[j]) * UInt32(src[base + idx[j] * cn + c]) }
                    rows[base + x * cn + c] = s
                }
            }
        }
        // column pass: 16 fractional bits, rounded half up to 8 bits
        var out = [UInt8](repeating: 0, count: w * h * cn)
        for y in 0..<h {
            let idx = (0..<kh).map { reflect101(y + $0 - ry, h) }
            for i in 0..<(w * cn) {
                var s: UInt64 = 0
                for j in 0..<kh { s += UInt64(ky[j]) * UInt64(rows[idx[j] * w * cn + i]) }
                out[y * w * cn + i] = UInt8(min((s + 32768) >> 16, 255))
            }
        }
        return Image8(width: w, height: h, channels: cn, pixels: out)
    }
}
