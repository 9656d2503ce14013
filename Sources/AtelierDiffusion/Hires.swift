import AtelierImaging
import AtelierModels
import AtelierTensor
import Foundation

/// How the hires fix enlarges the first pass: a latent interpolation (A1111's six "Latent"
/// modes) or a pixel upscaler on the decoded picture (Lanczos, Nearest) that is VAE-encoded again.
public enum HiresUpscaler: Sendable, Equatable {
    case latent(InterpolationMode, antialias: Bool)
    case lanczos
    case nearest

    /// A1111's names (`hr_upscaler`), as `/sdapi/v1/latent-upscale-modes` and `upscalers` list them.
    public static let names: [(String, HiresUpscaler)] = [
        ("Latent", .latent(.bilinear, antialias: false)), ("Latent (antialiased)", .latent(.bilinear, antialias: true)),
        ("Latent (bicubic)", .latent(.bicubic, antialias: false)), ("Latent (bicubic antialiased)", .latent(.bicubic, antialias: true)),
        ("Latent (nearest)", .latent(.nearest, antialias: false)), ("Latent (nearest-exact)", .latent(.nearestExact, antialias: false)),
        ("Lanczos", .lanczos), ("Nearest", .nearest),
    ]

    public init?(name: String) {
        guard let hit = Self.names.first(where: { $0.0.lowercased() == name.lowercased() }) else { return nil }
        self = hit.1
    }

    public var name: String { Self.names.first { $0.1 == self }!.0 }
}

/// A1111 1.10's hires fix (`enable_hr`): the first pass at the request's size, enlarged, then an
/// img2img pass of `hr_second_pass_steps` (or `steps`) steps at `denoising_strength`.
public struct HiresFix: Sendable, Equatable {
    public var scale: Double = 2
    /// the target size; 0 = from `scale` (one given: the other from the aspect)
    public var resizeX = 0
    public var resizeY = 0
    public var upscaler: HiresUpscaler = .latent(.bilinear, antialias: false)
    /// 0 = the first pass's steps
    public var secondPassSteps = 0
    /// the second pass's own sampler / schedule / prompts (nil = the first pass's)
    public var sampler: Sampler?
    public var scheduler: Scheduler?
    public var prompt: String?
    public var negativePrompt: String?

    public init() {}

    /// `calculate_target_resolution`: the upscale size and, when both resize sides are given
    /// (scale to cover), the latent rows / columns cut off afterwards.
    public func target(width w: Int, height h: Int) -> (x: Int, y: Int, truncateX: Int, truncateY: Int) {
        if resizeX == 0 && resizeY == 0 { return (Int(Double(w) * scale), Int(Double(h) * scale), 0, 0) }
        if resizeY == 0 { return (resizeX, resizeX * h / w, 0, 0) }
        if resizeX == 0 { return (resizeY * w / h, resizeY, 0, 0) }
        let (tx, ty) = Double(w) / Double(h) < Double(resizeX) / Double(resizeY) ? (resizeX, resizeX * h / w) : (resizeY * w / h, resizeY)
        return (tx, ty, (tx - resizeX) / 8, (ty - resizeY) / 8)
    }
}

/// Writes every dump under a prefix (the hires fix's first pass: `firstpass_*`).
final class PrefixedDump: DumpSink {
    let inner: DumpSink
    let prefix: String
    init(inner: DumpSink, prefix: String) {
        self.inner = inner
        self.prefix = prefix
    }
    func write(_ name: String, shape: [Int], values: [Float]) { inner.write(prefix + name, shape: shape, values: values) }
}

extension Pipeline {
    /// The hires pass as its own request: the latent's size after truncation, `steps` = the
    /// pass's steps (prompt-editing schedules use them), the hires prompts and sampler; and
    /// `setup_img2img_steps`' explicit-steps branch: a schedule of `int(steps / min(strength, 0.999))`
    /// steps of which the last `t_enc + 1 = steps` are taken.
    func hiresRequest(_ r: GenerationRequest, _ hr: HiresFix) -> (request: GenerationRequest, steps: (total: Int, tEnc: Int)) {
        let t = hr.target(width: r.width, height: r.height)
        var pass = r
        pass.hires = nil
        pass.width = (t.x / 8 - t.truncateX) * 8
        pass.height = (t.y / 8 - t.truncateY) * 8
        let steps = hr.secondPassSteps > 0 ? hr.secondPassSteps : r.steps
        pass.steps = steps
        if let p = hr.prompt, !p.isEmpty { pass.prompt = p }
        if let n = hr.negativePrompt, !n.isEmpty { pass.negativePrompt = n }
        if let s = hr.sampler { pass.sampler = s }
        if let s = hr.scheduler { pass.scheduler = s }
        return (pass, (Int(Double(steps) / min(r.denoisingStrength, 0.999)), steps - 1))
    }

