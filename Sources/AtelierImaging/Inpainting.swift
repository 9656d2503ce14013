import Foundation

/// A1111's img2img resize modes (`images.resize_image`, no img2img upscaler configured, so every
/// resize is Pillow LANCZOS).
public enum ImageResizeMode: Int, Sendable, CaseIterable {
    /// stretch to the target size
    case justResize = 0
    /// scale to cover the target, centred, overflow cropped
    case cropAndResize = 1
    /// scale to fit inside, centred, the empty bands filled by stretching the image's edge rows/columns
    case resizeAndFill = 2
    /// img2img only: the init image is encoded at its own size and its latent resized bilinearly
    case latentUpscale = 3

    public var label: String {
        switch self {
        case .justResize: "Just resize"
        case .cropAndResize: "Crop and resize"
        case .resizeAndFill: "Resize and fill"
        case .latentUpscale: "Just resize (latent upscale)"
        }
    }
}

public extension Image8 {
    /// `images.resize_image(mode, im, width, height)` for modes 0–2 on L or RGB images (mode 3
    /// resizes like 0 here; its latent resize is the pipeline's). Modes 1 and 2 produce
    /// 3-channel images on black, as Pillow's `Image.new("RGB")`.
    func a1111Resized(_ mode: ImageResizeMode, width: Int, height: Int) -> Image8 {
        switch mode {
        case .justResize, .latentUpscale:
            return pillowResized(width: width, height: height, filter: .lanczos)
        case .cropAndResize, .resizeAndFill:
            let ratio = Double(width) / Double(height), srcRatio = Double(self.width) / Double(self.height)
            let cover = mode == .cropAndResize
            let fitWidth = cover ? ratio > srcRatio : ratio < srcRatio
            let srcW = fitWidth ? width : self.width * height / self.height
            let srcH = (cover ? ratio <= srcRatio : ratio >= srcRatio) ? height : self.height * width / self.width
            // Pillow resizes the original (its mode kept), then pastes into RGB; the edge strips
            // use resize's default filter, bicubic, over an empty box (an extrapolation of the edge rows)
            let resized = pillowResized(width: srcW, height: srcH, filter: .lanczos)
            let rgb = resized.channels == 3 ? resized : resized.pillowRGB()
            var res = Image8(width: width, height: height, channels: 3, pixels: [UInt8](repeating: 0, count: width * height * 3))
            res.paste(rgb, x: width / 2 - srcW / 2, y: height / 2 - srcH / 2)
            guard !cover else { return res }
            if ratio < srcRatio {
                let fillH = height / 2 - srcH / 2
                if fillH > 0 {
                    res.paste(rgb.pillowResized(width: width, height: fillH, filter: .bicubic, box: (0, 0, Double(width), 0)), x: 0, y: 0)
                    res.paste(rgb.pillowResized(width: width, height: fillH, filter: .bicubic,
                                                box: (0, Double(rgb.height), Double(width), Double(rgb.height))), x: 0, y: fillH + srcH)
                }
            } else if ratio > srcRatio {
                let fillW = width / 2 - srcW / 2
                if fillW > 0 {
                    res.paste(rgb.pillowResized(width: fillW, height: height, filter: .bicubic, box: (0, 0, 0, Double(height))), x: 0, y: 0)
                    res.paste(rgb.pillowResized(width: fillW, height: height, filter: .bicubic,
                                                box: (Double(rgb.width), 0, Double(rgb.width), Double(height))), x: fillW + srcW, y: 0)
                }
            }
            return res
        }
    }
}

/// What the user asked of an inpainting mask (A1111's img2img fields).
public struct InpaintOptions: Sendable, Equatable {
    /// `mask_blur_x` / `mask_blur_y`: Gaussian sigma in pixels (0 = no blur)
    public var blurX = 4
    public var blurY = 4
    /// `mask_round`: threshold an alpha mask and round the latent mask
    public var round = true
    /// `inpainting_mask_invert`: repaint what the mask leaves out
    public var invert = false
    /// `inpaint_full_res`: only the masked region, cropped and scaled to the output size
    public var onlyMasked = false
    /// `inpaint_full_res_padding`: pixels around the mask's box (only masked)
    public var padding = 32
    /// `inpainting_fill`: 0 fill, 1 original, 2 latent noise, 3 latent nothing
    public var fill = MaskedContent.original

    public init() {}

    public enum MaskedContent: Int, Sendable, CaseIterable {
        case fill = 0, original = 1, latentNoise = 2, latentNothing = 3
        public var label: String {
            switch self {
            case .fill: "fill"
            case .original: "original"
            case .latentNoise: "latent noise"
            case .latentNothing: "latent nothing"
            }
        }
    }
}

