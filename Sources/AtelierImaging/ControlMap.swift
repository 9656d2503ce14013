import Foundation

/// How a ControlNet unit fits its map to the generation's size (the extension's `resize_mode`).
public enum ControlResizeMode: String, Sendable, CaseIterable {
    /// stretch to the target size
    case justResize = "Just Resize"
    /// scale to cover the target, centre crop (the API default)
    case cropAndResize = "Crop and Resize"
    /// scale to fit inside the target, pad with the border's median colour
    case resizeAndFill = "Resize and Fill"

    /// The extension's names and its older aliases; the integers 0, 1, 2 of older API versions.
    public init?(api value: String) {
        switch value {
        case "Just Resize", "0": self = .justResize
        case "Crop and Resize", "Inner Fit (Scale to Fit)", "Scale to Fit (Inner Fit)", "1": self = .cropAndResize
        case "Resize and Fill", "Outer Fit (Shrink to Fit)", "Envelope (Outer Fit)", "2": self = .resizeAndFill
        default: return nil
        }
    }
}

/// A preprocessor ("module") of sd-webui-controlnet that Atelier has.
public enum ControlModule: String, Sendable, CaseIterable {
    case none
    case canny

    /// The UI sliders (name, default, min, max, step), as `/controlnet/module_list` reports them.
    public var sliders: [(name: String, value: Double, min: Double, max: Double, step: Double)] {
        switch self {
        case .none: return [("Resolution", 512, 64, 2048, 8)]
        case .canny: return [("Resolution", 512, 64, 2048, 8), ("Low Threshold", 100, 1, 255, 1), ("High Threshold", 200, 1, 255, 1)]
        }
    }
}

/// The extension's preprocessing of one unit's input image into the control map ("detected
/// map") and the hint the ControlNet sees, with OpenCV's arithmetic (sd-webui-controlnet
/// 1.1.455: `HWC3`, `resize_image_with_pad`, `pixel_perfect_resolution`, `detectmap_proc`).
public enum ControlPreprocessor {
    /// 3 channels: gray is repeated, RGBA composited on white in float32 (truncated).
    public static func hwc3(_ image: Image8) -> Image8 {
        switch image.channels {
        case 3: return image
        case 1, 2:
            var out = [UInt8](repeating: 0, count: image.width * image.height * 3)
            for i in 0..<(image.width * image.height) {
                let v = image.pixels[i * image.channels]
                out[i * 3] = v; out[i * 3 + 1] = v; out[i * 3 + 2] = v
            }
            return Image8(width: image.width, height: image.height, channels: 3, pixels: out)
        default:
            var out = [UInt8](repeating: 0, count: image.width * image.height * 3)
            for i in 0..<(image.width * image.height) {
                let alpha = Float(image.pixels[i * 4 + 3]) / 255
                for c in 0..<3 {
                    let v = Float(image.pixels[i * 4 + c]) * alpha + 255 * (1 - alpha)
                    out[i * 3 + c] = UInt8(min(max(v, 0), 255))
                }
            }
            return Image8(width: image.width, height: image.height, channels: 3, pixels: out)
        }
    }

    /// numpy's `np.round`: halves to even.
    static func npRound(_ v: Double) -> Int { Int(v.rounded(.toNearestOrEven)) }

    /// "Pixel perfect": the processor resolution that makes the map the target's size
    /// (`round(k · min(H, W))`, k the larger target/source ratio, the smaller for Resize and Fill).
    public static func pixelPerfectResolution(_ image: Image8, height h: Int, width w: Int, mode: ControlResizeMode) -> Int {
        let k0 = Double(h) / Double(image.height), k1 = Double(w) / Double(image.width)
        let k = mode == .resizeAndFill ? min(k0, k1) : max(k0, k1)
        return npRound(k * Double(min(image.height, image.width)))
    }

