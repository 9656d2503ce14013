import Foundation

/// Pillow's resampling (`Image.resize(..., LANCZOS)`), which A1111 uses to fit init images:
/// separable Lanczos-3 with the support widened by the downscale factor, coefficients in
/// double then fixed point with 22 fractional bits, horizontal pass first into an 8-bit image.
public extension Image8 {
    func resizedLanczos(width outW: Int, height outH: Int) -> Image8 {
        pillowResized(width: outW, height: outH, filter: .lanczos)
    }

    /// `Image.resize((w, h), resample=filter, box=box)` for L / RGB / RGBa data: Pillow 13's two
    /// passes, each skipped when its axis keeps its size and the box spans it. The first pass
    /// covers only the source rows (columns) the second needs; it is the horizontal one unless
    /// the height shrinks by more than twice what the width does (Pillow 13, PR 9549). `box` is
    /// (x0, y0, x1, y1) in source pixels and may be empty along an axis (A1111's resize-and-fill
    /// edge strips).
    func pillowResized(width outW: Int, height outH: Int, filter: PillowFilter,
                       box: (x0: Double, y0: Double, x1: Double, y1: Double)? = nil) -> Image8 {
        let b = box ?? (0, 0, Double(width), Double(height))
        if outW == width && outH == height && b == (0, 0, Double(width), Double(height)) { return self }
        let needH = outW != width || b.x0 != 0 || b.x1 != Double(outW)
        let needV = outH != height || b.y0 != 0 || b.y1 != Double(outH)
        func horizontal() -> (weights: [Int64], bounds: [Int], ksize: Int) {
            Resample.coefficients(inSize: width, in0: b.x0, in1: b.x1, outSize: outW, filter: filter)
        }
        let vertical = Resample.coefficients(inSize: height, in0: b.y0, in1: b.y1, outSize: outH, filter: filter)
        let verticalFirst = needH && needV && outH < height && (height - outH) > 2 * (width - outW)
        var img = self
        if verticalFirst {
            // only the columns the horizontal pass reads
            let h = horizontal()
            let first = h.bounds[0], last = h.bounds[(outW - 1) * 2] + h.bounds[(outW - 1) * 2 + 1]
            img = img.resampledVertically(vertical, outH, columns: first..<last)
            img = img.resampledHorizontally(h, outW, rows: 0..<img.height, shift: first)
        } else {
            if needH {
                let rows = needV ? vertical.bounds[0]..<(vertical.bounds[(outH - 1) * 2] + vertical.bounds[(outH - 1) * 2 + 1]) : 0..<height
                img = img.resampledHorizontally(horizontal(), outW, rows: rows, shift: 0)
                if needV { img = img.resampledVertically(vertical, outH, columns: 0..<img.width, shift: rows.lowerBound) }
            } else if needV {
                img = img.resampledVertically(vertical, outH, columns: 0..<width)
            }
        }
        return img
    }

    /// One horizontal pass over `rows` of the source: `bounds` index source columns, less `shift`.
    private func resampledHorizontally(_ c: (weights: [Int64], bounds: [Int], ksize: Int), _ outW: Int, rows: Range<Int>, shift: Int) -> Image8 {
        let ch = channels
        var out = [UInt8](repeating: 0, count: outW * rows.count * ch)
        for (y, sy) in rows.enumerated() {
            let src = sy * width * ch
            for x in 0..<outW {
                let xmin = c.bounds[x * 2] - shift, count = c.bounds[x * 2 + 1]
                for k in 0..<ch {
                    var ss = Resample.half
                    for i in 0..<count { ss += Int64(pixels[src + (xmin + i) * ch + k]) * c.weights[x * c.ksize + i] }
                    out[(y * outW + x) * ch + k] = Resample.clip8(ss)
                }
            }
        }
        return Image8(width: outW, height: rows.count, channels: ch, pixels: out)
    }

    /// One vertical pass over `columns` of the source: `bounds` index source rows, less `shift`.
    private func resampledVertically(_ c: (weights: [Int64], bounds: [Int], ksize: Int), _ outH: Int, columns: Range<Int>, shift: Int = 0) -> Image8 {
        let ch = channels, w = columns.count
        var out = [UInt8](repeating: 0, count: w * outH * ch)
        for y in 0..<outH {
            let ymin = c.bounds[y * 2] - shift, count = c.bounds[y * 2 + 1]
            for (x, sx) in columns.enumerated() {
                for k in 0..<ch {
                    var ss = Resample.half
                    for i in 0..<count { ss += Int64(pixels[((ymin + i) * width + sx) * ch + k]) * c.weights[y * c.ksize + i] }
                    out[(y * w + x) * ch + k] = Resample.clip8(ss)
                }
            }
        }
        return Image8(width: w, height: outH, channels: ch, pixels: out)
    }
}

/// Pillow's resampling filters (`Resample.c`).
public enum PillowFilter: Sendable {
    case lanczos, bicubic, bilinear

    var support: Double {
        switch self {
        case .lanczos: 3
        case .bicubic: 2
        case .bilinear: 1
        }
    }

    func callAsFunction(_ x: Double) -> Double {
        switch self {
        case .lanczos: return Resample.lanczos(x)
        case .bilinear:
            let a = abs(x)
            return a < 1 ? 1 - a : 0
        case .bicubic:
            let a = -0.5, x = abs(x)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
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
    static func coefficients(inSize: Int, in0: Double = 0, in1: Double? = nil, outSize: Int,
                             filter: PillowFilter = .lanczos) -> (weights: [Int64], bounds: [Int], ksize: Int) {
        // the box edges are C floats in Pillow; their difference is taken in float
        let scale = Double(Float(in1 ?? Double(inSize)) - Float(in0)) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
        let ksize = Int(ceil(support)) * 2 + 1
        var weights = [Int64](repeating: 0, count: outSize * ksize)
        var bounds = [Int](repeating: 0, count: outSize * 2)
        let ss = 1.0 / filterScale
        for xx in 0..<outSize {
            let center = Double(Float(in0)) + (Double(xx) + 0.5) * scale
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var k = [Double](repeating: 0, count: xmax)
            var ww = 0.0
            for x in 0..<xmax {
                let w = filter((Double(x + xmin) - center + 0.5) * ss)
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
