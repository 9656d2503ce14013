/// OpenCV's `cv::Canny` (aperture 3, L1 gradient: the defaults `cv2.Canny(img, low, high)`
/// uses), reproduced pixel for pixel so ControlNet's canny maps equal the extension's.
public enum Canny {
    /// The edge map (one channel, 255 on edges) of an 8-bit image with 1 or 3 channels.
    /// Thresholds are floored as OpenCV does; a low above the high is swapped.
    public static func edges(_ image: Image8, low: Double, high: Double) -> Image8 {
        precondition(image.channels == 1 || image.channels == 3, "Canny takes 1 or 3 channels")
        var lo = Int(low.rounded(.down)), hi = Int(high.rounded(.down))
        if lo > hi { swap(&lo, &hi) }
        let (w, h, cn) = (image.width, image.height, image.channels)
        guard w > 0, h > 0 else { return Image8(width: w, height: h, channels: 1, pixels: []) }
        let src = image.pixels

        // Sobel 3×3 per channel with replicated borders; per pixel the channel of largest
        // |dx| + |dy| (the first on ties), as OpenCV's multi-channel Canny.
        var dx = [Int32](repeating: 0, count: w * h), dy = dx
        // magnitude with a zero border of one pixel on every side: (h + 2) × (w + 2)
        let mw = w + 2
        var mag = [Int32](repeating: 0, count: (h + 2) * mw)
        src.withUnsafeBufferPointer { s in
            for y in 0..<h {
                let ym = max(y - 1, 0), yp = min(y + 1, h - 1)
                for x in 0..<w {
                    let xm = max(x - 1, 0), xp = min(x + 1, w - 1)
                    var best: Int32 = -1, bx: Int32 = 0, by: Int32 = 0
                    for c in 0..<cn {
                        @inline(__always) func p(_ yy: Int, _ xx: Int) -> Int32 { Int32(s[(yy * w + xx) * cn + c]) }
                        let gx = (p(ym, xp) + 2 * p(y, xp) + p(yp, xp)) - (p(ym, xm) + 2 * p(y, xm) + p(yp, xm))
                        let gy = (p(yp, xm) + 2 * p(yp, x) + p(yp, xp)) - (p(ym, xm) + 2 * p(ym, x) + p(ym, xp))
                        let m = abs(gx) + abs(gy)
                        if m > best { best = m; bx = gx; by = gy }
                    }
                    dx[y * w + x] = bx
                    dy[y * w + x] = by
                    mag[(y + 1) * mw + x + 1] = best
                }
            }
        }

        // Non-maximum suppression. map: 0 = could be an edge, 1 = not an edge, 2 = edge;
        // a one-pixel border of 1 so hysteresis never leaves the image.
        let shift: Int64 = 15
        let tg22: Int64 = 13573  // tan(22.5°)·2^15
        var map = [UInt8](repeating: 1, count: (h + 2) * mw)
        var stack: [Int] = []
        stack.reserveCapacity(w * h / 8)
        for y in 0..<h {
            for x in 0..<w {
                let j = (y + 1) * mw + x + 1
                let m = mag[j]
                guard m > lo else { continue }  // map stays 1
                let xs = Int64(dx[y * w + x]), ys = Int64(dy[y * w + x])
                let ax = abs(xs), ay = abs(ys) << shift
                let tg22x = ax * tg22
                var isMax: Bool
                if ay < tg22x {  // horizontal gradient: compare left and right
                    isMax = m > mag[j - 1] && m >= mag[j + 1]
                } else {
                    let tg67x = tg22x + (ax << (shift + 1))
                    if ay > tg67x {  // vertical: above and below
                        isMax = m > mag[j - mw] && m >= mag[j + mw]
                    } else {  // diagonal
                        let s = (xs ^ ys) < 0 ? -1 : 1
                        isMax = m > mag[j - mw - s] && m > mag[j + mw + s]
                    }
                }
                guard isMax else { continue }
                if m > hi {
                    map[j] = 2
                    stack.append(j)
                } else {
                    map[j] = 0
                }
            }
        }

        // Hysteresis: grow strong edges through 8-connected candidates.
        let neighbours = [-mw - 1, -mw, -mw + 1, -1, 1, mw - 1, mw, mw + 1]
        while let j = stack.popLast() {
            for d in neighbours where map[j + d] == 0 {
                map[j + d] = 2
                stack.append(j + d)
            }
        }
        var out = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h {
            for x in 0..<w where map[(y + 1) * mw + x + 1] == 2 { out[y * w + x] = 255 }
        }
        return Image8(width: w, height: h, channels: 1, pixels: out)
    }
}