    /// The image scaled so its short side is `resolution` (INTER_CUBIC enlarging, INTER_AREA
    /// otherwise) and edge-padded to multiples of 64; also the size before padding.
    public static func resizeWithPad(_ image: Image8, resolution: Int) -> (padded: Image8, height: Int, width: Int) {
        let img = hwc3(image)
        let k = Double(resolution) / Double(min(img.height, img.width))
        let ht = npRound(Double(img.height) * k), wt = npRound(Double(img.width) * k)
        let resized = img.cvResized(width: wt, height: ht, k > 1 ? .cubic : .area)
        let ph = Int((Double(ht) / 64).rounded(.up)) * 64, pw = Int((Double(wt) / 64).rounded(.up)) * 64
        return (resized.edgePadded(width: pw, height: ph), ht, wt)
    }

    /// The canny module: `cv2.Canny` on the resized, padded image, as RGB, the pad cut off.
    public static func canny(_ image: Image8, resolution: Int, low: Double, high: Double) -> Image8 {
        let (padded, ht, wt) = resizeWithPad(image, resolution: resolution)
        let edges = Canny.edges(padded, low: low, high: high)
        var out = [UInt8](repeating: 0, count: ht * wt * 3)
        for y in 0..<ht {
            for x in 0..<wt {
                let v = edges.pixels[y * padded.width + x]
                out[(y * wt + x) * 3] = v; out[(y * wt + x) * 3 + 1] = v; out[(y * wt + x) * 3 + 2] = v
            }
        }
        return Image8(width: wt, height: ht, channels: 3, pixels: out)
    }

    /// Runs `module` on `image` for a target of `width × height` pixels: the detected map
    /// (the preprocessor's output size) and the hint map at the target floored to multiples of 8.
    /// Out-of-range resolution / thresholds fall back to the sliders' defaults, as the extension.
    public static func run(_ module: ControlModule, image: Image8, width: Int, height: Int, mode: ControlResizeMode,
                           processorRes: Double = -1, thresholdA: Double = -1, thresholdB: Double = -1,
                           pixelPerfect: Bool = false) -> (detected: Image8, map: Image8) {
        let (h, w) = (height / 8 * 8, width / 8 * 8)
        let img = hwc3(image)
        let detected: Image8
        switch module {
        case .none:
            detected = img
        case .canny:
            var res = processorRes >= 64 && processorRes <= 2048 ? Int(processorRes) : 512
            if pixelPerfect { res = pixelPerfectResolution(img, height: h, width: w, mode: mode) }
            let low = thresholdA >= 1 && thresholdA <= 255 ? thresholdA : 100
            let high = thresholdB >= 1 && thresholdB <= 255 ? thresholdB : 200
            detected = canny(img, resolution: res, low: low, high: high)
        }
        return (detected, detectMap(detected, mode: mode, height: h, width: w))
    }

