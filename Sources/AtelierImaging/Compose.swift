/// Pixel operations on 8-bit images.
public extension Image8 {
    /// An img2img picture as A1111 takes it (`images.flatten`, then RGB): RGBA composited onto
    /// white, grey expanded to RGB.
    func flattened() -> Image8 {
        channels == 4 ? Image8(width: width, height: height, channels: 3, pixels: flattenedRGB()) : pillowRGB()
    }

    /// RGB bytes, compositing RGBA onto `background` as PIL's `paste(img, mask=img)` does
    /// (A1111's `images.flatten` with the img2img background colour, white by default).
    func flattenedRGB(background: (UInt8, UInt8, UInt8) = (255, 255, 255)) -> [UInt8] {
        guard channels == 4 else { return pixels }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let bg = [background.0, background.1, background.2]
        for i in 0..<(width * height) {
            let a = Int(pixels[i * 4 + 3])
            for c in 0..<3 {
                // PIL BLEND: (in1 * (255 − a) + in2 * a + 128) / 255 with its integer rounding
                let v = Int(bg[c]) * (255 - a) + Int(pixels[i * 4 + c]) * a + 128
                out[i * 3 + c] = UInt8((v + (v >> 8)) >> 8)
            }
        }
        return out
    }
}

public extension Image8 {
    /// A1111's `images.image_grid` (RGB): rows from `n_rows` (> 0: that many; 0: the batch size;
    /// −1: round(√n), or with `preventEmptySpots` the largest divisor of n not above ⌊√n⌋),
    /// columns to fit, each picture pasted centred in a cell of the largest width and height on
    /// the background colour.
    static func a1111Grid(_ imgs: [Image8], batchSize: Int, nRows: Int = -1, preventEmptySpots: Bool = false,
                          background: (UInt8, UInt8, UInt8) = (255, 255, 255)) -> Image8 {
        precondition(!imgs.isEmpty)
        let n = imgs.count
        var rows: Int
        if nRows > 0 {
            rows = nRows
        } else if nRows == 0 {
            rows = batchSize
        } else if preventEmptySpots {
            rows = Int(Double(n).squareRoot().rounded(.down))
            while n % rows != 0 { rows -= 1 }
        } else {
            rows = Int(Double(n).squareRoot().rounded())
        }
        rows = max(1, min(rows, n))
        let cols = (n + rows - 1) / rows
        let w = imgs.map(\.width).max()!, h = imgs.map(\.height).max()!
        var px = [UInt8](repeating: 0, count: cols * w * rows * h * 3)
        for i in 0..<(px.count / 3) { px[i * 3] = background.0; px[i * 3 + 1] = background.1; px[i * 3 + 2] = background.2 }
        let gridW = cols * w
        for (i, img) in imgs.enumerated() {
            let rgb = img.channels == 3 ? img : Image8(width: img.width, height: img.height, channels: 3, pixels: img.flattenedRGB())
            let x0 = (i % cols) * w + (img.width == w ? 0 : (w - img.width) / 2)
            let y0 = (i / cols) * h + (img.height == h ? 0 : (h - img.height) / 2)
            for y in 0..<rgb.height {
                let dst = ((y0 + y) * gridW + x0) * 3
                px.replaceSubrange(dst..<(dst + rgb.width * 3), with: rgb.pixels[(y * rgb.width * 3)..<((y + 1) * rgb.width * 3)])
            }
        }
        return Image8(width: gridW, height: rows * h, channels: 3, pixels: px)
    }
}
