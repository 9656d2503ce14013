import Foundation

/// A1111's built-in pixel upscalers (`modules/upscaler.py`: `UpscalerLanczos`, `UpscalerNearest`).
public enum PixelUpscaler: String, Sendable, CaseIterable {
    case lanczos = "Lanczos"
    case nearest = "Nearest"
}

public extension Image8 {
    /// `Upscaler.upscale(img, scale)`: up to three passes of the upscaler at `scale` until the
    /// picture covers `⌊w·scale / 8⌋·8 × ⌊h·scale / 8⌋·8`, then Lanczos to exactly that size.
    func a1111Upscaled(by scale: Double, with upscaler: PixelUpscaler) -> Image8 {
        var img = self
        let destW = Int((Double(width) * scale / 8).rounded(.down)) * 8
        let destH = Int((Double(height) * scale / 8).rounded(.down)) * 8
        for i in 0..<3 {
            if img.width >= destW && img.height >= destH && (i > 0 || scale != 1) { break }
            let before = (img.width, img.height)
            let nw = Int(Double(img.width) * scale), nh = Int(Double(img.height) * scale)
            img = upscaler == .lanczos ? img.resizedLanczos(width: nw, height: nh) : img.resizedNearestPIL(width: nw, height: nh)
            if before == (img.width, img.height) { break }
        }
        if img.width != destW || img.height != destH { img = img.resizedLanczos(width: destW, height: destH) }
        return img
    }

    /// Pillow's `resize(..., NEAREST)` (`ImagingScaleAffine`): the source index under each target
    /// pixel's centre, with Pillow's running sum `x₀ = s/2, xᵢ₊₁ = xᵢ + s` (s = in/out) truncated,
    /// which differs from computing `(i + ½)·s` directly where that lands on an integer.
    func resizedNearestPIL(width w: Int, height h: Int) -> Image8 {
        let cn = channels
        func table(_ n: Int, _ size: Int) -> [Int] {
            let s = Double(size) / Double(n)
            var v = s * 0.5
            var out = [Int](repeating: 0, count: n)
            for i in 0..<n {
                out[i] = min(v < 0 ? 0 : Int(v), size - 1)
                v += s
            }
            return out
        }
        let xs = table(w, width), ys = table(h, height)
        var out = [UInt8](repeating: 0, count: w * h * cn)
        for y in 0..<h {
            let yy = ys[y]
            for x in 0..<w {
                let xx = xs[x]
                for c in 0..<cn { out[(y * w + x) * cn + c] = pixels[(yy * width + xx) * cn + c] }
            }
        }
        return Image8(width: w, height: h, channels: cn, pixels: out)
    }

    /// `Image.blend(self, other, alpha)`: `in1 + α·(in2 − in1)` in C float, truncated and clipped.
    func pillowBlend(_ other: Image8, alpha: Double) -> Image8 {
        precondition(other.width == width && other.height == height && other.channels == channels)
        let a = Float(alpha)
        return Image8(width: width, height: height, channels: channels, pixels: zip(pixels, other.pixels).map { x, y in
            let t = Float(Int(x)) + a * Float(Int(y) - Int(x))
            return t <= 0 ? 0 : t >= 255 ? 255 : UInt8(t)
        })
    }
}

/// A1111's Extras "Upscale" postprocessing (`scripts/postprocessing_upscale.py`), the built-in
/// pixel upscalers only: scale by a factor, or to a size (optionally cropped to it), a second
/// upscaler blended in by its visibility, and the `postprocessing` infotext.
public struct ExtrasUpscale: Sendable {
    /// 0: scale by `scale`; 1: scale to `width × height` (covering; `crop` cuts it to that size)
    public var mode = 0
    public var scale = 2.0
    /// how the scale is written in the infotext (A1111 writes the number as it was sent: `2` or `2.0`)
    public var scaleText = "2.0"
    public var width = 512
    public var height = 512
    public var crop = true
    public var upscaler1: PixelUpscaler?
    public var upscaler2: PixelUpscaler?
    public var upscaler2Visibility = 0.0
    public init() {}

    /// The processed picture (RGB) and A1111's infotext fields in order; without an upscaler
    /// the picture is returned as it is, with no fields.
    public func run(_ image: Image8) -> (Image8, [(String, String)]) {
        let rgb = image.pillowRGB()  // A1111: convert("RGB"), alpha dropped
        guard let upscaler1 else { return (rgb, []) }
        var info: [(String, String)] = []
        func upscale(_ up: PixelUpscaler, record: Bool) -> Image8 {
            var by = scale
            if mode == 1 {
                by = max(Double(width) / Double(rgb.width), Double(height) / Double(rgb.height))
                if record { info.append(("Postprocess upscale to", "\(width)x\(height)")) }
            } else if record {
                info.append(("Postprocess upscale by", scaleText))
            }
            var img = rgb.a1111Upscaled(by: by, with: up)
            if mode == 1 && crop {
                var cropped = Image8(width: width, height: height, channels: 3, pixels: [UInt8](repeating: 0, count: width * height * 3))
                cropped.paste(img, x: width / 2 - img.width / 2, y: height / 2 - img.height / 2)
                img = cropped
                if record { info.append(("Postprocess crop to", "\(img.width)x\(img.height)")) }
            }
            return img
        }
        var out = upscale(upscaler1, record: true)
        info.append(("Postprocess upscaler", upscaler1.rawValue))
        if let upscaler2, upscaler2Visibility > 0 {
            out = out.pillowBlend(upscale(upscaler2, record: false), alpha: upscaler2Visibility)
            info.append(("Postprocess upscaler 2", upscaler2.rawValue))
        }
        return (out, info)
    }
}