/// The image side of A1111 1.10 inpainting (`StableDiffusionProcessingImg2Img.init`,
/// `masking.py`, and the final overlay of `process_images_inner`), on Pillow's and OpenCV's
/// arithmetic so every byte matches A1111's.
public struct InpaintPreparation: Sendable {
    /// what the VAE encodes: `width × height` RGB (after crop / fill)
    public let image: Image8
    /// the processing mask at `width × height` (L); nil when an only-masked mask was blank
    public let imageMask: Image8?
    /// RGBA: the init image's pixels where they are kept, transparent where repainted
    public let overlay: Image8?
    /// only masked: where the result goes back in the init image (x, y, w, h)
    public let pasteTo: (x: Int, y: Int, width: Int, height: Int)?
    public let cropRegion: (x0: Int, y0: Int, x1: Int, y1: Int)?
    /// the init image's size, which the final image has
    public let outputWidth: Int
    public let outputHeight: Int
    /// A1111's infotext fields for the mask (in its order)
    public let infotext: [(String, String)]

    /// Prepares `initImage` and `mask` for a `width × height` generation, as A1111 does.
    public init(initImage: Image8, mask: Image8, width: Int, height: Int, options o: InpaintOptions,
                resizeMode: ImageResizeMode = .justResize) {
        var info: [(String, String)] = []
        var m = Self.binaryMask(mask, round: o.round)
        if o.invert {
            m = m.inverted()
            info.append(("Mask mode", "Inpaint not masked"))
        }
        if o.blurX > 0 {
            m = CVGaussianBlur.blur(m, kernelWidth: 2 * Int(2.5 * Double(o.blurX) + 0.5) + 1, kernelHeight: 1, sigmaX: Double(o.blurX))
        }
        if o.blurY > 0 {
            m = CVGaussianBlur.blur(m, kernelWidth: 1, kernelHeight: 2 * Int(2.5 * Double(o.blurY) + 0.5) + 1, sigmaX: Double(o.blurY))
        }
        if (o.blurX > 0 || o.blurY > 0) && o.blurX == o.blurY { info.append(("Mask blur", String(o.blurX))) }

        var imageMask: Image8?
        var overlayMask: Image8?
        var crop: (x0: Int, y0: Int, x1: Int, y1: Int)?
        var pasteTo: (x: Int, y: Int, width: Int, height: Int)?
        if o.onlyMasked {
            if let box = Self.paddedBox(m, padding: o.padding) {
                let c = Self.expandCropRegion(box, processWidth: width, processHeight: height, imageWidth: m.width, imageHeight: m.height)
                crop = c
                overlayMask = m
                imageMask = m.cropped(x0: c.x0, y0: c.y0, x1: c.x1, y1: c.y1).a1111Resized(.resizeAndFill, width: width, height: height).pillowL()
                pasteTo = (c.x0, c.y0, c.x1 - c.x0, c.y1 - c.y0)
                info.append(("Inpaint area", "Only masked"))
                info.append(("Masked area padding", String(o.padding)))
            }
        } else {
            let resized = m.a1111Resized(.justResize, width: width, height: height)
            imageMask = resized
            overlayMask = Image8(width: width, height: height, channels: 1, pixels: resized.pixels.map { UInt8(min(Int($0) * 2, 255)) })
        }

        var image = initImage.flattened()
        // latent upscale encodes the image at its own size (the pipeline resizes the latent)
        if crop == nil && resizeMode != .latentUpscale { image = image.a1111Resized(resizeMode, width: width, height: height) }
        var overlay: Image8?
        if imageMask != nil, var om = overlayMask {
            if om.width != image.width || om.height != image.height { om = om.a1111Resized(.justResize, width: image.width, height: image.height) }
            var canvas = Image8(width: image.width, height: image.height, channels: 4, pixels: [UInt8](repeating: 0, count: image.width * image.height * 4))
            canvas.paste(image.pillowRGBA(), mask: om.inverted())
            overlay = canvas.unpremultiplied()
        }
        if let c = crop {
            image = image.cropped(x0: c.x0, y0: c.y0, x1: c.x1, y1: c.y1).a1111Resized(.resizeAndFill, width: width, height: height)
        }
        if let imageMask, o.fill != .original {
            image = Self.fill(image, mask: imageMask)
        }
        if imageMask != nil && o.fill != .original { info.append(("Masked content", o.fill.label)) }
        self.image = image
        self.imageMask = imageMask
        self.overlay = overlay
        self.pasteTo = pasteTo
        self.cropRegion = crop
        self.outputWidth = overlay?.width ?? image.width
        self.outputHeight = overlay?.height ?? image.height
        self.infotext = info
    }

    /// `create_binary_mask`: an RGBA mask with any non-opaque pixel gives its alpha (thresholded
    /// `> 128` when rounding); anything else its luma, grey levels kept.
    public static func binaryMask(_ mask: Image8, round: Bool) -> Image8 {
        if mask.channels == 4 {
            let alpha = mask.alphaChannel()
            if alpha.pixels.contains(where: { $0 != 255 }) {
                return round ? Image8(width: alpha.width, height: alpha.height, channels: 1, pixels: alpha.pixels.map { $0 > 128 ? 255 : 0 }) : alpha
            }
        }
        return mask.pillowL()
    }

