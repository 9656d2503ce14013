import Foundation

/// OpenCV's `cv::resize` for 8-bit images, reproduced bit for bit for the interpolations the
/// ControlNet preprocessors use (the extension resizes with OpenCV, not PIL).
public enum CVInterpolation: String, Sendable {
    case nearest = "INTER_NEAREST"
    case cubic = "INTER_CUBIC"
    /// pixel-area averaging; for shrinking (both axes ≥ 1 source pixel per output pixel)
    case area = "INTER_AREA"
}

public extension Image8 {
    /// `cv2.resize(image, (width, height), interpolation:)` as OpenCV's own code computes it.
    /// The pip wheels of opencv-python route 8-bit INTER_CUBIC to Intel IPP, which differs by
    /// ±1 on some pixels at fractional scales; Atelier reproduces OpenCV without IPP.
    func cvResized(width dw: Int, height dh: Int, _ interpolation: CVInterpolation) -> Image8 {
        if dw == width && dh == height { return self }
        precondition(dw > 0 && dh > 0 && width > 0 && height > 0)
        // OpenCV keeps the inverse scale and derives the scale from it (1/(d/s), not s/d)
        let invX = Double(dw) / Double(width), invY = Double(dh) / Double(height)
        let scaleX = 1 / invX, scaleY = 1 / invY
        switch interpolation {
        case .nearest: return nearest(dw, dh, scaleX, scaleY)
        case .cubic: return cubic(dw, dh, scaleX, scaleY)
        case .area:
            guard scaleX >= 1 && scaleY >= 1 else { return areaLinear(dw, dh, scaleX, scaleY, invX, invY) }
            let ix = Int(scaleX.rounded()), iy = Int(scaleY.rounded())
            if abs(scaleX - Double(ix)) < Double.ulpOfOne && abs(scaleY - Double(iy)) < Double.ulpOfOne {
                return areaFast(dw, dh, ix, iy)
            }
            return area(dw, dh, scaleX, scaleY)
        }
    }

    private func nearest(_ dw: Int, _ dh: Int, _ sx: Double, _ sy: Double) -> Image8 {
        let cn = channels
        var out = [UInt8](repeating: 0, count: dw * dh * cn)
        let xs = (0..<dw).map { min(Int((Double($0) * sx).rounded(.down)), width - 1) }
        for y in 0..<dh {
            let syy = min(Int((Double(y) * sy).rounded(.down)), height - 1)
            for x in 0..<dw {
                for c in 0..<cn { out[(y * dw + x) * cn + c] = pixels[(syy * width + xs[x]) * cn + c] }
            }
        }
        return Image8(width: dw, height: dh, channels: cn, pixels: out)
    }

    /// Bicubic (A = −0.75) in OpenCV's fixed point: coefficients × 2048 rounded to integers and
    /// a horizontal pass into integers; the vertical pass of each row's first ⌊W·C/8⌋·8 values
    /// is OpenCV's SSE path (float32 `S0·b0 + (S1·b1 + (S2·b2 + S3·b3))`, rounded to even), the
    /// rest its scalar path (`(v + 2^21) >> 22`).
    private func cubic(_ dw: Int, _ dh: Int, _ scaleX: Double, _ scaleY: Double) -> Image8 {
        func taps(_ d: Int, _ scale: Double, _ size: Int) -> (index: [Int], coef: [Int64]) {
            var index = [Int](repeating: 0, count: d * 4), coef = [Int64](repeating: 0, count: d * 4)
            for i in 0..<d {
                var f = Float((Double(i) + 0.5) * scale - 0.5)
                let s = Int(f.rounded(.down))
                f -= Float(s)
                let a: Float = -0.75
                let c0 = ((a * (f + 1) - 5 * a) * (f + 1) + 8 * a) * (f + 1) - 4 * a
                let c1 = ((a + 2) * f - (a + 3)) * f * f + 1
                let c2 = ((a + 2) * (1 - f) - (a + 3)) * (1 - f) * (1 - f) + 1
                let c3 = 1 - c0 - c1 - c2
                for (k, c) in [c0, c1, c2, c3].enumerated() {
                    index[i * 4 + k] = min(max(s - 1 + k, 0), size - 1)
                    coef[i * 4 + k] = Int64((c * 2048).rounded(.toNearestOrEven))
                }
            }
            return (index, coef)
        }
        let cn = channels
        let (xi, xc) = taps(dw, scaleX, width)
        let (yi, yc) = taps(dh, scaleY, height)
        // horizontal pass of every source row
        var rows = [Int64](repeating: 0, count: height * dw * cn)
        for y in 0..<height {
            for x in 0..<dw {
                for c in 0..<cn {
                    var sum: Int64 = 0
                    for k in 0..<4 { sum += Int64(pixels[(y * width + xi[x * 4 + k]) * cn + c]) * xc[x * 4 + k] }
                    rows[(y * dw + x) * cn + c] = sum
                }
            }
        }
        var out = [UInt8](repeating: 0, count: dw * dh * cn)
        let rowWidth = dw * cn, vectorPart = rowWidth / 8 * 8
        let unit = 1 / Float(2048 * 2048)
        for y in 0..<dh {
            let b = (0..<4).map { Float(yc[y * 4 + $0]) * unit }
            let r = (0..<4).map { yi[y * 4 + $0] * rowWidth }
            for i in 0..<vectorPart {
                let s0 = Float(rows[r[0] + i]), s1 = Float(rows[r[1] + i]), s2 = Float(rows[r[2] + i]), s3 = Float(rows[r[3] + i])
                let inner = s2 * b[2] + s3 * b[3]
                let v = s0 * b[0] + (s1 * b[1] + inner)
                out[y * rowWidth + i] = UInt8(clamping: Int(v.rounded(.toNearestOrEven)))
            }
            for i in vectorPart..<rowWidth {
                var sum: Int64 = 0
                for k in 0..<4 { sum += rows[r[k] + i] * yc[y * 4 + k] }
                out[y * rowWidth + i] = UInt8(clamping: (sum + (1 << 21)) >> 22)
            }
        }
        return Image8(width: dw, height: dh, channels: cn, pixels: out)
    }

