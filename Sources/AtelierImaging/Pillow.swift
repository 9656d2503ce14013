import Foundation

/// Pillow's pixel operations that A1111's inpainting relies on, with Pillow's integer
/// arithmetic (Pillow 13: `Convert.c`, `Paste.c`, `AlphaComposite.c`, `BoxBlur.c`), so that
/// masks, fills and overlays come out byte for byte as A1111 makes them.
///
/// Images are `Image8` with 1 (L), 3 (RGB) or 4 channels; whether 4 channels hold straight
/// ("RGBA") or premultiplied ("RGBa") alpha is the caller's to know, as in Pillow's modes.
public extension Image8 {
    /// `convert('L')`: ITU-R 601 luma with Pillow's rounding (`L24 >> 16`); for 4 channels the
    /// alpha is ignored, as Pillow's `rgba2l` does.
    func pillowL() -> Image8 {
        if channels == 1 { return self }
        var out = [UInt8](repeating: 0, count: width * height)
        for i in 0..<(width * height) {
            let p = i * channels
            let r = UInt32(pixels[p]), g = UInt32(pixels[p + 1]), b = UInt32(pixels[p + 2])
            out[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
        }
        return Image8(width: width, height: height, channels: 1, pixels: out)
    }

    /// `convert('RGB')` from L (grey copied) or RGBA (alpha dropped).
    func pillowRGB() -> Image8 {
        switch channels {
        case 3: return self
        case 1: return Image8(width: width, height: height, channels: 3, pixels: pixels.flatMap { [$0, $0, $0] })
        case 2:  // LA: the grey level, alpha dropped
            return Image8(width: width, height: height, channels: 3, pixels: stride(from: 0, to: pixels.count, by: 2).flatMap { [pixels[$0], pixels[$0], pixels[$0]] })
        default:
            var out = [UInt8](repeating: 0, count: width * height * 3)
            for i in 0..<(width * height) {
                out[i * 3] = pixels[i * channels]; out[i * 3 + 1] = pixels[i * channels + 1]; out[i * 3 + 2] = pixels[i * channels + 2]
            }
            return Image8(width: width, height: height, channels: 3, pixels: out)
        }
    }

    /// `convert('RGBA')` from RGB (opaque) or L.
    func pillowRGBA() -> Image8 {
        if channels == 4 { return self }
        let rgb = pillowRGB()
        var out = [UInt8](repeating: 255, count: width * height * 4)
        for i in 0..<(width * height) {
            out[i * 4] = rgb.pixels[i * 3]; out[i * 4 + 1] = rgb.pixels[i * 3 + 1]; out[i * 4 + 2] = rgb.pixels[i * 3 + 2]
        }
        return Image8(width: width, height: height, channels: 4, pixels: out)
    }

    /// The alpha channel of a 4-channel image as L (`split()[-1]`).
    func alphaChannel() -> Image8 {
        Image8(width: width, height: height, channels: 1, pixels: (0..<(width * height)).map { pixels[$0 * 4 + 3] })
    }

    /// RGBA → RGBa (`rgbA2rgba`): colour × alpha / 255 with Pillow's rounding.
    func premultiplied() -> Image8 {
        var out = pixels
        for i in 0..<(width * height) {
            let a = UInt32(pixels[i * 4 + 3])
            for c in 0..<3 { out[i * 4 + c] = Pillow.mulDiv255(UInt32(pixels[i * 4 + c]), a) }
        }
        return Image8(width: width, height: height, channels: 4, pixels: out)
    }

    /// RGBa → RGBA (`rgba2rgbA`): colour × 255 / alpha, truncated and clipped; alpha 0 and
    /// 255 leave the colour as it is.
    func unpremultiplied() -> Image8 {
        var out = pixels
        for i in 0..<(width * height) {
            let a = Int(pixels[i * 4 + 3])
            guard a != 0 && a != 255 else { continue }
            for c in 0..<3 { out[i * 4 + c] = UInt8(min(255 * Int(pixels[i * 4 + c]) / a, 255)) }
        }
        return Image8(width: width, height: height, channels: 4, pixels: out)
    }

    /// `ImageOps.invert`.
    func inverted() -> Image8 {
        Image8(width: width, height: height, channels: channels, pixels: pixels.map { 255 - $0 })
    }

    /// `crop(box)`; pixels of the box outside the image are zero, as in Pillow.
    func cropped(x0: Int, y0: Int, x1: Int, y1: Int) -> Image8 {
        var out = Image8(width: x1 - x0, height: y1 - y0, channels: channels,
                         pixels: [UInt8](repeating: 0, count: (x1 - x0) * (y1 - y0) * channels))
        out.paste(self, x: -x0, y: -y0)
        return out
    }

    /// `getbbox()` of an L image: the box `(x0, y0, x1, y1)` of its non-zero pixels, nil when blank.
    func nonZeroBox() -> (x0: Int, y0: Int, x1: Int, y1: Int)? {
        precondition(channels == 1)
        var (x0, y0, x1, y1) = (width, height, -1, -1)
        for y in 0..<height {
            for x in 0..<width where pixels[y * width + x] != 0 {
                x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
            }
        }
        return x1 < 0 ? nil : (x0, y0, x1 + 1, y1 + 1)
    }

    /// `paste(src, (x, y), mask)`: the part of `src` that falls inside this image is copied,
    /// or, with an L `mask` the size of `src`, blended as Pillow's `paste_mask_L` does
    /// (every channel, alpha included: `(out·(255−m) + in·m + 128) / 255` with its rounding).
    mutating func paste(_ src: Image8, x dx0: Int = 0, y dy0: Int = 0, mask: Image8? = nil) {
        precondition(src.channels == channels, "paste needs images of one mode")
        var (dx, dy, sx, sy, w, h) = (dx0, dy0, 0, 0, src.width, src.height)
        if dx < 0 { w += dx; sx = -dx; dx = 0 }
        if dy < 0 { h += dy; sy = -dy; dy = 0 }
        w = min(w, width - dx); h = min(h, height - dy)
        guard w > 0, h > 0 else { return }
        let c = channels
        for y in 0..<h {
            let o = ((dy + y) * width + dx) * c, s = ((sy + y) * src.width + sx) * c
            guard let mask else {
                pixels.replaceSubrange(o..<(o + w * c), with: src.pixels[s..<(s + w * c)])
                continue
            }
            let m = (sy + y) * mask.width + sx
            for x in 0..<w {
                let a = UInt32(mask.pixels[m + x])
                for k in 0..<c {
                    let i = o + x * c + k
                    pixels[i] = Pillow.div255(UInt32(pixels[i]) * (255 - a) + UInt32(src.pixels[s + x * c + k]) * a)
                }
            }
        }
    }

    /// `alpha_composite(over)` for two RGBA images of one size (`AlphaComposite.c`, 7 extra bits).
    mutating func alphaComposite(_ over: Image8) {
        precondition(channels == 4 && over.channels == 4 && over.width == width && over.height == height)
        for i in 0..<(width * height) {
            let p = i * 4
            let sa = UInt32(over.pixels[p + 3])
            if sa == 0 { continue }
            let blend = UInt32(pixels[p + 3]) * (255 - sa)
            let outa255 = sa * 255 + blend
            let coef1 = sa * 255 * 255 * 128 / outa255
            let coef2 = 255 * 128 - coef1
            for c in 0..<3 {
                let t = UInt32(over.pixels[p + c]) * coef1 + UInt32(pixels[p + c]) * coef2 + (0x80 << 7)
                pixels[p + c] = UInt8(truncatingIfNeeded: Pillow.shiftDiv255(t) >> 7)
            }
            pixels[p + 3] = UInt8(truncatingIfNeeded: Pillow.shiftDiv255(outa255 + 0x80))
        }
    }

    /// `filter(ImageFilter.GaussianBlur(radius))`: Pillow's three extended box blurs per axis
    /// (`BoxBlur.c`); radius 0 returns the image unchanged.
    func pillowGaussianBlurred(radius: Double) -> Image8 {
        if radius == 0 { return self }
        let r = Pillow.boxRadius(Float(radius), passes: 3)
        var img = self
        if r != 0 {
            for _ in 0..<3 { img = img.horizontalBoxBlurred(r) }
            var t = img.transposed()
            for _ in 0..<3 { t = t.horizontalBoxBlurred(r) }
            img = t.transposed()
        }
        return img
    }

    func transposed() -> Image8 {
        var out = [UInt8](repeating: 0, count: pixels.count)
        let c = channels
        for y in 0..<height {
            for x in 0..<width {
                for k in 0..<c { out[(x * height + y) * c + k] = pixels[(y * width + x) * c + k] }
            }
        }
        return Image8(width: height, height: width, channels: c, pixels: out)
    }

    /// One `ImagingHorizontalBoxBlur` pass: a box of `2·⌊r⌋+1` pixels plus the fractional
    /// edge weight, edges extended, 24-bit fixed point, wrapping 32-bit arithmetic as in C.
    func horizontalBoxBlurred(_ floatRadius: Float) -> Image8 {
        let radius = Int(floatRadius)
        let ww = UInt32(Float(1 << 24) / (floatRadius * 2 + 1))
        let fw = ((1 << 24) &- UInt32(radius * 2 + 1) &* ww) / 2
        let xsize = width, lastx = xsize - 1
        let edgeA = min(radius + 1, xsize), edgeB = max(xsize - radius - 1, 0)
        let c = channels
        var out = pixels
        var line = [UInt32](repeating: 0, count: xsize)
        for y in 0..<height {
            let base = y * xsize * c
            for k in 0..<c {
                for x in 0..<xsize { line[x] = UInt32(pixels[base + x * c + k]) }
                var acc = line[0] &* UInt32(radius + 1)
                if edgeA - 1 > 0 { for x in 0..<(edgeA - 1) { acc = acc &+ line[x] } }
                acc = acc &+ line[lastx] &* UInt32(truncatingIfNeeded: radius - edgeA + 1)
                func step(_ x: Int, _ sub: Int, _ add: Int, _ left: Int, _ right: Int) {
                    acc = acc &+ line[add] &- line[sub]
                    let bulk = acc &* ww &+ (line[left] &+ line[right]) &* fw
                    out[base + x * c + k] = UInt8(truncatingIfNeeded: (bulk &+ (1 << 23)) >> 24)
                }
                if edgeA <= edgeB {
                    for x in 0..<edgeA { step(x, 0, x + radius, 0, x + radius + 1) }
                    for x in edgeA..<edgeB { step(x, x - radius - 1, x + radius, x - radius - 1, x + radius + 1) }
                    for x in edgeB...lastx { step(x, x - radius - 1, lastx, x - radius - 1, lastx) }
                } else {
                    for x in 0..<edgeB { step(x, 0, x + radius, 0, x + radius + 1) }
                    for x in edgeB..<edgeA { step(x, 0, lastx, 0, lastx) }
                    if edgeA <= lastx { for x in edgeA...lastx { step(x, x - radius - 1, lastx, x - radius - 1, lastx) } }
                }
            }
        }
        return Image8(width: width, height: height, channels: c, pixels: out)
    }
}

/// Pillow's integer helpers (`ImagingUtils.h`).
enum Pillow {
    @inline(__always) static func shiftDiv255(_ a: UInt32) -> UInt32 { ((a >> 8) + a) >> 8 }
    @inline(__always) static func div255(_ a: UInt32) -> UInt8 { UInt8(truncatingIfNeeded: shiftDiv255(a + 128)) }
    @inline(__always) static func mulDiv255(_ a: UInt32, _ b: UInt32) -> UInt8 { div255(a * b) }

    /// `_gaussian_blur_radius`: the extended box radius for a Gaussian of standard deviation
    /// `radius` made of `passes` boxes (Gwosdek et al. 2011), in C float arithmetic.
    static func boxRadius(_ radius: Float, passes: Int) -> Float {
        let sigma2: Float = radius * radius / Float(passes)
        let L = Float((12.0 * Double(sigma2) + 1.0).squareRoot())
        let l = Float(((Double(L) - 1.0) / 2.0).rounded(.down))
        var a: Float = (2 * l + 1) * (l * (l + 1) - 3 * sigma2)
        a /= 6 * (sigma2 - (l + 1) * (l + 1))
        return l + a
    }
}