    /// The extension's `detectmap_proc`: fit a map to `height × width` by the resize mode.
    public static func detectMap(_ map: Image8, mode: ControlResizeMode, height h: Int, width w: Int) -> Image8 {
        let m = hwc3(map)
        if mode == .justResize { return highQualityResize(m, width: w, height: h) }
        let oldH = Double(m.height), oldW = Double(m.width)
        let k0 = Double(h) / oldH, k1 = Double(w) / oldW
        if mode == .resizeAndFill {
            let k = min(k0, k1)
            // the median colour of the four borders (np.median, then truncated to uint8)
            var border: [[UInt8]] = [[], [], []]
            func add(_ x: Int, _ y: Int) { for c in 0..<3 { border[c].append(m.pixels[(y * m.width + x) * 3 + c]) } }
            for x in 0..<m.width { add(x, 0) }
            for x in 0..<m.width { add(x, m.height - 1) }
            for y in 0..<m.height { add(0, y) }
            for y in 0..<m.height { add(m.width - 1, y) }
            let bg = border.map { values -> UInt8 in
                let s = values.sorted(), n = s.count
                return n % 2 == 1 ? s[n / 2] : UInt8((Double(s[n / 2 - 1]) + Double(s[n / 2])) / 2)
            }
            let fitted = highQualityResize(m, width: npRound(oldW * k), height: npRound(oldH * k))
            var out = [UInt8](repeating: 0, count: w * h * 3)
            for i in 0..<(w * h) { out[i * 3] = bg[0]; out[i * 3 + 1] = bg[1]; out[i * 3 + 2] = bg[2] }
            let ph = max(0, (h - fitted.height) / 2), pw = max(0, (w - fitted.width) / 2)
            for y in 0..<min(fitted.height, h - ph) {
                for x in 0..<min(fitted.width, w - pw) {
                    for c in 0..<3 { out[((y + ph) * w + x + pw) * 3 + c] = fitted.pixels[(y * fitted.width + x) * 3 + c] }
                }
            }
            return Image8(width: w, height: h, channels: 3, pixels: out)
        }
        let k = max(k0, k1)
        let covering = highQualityResize(m, width: npRound(oldW * k), height: npRound(oldH * k))
        let ph = max(0, (covering.height - h) / 2), pw = max(0, (covering.width - w) / 2)
        let ch = min(h, covering.height - ph), cw = min(w, covering.width - pw)
        var out = [UInt8](repeating: 0, count: cw * ch * 3)
        for y in 0..<ch {
            for x in 0..<cw {
                for c in 0..<3 { out[(y * cw + x) * 3 + c] = covering.pixels[((y + ph) * covering.width + x + pw) * 3 + c] }
            }
        }
        return Image8(width: cw, height: ch, channels: 3, pixels: out)
    }

    /// The extension's `high_quality_resize`: nearest for few-colour maps, area to shrink,
    /// cubic to enlarge; binary one-pixel edge maps (canny) keep thin edges (`binaryResize`).
    public static func highQualityResize(_ x: Image8, width w: Int, height h: Int) -> Image8 {
        if x.width == w && x.height == h { return x }
        let smaller = w * h < x.width * x.height
        var colours = Set<UInt32>()
        var lo: UInt8 = 255, hi: UInt8 = 0
        for i in 0..<(x.width * x.height) {
            let p = i * 3
            colours.insert(UInt32(x.pixels[p]) << 16 | UInt32(x.pixels[p + 1]) << 8 | UInt32(x.pixels[p + 2]))
            lo = min(lo, x.pixels[p], x.pixels[p + 1], x.pixels[p + 2])
            hi = max(hi, x.pixels[p], x.pixels[p + 1], x.pixels[p + 2])
        }
        let n = colours.count
        if n == 2 && lo < 16 && hi > 240 { return binaryResize(x, width: w, height: h) }
        let interpolation: CVInterpolation = n > 2 && n < 200 ? .nearest : (smaller ? .area : .cubic)
        return x.cvResized(width: w, height: h, interpolation)
    }
}

extension Image8 {
    /// numpy `np.pad(mode="edge")` on the right and bottom up to `width × height`.
    func edgePadded(width pw: Int, height ph: Int) -> Image8 {
        if pw == width && ph == height { return self }
        let cn = channels
        var out = [UInt8](repeating: 0, count: pw * ph * cn)
        for y in 0..<ph {
            let sy = min(y, height - 1)
            for x in 0..<pw {
                let sx = min(x, width - 1)
                for c in 0..<cn { out[(y * pw + x) * cn + c] = pixels[(sy * width + sx) * cn + c] }
            }
        }
        return Image8(width: pw, height: ph, channels: cn, pixels: out)
    }
}