    /// The first pass's latents enlarged for the hires pass and cropped by the truncation:
    /// interpolated (latent upscalers) or decoded, upscaled in pixels and encoded again.
    func upscaleForHires(_ latents: Tensor, _ r: GenerationRequest, _ pass: (request: GenerationRequest, steps: (total: Int, tEnc: Int)),
                         dump: DumpSink?) throws -> [Float] {
        let hr = r.hires!
        let t = hr.target(width: r.width, height: r.height)
        let b = latents.shape[0]
        var up: Tensor
        switch hr.upscaler {
        case .latent(let mode, let aa):
            up = Ops.interpolate(latents, height: t.y / 8, width: t.x / 8, mode: mode, antialias: aa)
        case .lanczos, .nearest:
            let pictures = decode(latents, vae: r.vae, tileStatistics: r.vaeTileStatistics, dump: nil)
            var encoded: [Float] = []
            for (i, rgb) in pictures.enumerated() {
                let first = Image8(width: r.width, height: r.height, channels: 3, pixels: rgb)
                let big = Self.upscalePixels(first, width: t.x, height: t.y, lanczos: hr.upscaler == .lanczos)
                if i == 0 { dump?.write("init_image", shape: [t.y, t.x, 3], values: big.pixels.map(Float.init)) }
                encoded += encodeInit(InitImage(width: big.width, height: big.height, rgb: big.pixels), vae: r.vae, tileStatistics: r.vaeTileStatistics)
            }
            up = Tensor(shape: [b, 4, t.y / 8, t.x / 8], data: encoded)
        }
        guard t.truncateX > 0 || t.truncateY > 0 else { return up.scalars }
        // lat[:, :, ty//2 : H - (ty+1)//2, tx//2 : W - (tx+1)//2]
        let (h, w) = (up.shape[2], up.shape[3])
        let y0 = t.truncateY / 2, y1 = h - (t.truncateY + 1) / 2, x0 = t.truncateX / 2, x1 = w - (t.truncateX + 1) / 2
        let src = up.scalars
        var out: [Float] = []
        out.reserveCapacity(b * 4 * (y1 - y0) * (x1 - x0))
        for plane in 0..<(b * 4) {
            for y in y0..<y1 {
                let row: Int = plane * h * w + y * w
                out.append(contentsOf: src[(row + x0)..<(row + x1)])
            }
        }
        return out
    }

    /// A1111's `Upscaler.upscale` for its Lanczos / Nearest upscalers, then `resize_image`: up to
    /// three rounds of `int(size · scale)` with the filter until the multiple-of-8 size is reached,
    /// Lanczos to that size if it differs, and Lanczos to the target if it still differs.
    static func upscalePixels(_ img: Image8, width w: Int, height h: Int, lanczos: Bool) -> Image8 {
        var img = img
        let scale = max(Double(w) / Double(img.width), Double(h) / Double(img.height))
        if scale > 1 { img = img.a1111Upscaled(by: scale, with: lanczos ? .lanczos : .nearest) }
        if img.width != w || img.height != h { img = img.resizedLanczos(width: w, height: h) }
        return img
    }

    /// Steps the progress bar counts: the first pass and the hires pass.
    public static func totalSamplingSteps(_ r: GenerationRequest) -> Int {
        guard let hr = r.hires else { return samplingSteps(r) }
        // the second pass is an img2img of t_enc = its steps − 1, with its own sampler
        let steps = hr.secondPassSteps > 0 ? hr.secondPassSteps : r.steps
        return samplingSteps(r) + img2imgSteps(tEnc: steps - 1, sampler: hr.sampler ?? r.sampler)
    }
}