    /// INTER_AREA when an axis enlarges: OpenCV's fixed-point bilinear with area coordinates
    /// (`fx = (dx+1) − (sx+1)/scale`, fractional part) and its SSE vertical rounding
    /// `((b0·(S0>>4))>>16 + (b1·(S1>>4))>>16 + 2) >> 2`.
    private func areaLinear(_ dw: Int, _ dh: Int, _ scaleX: Double, _ scaleY: Double, _ invX: Double, _ invY: Double) -> Image8 {
        func coords(_ n: Int, _ nSrc: Int, _ scale: Double, _ inv: Double, clamp: Bool) -> (ofs: [Int], coef: [(Int64, Int64)], xmax: Int) {
            var ofs: [Int] = [], coef: [(Int64, Int64)] = [], xmax = n
            for d in 0..<n {
                var s = Int((Double(d) * scale).rounded(.down))
                var f = Float(Double(d + 1) - Double(s + 1) * inv)
                f = f <= 0 ? 0 : f - f.rounded(.down)
                if clamp {
                    if s < 0 { f = 0; s = 0 }
                    if s + 1 >= nSrc {
                        xmax = min(xmax, d)
                        if s >= nSrc - 1 { f = 0; s = nSrc - 1 }
                    }
                }
                ofs.append(s)
                coef.append((Int64(((1 - f) * 2048).rounded(.toNearestOrEven)), Int64((f * 2048).rounded(.toNearestOrEven))))
            }
            return (ofs, coef, xmax)
        }
        let cn = channels
        let (xofs, alpha, xmax) = coords(dw, width, scaleX, invX, clamp: true)
        let (yofs, beta, _) = coords(dh, height, scaleY, invY, clamp: false)
        var rows = [Int64](repeating: 0, count: height * dw * cn)
        for y in 0..<height {
            for x in 0..<dw {
                let s = xofs[x]
                for c in 0..<cn {
                    let p0 = Int64(pixels[(y * width + s) * cn + c])
                    rows[(y * dw + x) * cn + c] = x < xmax
                        ? p0 * alpha[x].0 + Int64(pixels[(y * width + s + 1) * cn + c]) * alpha[x].1
                        : p0 * 2048
                }
            }
        }
        var out = [UInt8](repeating: 0, count: dw * dh * cn)
        let rowWidth = dw * cn
        for y in 0..<dh {
            let r0 = min(max(yofs[y], 0), height - 1) * rowWidth, r1 = min(max(yofs[y] + 1, 0), height - 1) * rowWidth
            let (b0, b1) = beta[y]
            for i in 0..<rowWidth {
                let v = (((b0 * (rows[r0 + i] >> 4)) >> 16) + ((b1 * (rows[r1 + i] >> 4)) >> 16) + 2) >> 2
                out[y * rowWidth + i] = UInt8(clamping: v)
            }
        }
        return Image8(width: dw, height: dh, channels: cn, pixels: out)
    }

