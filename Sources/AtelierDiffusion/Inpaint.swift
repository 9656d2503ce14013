import AtelierImaging
import AtelierTensor

/// What the sampler needs to inpaint: A1111's latent mask (`nmask`, 1 = repaint) at latent
/// size, the masked-content mode, and what puts the result back into the init image.
public struct InpaintSetup: Sendable, Equatable {
    /// `[h/8 · w/8]`, 1 where the sampler repaints; tiled over the 4 latent channels
    public let nmask: [Float]
    public let fill: InpaintOptions.MaskedContent
    /// RGBA at the init image's size: its kept pixels (nil: nothing to composite)
    public let overlay: Image8?
    /// only masked: where the generated picture goes in the init image (x, y, w, h)
    public let pasteTo: [Int]?
    /// the processing mask at the generation's size (L), which inpainting checkpoints also read
    public let imageMask: Image8?
    /// A1111's `mask_round`, which also rounds an inpainting checkpoint's conditioning mask
    public let round: Bool

    public init(nmask: [Float], fill: InpaintOptions.MaskedContent, overlay: Image8?, pasteTo: [Int]?,
                imageMask: Image8? = nil, round: Bool = true) {
        self.nmask = nmask
        self.fill = fill
        self.overlay = overlay
        self.pasteTo = pasteTo
        self.imageMask = imageMask
        self.round = round
    }

    /// The final composite (A1111's `apply_overlay`): the generated RGB image put back in the
    /// init image's frame under the overlay, so pixels outside the mask are the init image's.
    public func composite(_ rgb: [UInt8], width: Int, height: Int) -> Image8 {
        let result = Image8(width: width, height: height, channels: 3, pixels: rgb)
        guard let overlay else { return result }
        return InpaintPreparation.applyOverlay(result, overlay: overlay,
                                               pasteTo: pasteTo.map { ($0[0], $0[1], $0[2], $0[3]) })
    }
}

public extension InitImage {
    /// An img2img input as A1111 prepares it: RGBA flattened onto white, fitted to
    /// `width × height` by `resizeMode` (latent upscale: kept at its own size), and with a
    /// `mask`, A1111's whole inpainting preparation (binarise, invert, blur, crop for only
    /// masked, masked-content fill, latent mask, overlay).
    /// `latentMask`: a separate latent mask (A1111's `p.latent_mask`, which scripts such as
    /// Outpainting mk2 set) instead of the blurred processing mask.
    static func prepared(_ image: Image8, mask: Image8?, width: Int, height: Int,
                         resizeMode: ImageResizeMode = .justResize, inpaint options: InpaintOptions = InpaintOptions(),
                         latentMask: Image8? = nil) -> InitImage {
        guard let mask else {
            let flat = image.flattened()
            let fitted = resizeMode == .latentUpscale ? flat : flat.a1111Resized(resizeMode, width: width, height: height)
            return InitImage(width: fitted.width, height: fitted.height, rgb: fitted.pixels, latentUpscale: resizeMode == .latentUpscale)
        }
        let prep = InpaintPreparation(initImage: image, mask: mask, width: width, height: height, options: options, resizeMode: resizeMode)
        let nmask = latentMask.map { InpaintPreparation.latentMask(of: $0, width: width / 8, height: height / 8, round: options.round) }
            ?? prep.latentMask(width: width / 8, height: height / 8, round: options.round)
        let setup = nmask.map { nmask in
            InpaintSetup(nmask: nmask, fill: options.fill, overlay: prep.overlay,
                         pasteTo: prep.pasteTo.map { [$0.x, $0.y, $0.width, $0.height] },
                         imageMask: prep.imageMask?.pillowL(), round: options.round)
        }
        return InitImage(width: prep.image.width, height: prep.image.height, rgb: prep.image.pixels,
                         latentUpscale: resizeMode == .latentUpscale && prep.cropRegion == nil, inpaint: setup,
                         infotext: prep.infotext.map { InfotextField($0.0, $0.1) })
    }
}

