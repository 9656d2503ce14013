import Foundation

/// Pillow's resampling (`Image.resize(..., LANCZOS)`), which A1111 uses to fit init images:
/// separable Lanczos-3 with the support widened by the downscale factor, coefficients in
/// double then fixed point with 22 fractional bits, horizontal pass first into an 8-bit image.
public extension Image8 {
    /// An init image as A1111's resize mode 0 prepares it: RGBA flattened onto white, then
    /// Pillow's LANCZOS to `width × height` (no resampling when it already has that size).
    func fittedRGB(width: Int, height: Int) -> Image8 {
        Image8(width: self.width, height: self.height, channels: 3, pixels: flattenedRGB())
            .resizedLanczos(width: width, height: height)
    }

    func resizedLanczos(width outW: Int, height outH: Int) -> Image8 {
        if outW == width && outH == height { return self }
        let c = channels
        let (kh, bh, nh) = Resample.coefficients(inSize: width, outSize: outW)
        let (kv, bv, nv) = Resample.coefficients(inSize: height, outSize: outH)
        // rows of the source the vertical pass needs
        let yFirst = bv[0], yLast = bv[(outH - 1) * 2] + bv[(outH - 1) * 2 + 1]
        var temp = pixels, tempW = width, tempRows = height, rowOffset = 0
        if outW != width {
            tempW = outW
            tempRows = yLast - yFirst
            rowOffset = yFirst
            temp = [UInt8](repeating: 0, count: tempW * tempRows * c)
            for y in 0..<tempRows {
                let src = (y + yFirst) * width * c
                for x in 0..<outW {
                    let xmin = bh[x * 2], count = bh[x * 2 + 1]
                    for ch in 0..<c {
                        var ss = Resample.half
                        for i in 0..<count { ss += Int64(pixels[src + (xmin + i) * c + ch]) * kh[x * nh + i] }
                        temp[(y * tempW + x) * c + ch] = Resample.clip8(ss)
                    }
                }
            }
        }
        guard outH != height else { return Image8(width: tempW, height: tempRows, channels: c, pixels: temp) }
        var out = [UInt8](repeating: 0, count: outW * outH * c)
        for y in 0..<outH {
            let ymin = bv[y * 2] - rowOffset, count = bv[y * 2 + 1]
            for x in 0..<outW {
                for ch in 0..<c {
                    var ss = Resample.half
                    for i in 0..<count { ss += Int64(temp[((ymin + i) * tempW + x) * c + ch]) * kv[y * nv + i] }
                    out[(y * outW + x) * c + ch] = Resample.clip8(ss)
                }
            }
        }
        return Image8(width: outW, height: outH, channels: c, pixels: out)
    }
}

enum Resample {
    static let precisionBits = 32 - 8 - 2
    static let half = Int64(1) << (precisionBits - 1)

    static func clip8(_ v: Int64) -> UInt8 {
        if v <= 0 { return 0 }
        if v >= Int64(255) << precisionBits { return 255 }
        return UInt8(v >> precisionBits)
    }

    static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let y = x * Double.pi
        return sin(y) / y
    }

    static func lanczos(_ x: Double) -> Double {
        (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0
    }

    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: per output pixel, the first source
    /// index and count (bounds) and `ksize` fixed-point weights.
    static func coefficients(inSize: Int, outSize: Int) -> (weights: [Int64], bounds: [Int], ksize: Int) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 3.0 * filterScale
        let ksize = Int(ceil(support)) * 2 + 1
        var weights = [Int64](repeating: 0, count: outSize * ksize)
        var bounds = [Int](repeating: 0, count: outSize * 2)
        let ss = 1.0 / filterScale
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var k = [Double](repeating: 0, count: xmax)
            var ww = 0.0
            for x in 0..<xmax {
                let w = lanczos((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for x in 0..<xmax {
                let v = ww != 0 ? k[x] / ww : k[x]
                let scaled = v * Double(1 << precisionBits)
                weights[xx * ksize + x] = Int64(v < 0 ? (-0.5 + scaled) : (0.5 + scaled))
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return (weights, bounds, ksize)
    }
}