extension ControlPreprocessor {
    /// A binary map (black and white) resized as the extension does: OpenCV resize (area to
    /// shrink, cubic otherwise), the channel mean, then — for one-pixel edges, as canny maps
    /// are — `nake_nms`, Otsu's threshold and `lvmin_thin` (pruning when enlarging); other
    /// binary maps only Otsu's threshold.
    static func binaryResize(_ x: Image8, width w: Int, height h: Int) -> Image8 {
        let (sw, sh) = (x.width, x.height)
        let smaller = w * h < sw * sh, bigger = w * h > sw * sh
        // one-pixel edges: an opening (3×3 erode, then dilate) removes more than half the edge pixels
        let square = Morphology.Kernel(rows: [[1, 1, 1], [1, 1, 1], [1, 1, 1]])
        var removed = 0, edges = 0
        for c in 0..<3 {
            let plane = (0..<(sw * sh)).map { x.pixels[$0 * 3 + c] }
            let opened = Morphology.dilate(Morphology.erode(plane, sw, sh, square), sw, sh, square)
            for i in plane.indices {
                if opened[i] < plane[i] { removed += 1 }
                if plane[i] > 127 { edges += 1 }
            }
        }
        let onePixelEdge = removed * 2 > edges
        let resized = x.cvResized(width: w, height: h, smaller ? .area : .cubic)
        var y = (0..<(w * h)).map { i -> UInt8 in
            let sum = Float(resized.pixels[i * 3]) + Float(resized.pixels[i * 3 + 1]) + Float(resized.pixels[i * 3 + 2])
            return UInt8(min(max(sum / 3, 0), 255))
        }
        if onePixelEdge { y = Morphology.nakeNMS(y, w, h) }
        let t = Morphology.otsuThreshold(y)
        y = y.map { Double($0) > t ? 255 : 0 }
        if onePixelEdge { y = Morphology.lvminThin(y, w, h, prune: bigger) }
        var out = [UInt8](repeating: 0, count: w * h * 3)
        for i in 0..<(w * h) { out[i * 3] = y[i]; out[i * 3 + 1] = y[i]; out[i * 3 + 2] = y[i] }
        return Image8(width: w, height: h, channels: 3, pixels: out)
    }
}

/// OpenCV's binary morphology on one 8-bit plane (3×3 kernels anchored at the centre, the
/// default borders) and the extension's thinning built on it (`lvminthin.py`).
enum Morphology {
    /// A 3×3 kernel: 1 must be set (hit), −1 must be clear (miss), 0 either.
    struct Kernel {
        let rows: [[Int]]
        /// `np.rot90` (counter-clockwise) `k` times
        func rotated(_ k: Int) -> Kernel {
            var m = rows
            for _ in 0..<k { m = (0..<3).map { i in (0..<3).map { j in m[j][2 - i] } } }
            return Kernel(rows: m)
        }
    }

    /// Min (erode, outside = 255) or max (dilate, outside = 0) over the kernel's set cells.
    static func extremum(_ x: [UInt8], _ w: Int, _ h: Int, _ k: Kernel, min: Bool) -> [UInt8] {
        var out = [UInt8](repeating: min ? 255 : 0, count: w * h)
        for u in 0..<3 {
            for v in 0..<3 where k.rows[u][v] != 0 {
                for i in 0..<h {
                    let yy = i + u - 1
                    for j in 0..<w {
                        let xx = j + v - 1
                        let value: UInt8 = (yy < 0 || yy >= h || xx < 0 || xx >= w) ? (min ? 255 : 0) : x[yy * w + xx]
                        out[i * w + j] = min ? Swift.min(out[i * w + j], value) : Swift.max(out[i * w + j], value)
                    }
                }
            }
        }
        return out
    }

    static func erode(_ x: [UInt8], _ w: Int, _ h: Int, _ k: Kernel) -> [UInt8] { extremum(x, w, h, k, min: true) }
    static func dilate(_ x: [UInt8], _ w: Int, _ h: Int, _ k: Kernel) -> [UInt8] { extremum(x, w, h, k, min: false) }

