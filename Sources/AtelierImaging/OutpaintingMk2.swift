import Foundation

/// A1111 1.10's img2img script "Outpainting mk2" on the image side (tools/OUTPAINT_MK2.md §2):
/// the geometry of each direction step, the canvas with matched noise where the picture grows,
/// the masks it hands to img2img, and how each step's generated pictures are put back. The
/// generation itself is the caller's (`generate`), one call per direction step.
public struct OutpaintingMk2: Sendable {
    public struct Directions: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        public static let left = Directions(rawValue: 1), right = Directions(rawValue: 2), up = Directions(rawValue: 4), down = Directions(rawValue: 8)

        /// As the script tests its checkbox group: `"left" in direction` — so the names of a list
        /// count, and a string counts by substring.
        public init(names: [String]) {
            let text = names.joined(separator: ",")
            self = []
            if text.contains("left") { insert(.left) }
            if text.contains("right") { insert(.right) }
            if text.contains("up") { insert(.up) }
            if text.contains("down") { insert(.down) }
        }
    }

    public enum Side: String, Sendable { case left, right, up, down }

    /// What one img2img call of the script gets.
    public struct Step: Sendable {
        public let side: Side
        public let expandPixels: Int
        /// the noised crops, one per batch position (the init images)
        public let images: [Image8]
        /// white = repaint (RGB), before img2img's blur
        public let imageMask: Image8
        /// the script's own latent mask (RGB rectangle, not blurred)
        public let latentMask: Image8
        public let width: Int
        public let height: Int
        /// img2img's Gaussian sigmas (4 × the script's mask blur per axis)
        public let maskBlurX: Double
        public let maskBlurY: Double
    }

    public struct ScriptError: Error, CustomStringConvertible {
        public let description: String
    }

    public let pixels: Int
    public let maskBlur: Double
    public let directions: Directions
    public let noiseQ: Double
    public let colorVariation: Double

    public init(pixels: Int, maskBlur: Double, directions: Directions, noiseQ: Double, colorVariation: Double) {
        self.pixels = pixels
        self.maskBlur = maskBlur
        self.directions = directions
        self.noiseQ = noiseQ
        self.colorVariation = colorVariation
    }

    /// The per-side expansion for an init of `w0 × h0` (§2.1): the expanded axes end at the next
    /// multiple of 64, split between opposite sides.
    public func expansion(w0: Int, h0: Int) -> (left: Int, right: Int, up: Int, down: Int) {
        var left = directions.contains(.left) ? pixels : 0, right = directions.contains(.right) ? pixels : 0
        var up = directions.contains(.up) ? pixels : 0, down = directions.contains(.down) ? pixels : 0
        let targetW = (w0 + left + right + 63) / 64 * 64, targetH = (h0 + up + down + 63) / 64 * 64
        if left > 0 { left = Self.floorDiv(left * (targetW - w0), left + right) }
        if right > 0 { right = targetW - w0 - left }
        if up > 0 { up = Self.floorDiv(up * (targetH - h0), up + down) }
        if down > 0 { down = targetH - h0 - up }
        return (left, right, up, down)
    }

    static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// The blur of each axis: the script's mask blur where a direction of that axis is set.
    public var blurX: Double { directions.contains(.left) || directions.contains(.right) ? maskBlur : 0 }
    public var blurY: Double { directions.contains(.up) || directions.contains(.down) ? maskBlur : 0 }

    /// Runs the script: for each batch iteration the init is grown side by side (left, right, up,
    /// down), `generate` making each step's pictures. Returns the final pictures, iteration by
    /// iteration, batch position by position.
    public func run(initImage: Image8, width: Int, height: Int, batchSize: Int, batchCount: Int,
                    generate: (Step) throws -> [Image8]) throws -> [Image8] {
        let start = initImage.pillowRGB()   // Pillow's paste onto RGB: alpha dropped, grey replicated
        let e = expansion(w0: start.width, h0: start.height)
        var results: [Image8] = []
        for _ in 0..<batchCount {
            var imgs = [Image8](repeating: start, count: batchSize)
            for (side, px) in [(Side.left, e.left), (.right, e.right), (.up, e.up), (.down, e.down)] where px > 0 {
                imgs = try expand(imgs, side: side, expandPixels: px, processWidth: width, processHeight: height, generate: generate)
            }
            results += imgs
        }
        return results
    }

    /// One direction step (§2.3).
    func expand(_ inputs: [Image8], side: Side, expandPixels ep: Int, processWidth: Int, processHeight: Int,
                generate: (Step) throws -> [Image8]) throws -> [Image8] {
        let isLeft = side == .left, isRight = side == .right, isTop = side == .up, isBottom = side == .down
        let horiz = isLeft || isRight, vert = isTop || isBottom
        let mbx = Int(blurX.rounded(.down)), mby = Int(blurY.rounded(.down))
        guard Double(mbx) == blurX, Double(mby) == blurY else {
            throw ScriptError(description: "mask blur must be a whole number of pixels for the masks (got \(maskBlur))")
        }
        var outs: [Image8] = [], crops: [Image8] = []
        var mask = Image8(width: 1, height: 1, channels: 3, pixels: [255, 255, 255])
        var resW = 0, resH = 0, tw = 0, th = 0, prw = 0, prh = 0
        for img in inputs {
            let ph = horiz ? ep : 0, pv = vert ? ep : 0
            resW = img.width + ph; resH = img.height + pv
            prw = (resW + 63) / 64 * 64; prh = (resH + 63) / 64 * 64
            var canvas = Image8(width: prw, height: prh, channels: 3, pixels: [UInt8](repeating: 0, count: prw * prh * 3))
            canvas.paste(img, x: isLeft ? ph : 0, y: isTop ? pv : 0)
            var m = Image8(width: prw, height: prh, channels: 3, pixels: [UInt8](repeating: 255, count: prw * prh * 3))
            try m.fillRectangle(x0: isLeft ? ep + mbx : 0, y0: isTop ? ep + mby : 0,
                                x1: isRight ? prw - ep - mbx : resW, y1: isBottom ? prh - ep - mby : resH, value: 0)
            let src = canvas.pixels.map { Double($0) / 255.0 }
            let maskPlane = m.pixels.map { Double($0) / 255.0 }
            let noised = MatchedNoise.make(source: src, mask: maskPlane, rows: prh, cols: prw, noiseQ: noiseQ, colorVariation: colorVariation)
            let out = Image8(width: prw, height: prh, channels: 3, pixels: noised.map { v in v.isNaN ? 0 : UInt8(min(max(v * 255.0, 0), 255)) })
            outs.append(out)
            tw = horiz ? min(processWidth, img.width + ph) : prw
            th = vert ? min(processHeight, img.height + pv) : prh
            let x0 = isLeft ? 0 : prw - tw, y0 = isTop ? 0 : prh - th
            mask = m.cropped(x0: x0, y0: y0, x1: x0 + tw, y1: y0 + th)
            crops.append(out.cropped(x0: x0, y0: y0, x1: x0 + tw, y1: y0 + th))
        }
        var latent = Image8(width: tw, height: th, channels: 3, pixels: [UInt8](repeating: 255, count: tw * th * 3))
        try latent.fillRectangle(x0: isLeft ? ep + 2 * mbx : 0, y0: isTop ? ep + 2 * mby : 0,
                                 x1: isRight ? mask.width - ep - 2 * mbx : resW, y1: isBottom ? mask.height - ep - 2 * mby : resH, value: 0)
        let step = Step(side: side, expandPixels: ep, images: crops, imageMask: mask, latentMask: latent, width: tw, height: th,
                        maskBlurX: 4 * blurX, maskBlurY: 4 * blurY)
        let made = try generate(step)
        guard made.count == outs.count else { throw ScriptError(description: "the generation gave \(made.count) pictures for \(outs.count)") }
        var results: [Image8] = []
        for (n, var out) in outs.enumerated() {
            let gen = made[n].pillowRGB()
            out.paste(gen, x: isLeft ? 0 : out.width - gen.width, y: isTop ? 0 : out.height - gen.height)
            results.append(out.cropped(x0: 0, y0: 0, x1: resW, y1: resH))
        }
        return results
    }
}

extension Image8 {
    /// `ImageDraw.rectangle((x0, y0, x1, y1), fill=value)`: both corners inclusive, clipped; Pillow
    /// refuses a box with x1 < x0 or y1 < y0.
    mutating func fillRectangle(x0: Int, y0: Int, x1: Int, y1: Int, value: UInt8) throws {
        guard x1 >= x0, y1 >= y0 else {
            throw OutpaintingMk2.ScriptError(description: "the expansion leaves no room for the kept picture (rectangle \(x0),\(y0)–\(x1),\(y1)): use fewer pixels, less mask blur or a larger width/height")
        }
        let (ya, yb, xa, xb) = (max(y0, 0), min(y1, height - 1), max(x0, 0), min(x1, width - 1))
        guard ya <= yb, xa <= xb else { return }
        for y in ya...yb {
            for x in xa...xb {
                for c in 0..<channels { pixels[(y * width + x) * channels + c] = value }
            }
        }
    }
}