    /// Integer-factor area averaging (`resizeAreaFast`): 2×2 rounds `(sum + 2) >> 2` (OpenCV's
    /// vector path), other factors `sum · (1/area)` to nearest even; partial cells at the
    /// right and bottom edge average the pixels they have.
    private func areaFast(_ dw: Int, _ dh: Int, _ sx: Int, _ sy: Int) -> Image8 {
        let cn = channels
        var out = [UInt8](repeating: 0, count: dw * dh * cn)
        let scale = 1 / Float(sx * sy)
        let fullW = width / sx  // output columns whose cell lies inside the source
        for y in 0..<dh {
            let y0 = y * sy
            guard y0 < height else { continue }
            let fullRow = y0 + sy <= height
            for x in 0..<dw {
                let x0 = x * sx
                for c in 0..<cn {
                    if fullRow && x < fullW {
                        var sum = 0
                        for yy in 0..<sy { for xx in 0..<sx { sum += Int(pixels[((y0 + yy) * width + x0 + xx) * cn + c]) } }
                        if sx == 2 && sy == 2 && (cn == 1 || cn == 3 || cn == 4) {
                            out[(y * dw + x) * cn + c] = UInt8((sum + 2) >> 2)
                        } else {
                            out[(y * dw + x) * cn + c] = UInt8(clamping: Int((Float(sum) * scale).rounded(.toNearestOrEven)))
                        }
                    } else {
                        guard x0 < width else { continue }
                        var sum = 0, count = 0
                        for yy in 0..<sy where y0 + yy < height {
                            for xx in 0..<sx where x0 + xx < width {
                                sum += Int(pixels[((y0 + yy) * width + x0 + xx) * cn + c])
                                count += 1
                            }
                        }
                        out[(y * dw + x) * cn + c] = UInt8(clamping: Int((Float(sum) / Float(count)).rounded(.toNearestOrEven)))
                    }
                }
            }
        }
        return Image8(width: dw, height: dh, channels: cn, pixels: out)
    }

    /// Fractional area averaging (`resizeArea`): each output pixel the coverage-weighted mean
    /// of its source cell, in float, accumulated in OpenCV's order.
    private func area(_ dw: Int, _ dh: Int, _ scaleX: Double, _ scaleY: Double) -> Image8 {
        struct Tap { let d: Int, s: Int, alpha: Float }
        func table(_ ssize: Int, _ dsize: Int, _ scale: Double) -> [Tap] {
            var tab: [Tap] = []
            for d in 0..<dsize {
                let f1 = Double(d) * scale, f2 = f1 + scale
                let cell = min(scale, Double(ssize) - f1)
                var s1 = Int(f1.rounded(.up)), s2 = Int(f2.rounded(.down))
                s2 = min(s2, ssize - 1)
                s1 = min(s1, s2)
                if Double(s1) - f1 > 1e-3 { tab.append(Tap(d: d, s: s1 - 1, alpha: Float((Double(s1) - f1) / cell))) }
                for s in s1..<max(s1, s2) { tab.append(Tap(d: d, s: s, alpha: Float(1.0 / cell))) }
                if f2 - Double(s2) > 1e-3 { tab.append(Tap(d: d, s: s2, alpha: Float(min(min(f2 - Double(s2), 1), cell) / cell))) }
            }
            return tab
        }
        let cn = channels
        let xtab = table(width, dw, scaleX), ytab = table(height, dh, scaleY)
        var out = [UInt8](repeating: 0, count: dw * dh * cn)
        var buf = [Float](repeating: 0, count: dw * cn), sum = buf
        var prev = ytab[0].d
        func flush(_ row: Int) {
            for i in 0..<(dw * cn) { out[row * dw * cn + i] = UInt8(clamping: Int(sum[i].rounded(.toNearestOrEven))) }
        }
        for t in ytab {
            for i in buf.indices { buf[i] = 0 }
            for tap in xtab {
                for c in 0..<cn { buf[tap.d * cn + c] = buf[tap.d * cn + c] + Float(pixels[(t.s * width + tap.s) * cn + c]) * tap.alpha }
            }
            if t.d != prev {
                flush(prev)
                for i in sum.indices { sum[i] = t.alpha * buf[i] }
                prev = t.d
            } else {
                for i in sum.indices { sum[i] = sum[i] + t.alpha * buf[i] }
            }
        }
        flush(prev)
        return Image8(width: dw, height: dh, channels: cn, pixels: out)
    }
}