extension Pipeline {
    /// Masked content 2 and 3 (A1111's `init`): the masked part of the init latent becomes the
    /// image seed's noise (a fresh generator per image, its first draw) or zero.
    func applyMaskedContent(_ initLatent: inout [Float], _ setup: InpaintSetup, seeds: [UInt64], shape: [Int], source: NoiseSource) {
        let per = shape.reduce(1, *), plane = shape[1] * shape[2]
        switch setup.fill {
        case .latentNoise:
            var rng = ImageNoise(source: source, shape: shape, seeds: seeds, subseeds: seeds, subseedStrength: 0,
                                 resizeFrom: nil, etaNoiseSeedDelta: 0)
            let noise = rng.next()
            for i in initLatent.indices {
                let m = setup.nmask[(i % per) % plane]
                initLatent[i] = initLatent[i] * (1 - m) + noise[i] * m
            }
        case .latentNothing:
            for i in initLatent.indices { initLatent[i] *= 1 - setup.nmask[(i % per) % plane] }
        case .fill, .original:
            break
        }
    }

    /// `v·nmask + init·(1 − nmask)` (A1111's CFGDenoiser blend and the final one after sampling).
    static func blend(_ v: [Float], _ initLatent: [Float], _ nmask: [Float], per: Int, plane: Int) -> [Float] {
        var out = v
        blend(v, initLatent, nmask, per: per, plane: plane, into: &out)
        return out
    }

    /// The same written into `out` (a buffer the timestep samplers' denoiser keeps from call to call).
    static func blend(_ v: [Float], _ initLatent: [Float], _ nmask: [Float], per: Int, plane: Int, into out: inout [Float]) {
        if out.count != v.count { out = [Float](repeating: 0, count: v.count) }
        for i in v.indices {
            let m = nmask[(i % per) % plane]
            out[i] = v[i] * m + initLatent[i] * (1 - m)
        }
    }
}

extension Pipeline {
    /// An inpainting checkpoint's extra UNet input (A1111's `inpainting_image_conditioning`),
    /// `[5, h/8, w/8]` per image: the conditioning mask (nearest to latent size) and the latent of
    /// the masked init image `lerp(src, src·(1 − mask), weight)` with `src = pixels/255·2 − 1`.
    /// Without a mask (txt2img, plain img2img, the hires pass) the mask is all ones, so the image
    /// is blank. A1111 encodes with a posterior *sample* drawn from the global RNG; Atelier uses
    /// the posterior mean, as for the init latent, which makes the picture depend on the seed only.
    func inpaintingConditioning(_ r: GenerationRequest, shape: [Int], sourceRGB: [UInt8]?) -> [Float] {
        let (h8, w8) = (shape[1], shape[2])
        let (H, W) = (h8 * 8, w8 * 8)
        var mask = [Float](repeating: 1, count: H * W)
        if let m = r.initImage?.inpaint?.imageMask, m.width == W, m.height == H {
            let round = r.initImage?.inpaint?.round ?? true
            mask = m.pixels.map { v in
                let f = Float(v) / 255
                return round ? f.rounded(.toNearestOrEven) : f
            }
        }
        // the masked picture in [-1, 1] (zeros where the mask is 1: all of it without a mask)
        let weight = Float(r.inpaintingMaskWeight)
        let picture = Tensor(uninitialized: [1, 3, H, W])
        let p = picture.unsafePointer
        for c in 0..<3 {
            for i in 0..<(H * W) {
                let src: Float = sourceRGB.map { Float($0[i * 3 + c]) / 255 * 2 - 1 } ?? 0
                let end = src * (1 - mask[i])
                // torch.lerp's two-sided formula
                p[c * H * W + i] = weight < 0.5 ? src + weight * (end - src) : end - (end - src) * (1 - weight)
            }
        }
        let mean = BufferPool.oneOffPhase { (r.vae?.encoder ?? model.vaeEncoder).mean(picture, statistics: r.vaeTileStatistics) }
        let encoded = Ops.scale(mean, model.vaeDecoder.config.scaleFactor).scalars
        let small = Ops.interpolate(Tensor(shape: [1, 1, H, W], data: mask), height: h8, width: w8, mode: .nearest).scalars
        return small + encoded
    }
}