    /// `cv2.morphologyEx(MORPH_HITMISS)` on a 0/255 plane: where every hit cell is set and
    /// every miss cell clear; outside the image counts as set for both (OpenCV's border).
    static func hitMiss(_ x: [UInt8], _ w: Int, _ h: Int, _ k: Kernel) -> [Bool] {
        var out = [Bool](repeating: false, count: w * h)
        for i in 0..<h {
            for j in 0..<w {
                var match = true
                for u in 0..<3 where match {
                    for v in 0..<3 where k.rows[u][v] != 0 {
                        let yy = i + u - 1, xx = j + v - 1
                        if yy < 0 || yy >= h || xx < 0 || xx >= w { continue }  // outside: both set
                        let set = x[yy * w + xx] == 255
                        if (k.rows[u][v] == 1) != set { match = false; break }
                    }
                }
                out[i * w + j] = match
            }
        }
        return out
    }

    /// The extension's `nake_nms`: keep a pixel where it is the maximum along a line
    /// (horizontal, vertical, either diagonal), else 0.
    static func nakeNMS(_ x: [UInt8], _ w: Int, _ h: Int) -> [UInt8] {
        let lines = [Kernel(rows: [[0, 0, 0], [1, 1, 1], [0, 0, 0]]), Kernel(rows: [[0, 1, 0], [0, 1, 0], [0, 1, 0]]),
                     Kernel(rows: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]), Kernel(rows: [[0, 0, 1], [0, 1, 0], [1, 0, 0]])]
        var y = [UInt8](repeating: 0, count: w * h)
        for f in lines {
            let d = dilate(x, w, h, f)
            for i in y.indices where d[i] == x[i] { y[i] = x[i] }
        }
        return y
    }

    /// OpenCV's `getThreshVal_Otsu_8u` (double arithmetic): pixels above it become 255.
    static func otsuThreshold(_ x: [UInt8]) -> Double {
        var hist = [Double](repeating: 0, count: 256)
        for v in x { hist[Int(v)] += 1 }
        let scale = 1.0 / Double(x.count)
        var mu = 0.0
        for i in 0..<256 { mu += Double(i) * hist[i] }
        mu *= scale
        var mu1 = 0.0, q1 = 0.0, maxSigma = 0.0, maxVal = 0.0
        let eps = Double(Float.ulpOfOne)
        for i in 0..<256 {
            let p = hist[i] * scale
            mu1 *= q1
            q1 += p
            let q2 = 1 - q1
            if Swift.min(q1, q2) < eps || Swift.max(q1, q2) > 1 - eps { continue }
            mu1 = (mu1 + Double(i) * p) / q1
            let mu2 = (mu - q1 * mu1) / q2
            let sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2)
            if sigma > maxSigma { maxSigma = sigma; maxVal = Double(i) }
        }
        return maxVal
    }

    static let thinKernels: [Kernel] = {
        let raw = [Kernel(rows: [[-1, -1, -1], [0, 1, 0], [1, 1, 1]]), Kernel(rows: [[0, -1, -1], [1, 1, -1], [0, 1, 0]])]
        return (0..<4).flatMap { k in raw.map { $0.rotated(k) } }
    }()
    static let pruneKernels: [Kernel] = {
        let raw = [Kernel(rows: [[-1, -1, -1], [-1, 1, -1], [0, 0, -1]]), Kernel(rows: [[-1, -1, -1], [-1, 1, -1], [-1, 0, 0]])]
        return (0..<4).flatMap { k in raw.map { $0.rotated(k) } }
    }()

    /// One pass of `thin_one_time`: each kernel's matches cleared in turn; whether any matched.
    static func thinOnce(_ x: inout [UInt8], _ w: Int, _ h: Int, _ kernels: [Kernel]) -> Bool {
        var changed = false
        for k in kernels {
            let hits = hitMiss(x, w, h, k)
            for i in x.indices where hits[i] { x[i] = 0; changed = true }
        }
        return changed
    }

    /// `lvmin_thin`: thinning passes until nothing changes (at most 32), then one pruning pass.
    static func lvminThin(_ x: [UInt8], _ w: Int, _ h: Int, prune: Bool) -> [UInt8] {
        var y = x
        for _ in 0..<32 {
            if !thinOnce(&y, w, h, thinKernels) { break }
        }
        if prune { _ = thinOnce(&y, w, h, pruneKernels) }
        return y
    }
}