    /// `get_crop_region_v2`: the box of the mask's non-zero pixels grown by `padding`, clipped.
    static func paddedBox(_ m: Image8, padding: Int) -> (x0: Int, y0: Int, x1: Int, y1: Int)? {
        guard let b = m.nonZeroBox() else { return nil }
        guard padding != 0 else { return b }
        return (max(b.x0 - padding, 0), max(b.y0 - padding, 0), min(b.x1 + padding, m.width), min(b.y1 + padding, m.height))
    }

    /// `masking.expand_crop_region`: grows the box to the processing aspect ratio, shifting it
    /// back inside the image (A1111's integer arithmetic, including its `>=` edge tests).
    static func expandCropRegion(_ box: (x0: Int, y0: Int, x1: Int, y1: Int), processWidth pw: Int, processHeight ph: Int,
                                 imageWidth iw: Int, imageHeight ih: Int) -> (x0: Int, y0: Int, x1: Int, y1: Int) {
        var (x1, y1, x2, y2) = box
        let ratioCrop = Double(x2 - x1) / Double(y2 - y1), ratioProc = Double(pw) / Double(ph)
        func floorDiv2(_ v: Int) -> Int { v >= 0 ? v / 2 : -((-v + 1) / 2) }
        if ratioCrop > ratioProc {
            let diff = Int(Double(x2 - x1) / ratioProc - Double(y2 - y1))
            y1 -= floorDiv2(diff)
            y2 += diff - floorDiv2(diff)
            if y2 >= ih { let d = y2 - ih; y2 -= d; y1 -= d }
            if y1 < 0 { y2 -= y1; y1 -= y1 }
            if y2 >= ih { y2 = ih }
        } else {
            let diff = Int(Double(y2 - y1) * ratioProc - Double(x2 - x1))
            x1 -= floorDiv2(diff)
            x2 += diff - floorDiv2(diff)
            if x2 >= iw { let d = x2 - iw; x2 -= d; x1 -= d }
            if x1 < 0 { x2 -= x1; x1 -= x1 }
            if x2 >= iw { x2 = iw }
        }
        return (x1, y1, x2, y2)
    }

    /// `masking.fill`: the masked area replaced by ever less blurred copies of what surrounds it
    /// (Gaussian radii 256, 64, 16, 4, 2, 0 composited 1, 1, 2, 4, 2, 1 times).
    public static func fill(_ image: Image8, mask: Image8) -> Image8 {
        var modded = Image8(width: image.width, height: image.height, channels: 4, pixels: [UInt8](repeating: 0, count: image.width * image.height * 4))
        var masked = modded
        masked.paste(image.pillowRGBA().premultiplied(), mask: mask.pillowL().inverted())
        for (radius, repeats) in [(256.0, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)] {
            let blurred = masked.pillowGaussianBlurred(radius: radius).unpremultiplied()
            for _ in 0..<repeats { modded.alphaComposite(blurred) }
        }
        return modded.pillowRGB()
    }

    /// The latent mask A1111 blends with (`nmask`, 1 = repaint): the processing mask resized to
    /// `w8 × h8` with Pillow's bicubic, its first channel / 255, rounded when `round`.
    public func latentMask(width w8: Int, height h8: Int, round: Bool) -> [Float]? {
        guard let imageMask else { return nil }
        return Self.latentMask(of: imageMask, width: w8, height: h8, round: round)
    }

    /// The same of any mask picture (a separate latent mask).
    public static func latentMask(of image: Image8, width w8: Int, height h8: Int, round: Bool) -> [Float] {
        let small = image.pillowRGB().pillowResized(width: w8, height: h8, filter: .bicubic)
        return (0..<(w8 * h8)).map { i in
            let v = Float(small.pixels[i * 3]) / 255
            return round ? v.rounded(.toNearestOrEven) : v
        }
    }

    /// `apply_overlay`: the generated `width × height` RGB image put back into the init image's
    /// frame (only masked: crop-and-resized into the box on a transparent canvas) and composited
    /// under the overlay, so the kept pixels are the init image's own.
    public func applyOverlay(_ result: Image8) -> Image8 {
        guard let overlay else { return result }
        return Self.applyOverlay(result, overlay: overlay, pasteTo: pasteTo)
    }

    public static func applyOverlay(_ result: Image8, overlay: Image8, pasteTo: (x: Int, y: Int, width: Int, height: Int)?) -> Image8 {
        var base: Image8
        if let p = pasteTo {
            base = Image8(width: overlay.width, height: overlay.height, channels: 4, pixels: [UInt8](repeating: 0, count: overlay.width * overlay.height * 4))
            base.paste(result.a1111Resized(.cropAndResize, width: p.width, height: p.height).pillowRGBA(), x: p.x, y: p.y)
        } else {
            base = result.pillowRGBA()
        }
        base.alphaComposite(overlay)
        return base.pillowRGB()
    }
}
