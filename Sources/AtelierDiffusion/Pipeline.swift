import AtelierImaging
import AtelierModels
import AtelierTensor
import Foundation

/// A client's mistake in a generation request, naming the field.
public struct RequestError: Error, CustomStringConvertible, Equatable, Sendable {
    public let field: String
    public let message: String
    public init(field: String, _ message: String) {
        self.field = field
        self.message = message
    }
    public var description: String { "\(field): \(message)" }
}

/// What to generate: the txt2img fields of A1111's API, already resolved to engine types.
/// This is the stable entry type the service layers build from JSON.
public struct GenerationRequest: Sendable, Equatable {
    public var prompt = ""
    public var negativePrompt = ""
    /// −1 picks a random seed in [0, 4294967294)
    public var seed: Int64 = -1
    public var steps = 20
    public var cfgScale: Double = 7
    public var sampler: Sampler = .euler
    public var scheduler: Scheduler = .automatic
    public var width = 512
    public var height = 512
    public var clipSkip = 1
    public var batchSize = 1
    public var nIter = 1
    public var randnSource: NoiseSource = .gpu
    public var etaNoiseSeedDelta: Int64 = 0
    /// A1111's sampler options (`s_churn`, …, schedule σ/ρ overrides, discarding the penultimate σ)
    public var samplerOptions = SamplerOptions()
    /// the request's `eta` (A1111's `p.eta`): noise multiplier of the ancestral / SDE samplers and
    /// DDIM; nil = the setting for the sampler's kind (`etaSettings`), resolved per pass
    public var eta: Double?
    /// the `eta_ancestral` / `eta_ddim` settings (A1111's defaults 1 and 0)
    public var etaSettings = EtaSettings()
    public struct EtaSettings: Sendable, Equatable {
        public var ancestral: Double = 1
        public var ddim: Double = 0
        public init(ancestral: Double = 1, ddim: Double = 0) {
            self.ancestral = ancestral
            self.ddim = ddim
        }
    }

    /// The eta `sampler` runs with (A1111's `Sampler.initialize`: `p.eta` if given, else the setting
    /// of the sampler's kind); nil for samplers that take none. A hires pass with another sampler
    /// resolves its own.
    public func resolvedEta(for sampler: Sampler) -> Double? {
        switch sampler.etaKind {
        case .ancestral: eta ?? etaSettings.ancestral
        case .ddim: eta ?? etaSettings.ddim
        case nil: nil
        }
    }

    /// The infotext entry of a pass's eta when it differs from the sampler's default.
    func etaInfotext(for sampler: Sampler) -> (String, String?) {
        switch (sampler.etaKind, resolvedEta(for: sampler)) {
        case (.ancestral, let e?): ("Eta", e != 1 ? Infotext.pythonFloat(e) : nil)
        case (.ddim, let e?): ("Eta DDIM", e != 0 ? Infotext.pythonFloat(e) : nil)
        default: ("Eta", nil)
        }
    }
    /// img2img: the init image (already at width × height) and how much of it to repaint
    public var initImage: InitImage?
    public var denoisingStrength: Double = 0.75
    /// img2img: A1111's `initial_noise_multiplier` (the sampler's starting noise × this)
    public var initialNoiseMultiplier: Double = 1
    /// inpainting checkpoints: how much of the masked image they see (A1111's `inpainting_mask_weight`)
    public var inpaintingMaskWeight: Double = 1
    /// variation seed (−1 random) and how far to move towards its noise (0 = off)
    public var subseed: Int64 = -1
    public var subseedStrength: Double = 0
    /// seed resize: the size the noise was made for (≤ 0 = off)
    public var seedResizeFromW = -1
    public var seedResizeFromH = -1
    /// extra networks (LoRA …) patched into the model for this generation, in prompt order
    public var networks: [NetworkUse] = []
    /// textual-inversion embeddings a prompt may name (matched by their tokens)
    public var embeddings: [TextualInversion] = []
    /// ControlNet units steering every UNet call (their residuals summed)
    public var controlUnits: [ControlUnit] = []
    /// further infotext fields (extensions' `extra_generation_params`, e.g. `ControlNet 0`),
    /// written after the engine's own and before `Version`
    public var extraInfotext: [InfotextField] = []
    /// txt2img hires fix: a second pass at a larger size (`enable_hr`)
    public var hires: HiresFix?
    /// a VAE file used instead of the checkpoint's own (A1111's SD VAE setting / `--vae-path`)
    public var vae: VAEFile?
    /// A1111's Tiling: every UNet and VAE conv pads circularly, so the picture tiles seamlessly
    public var tiling = false
    /// GroupNorm statistics of a VAE decode or encode large enough to run in tiles (above 768²
    /// decoded, 1024² encoded): the whole picture's (A1111's picture) or each tile's own (faster).
    public var vaeTileStatistics = TileStatistics.byDefault

    public init() {}

    /// Checks every field, throwing the first problem with the field's name
    /// (the rules of docs/a1111-api: A1111 itself would fail late or silently).
    public func validate() throws {
        guard (1...500).contains(steps) else { throw RequestError(field: "steps", "ensure this value is between 1 and 500") }
        for (name, v) in [("width", width), ("height", height)] {
            guard v % 8 == 0 else { throw RequestError(field: name, "\(name) must be a multiple of 8") }
            guard (64...4096).contains(v) else { throw RequestError(field: name, "ensure this value is between 64 and 4096") }
        }
        guard width * height * batchSize <= 4096 * 4096 else {
            throw RequestError(field: "width", "width × height × batch_size exceeds 4096 × 4096")
        }
        guard (1...64).contains(batchSize) else { throw RequestError(field: "batch_size", "ensure this value is between 1 and 64") }
        guard (1...1000).contains(nIter) else { throw RequestError(field: "n_iter", "ensure this value is between 1 and 1000") }
        guard cfgScale.isFinite, (0...100).contains(cfgScale) else {
            throw RequestError(field: "cfg_scale", "ensure this value is between 0 and 100")
        }
        guard seed == -1 || (0...4_294_967_295).contains(seed) else {
            throw RequestError(field: "seed", "seed must be -1 (random) or between 0 and 4294967295")
        }
        guard (1...12).contains(clipSkip) else { throw RequestError(field: "clip_skip", "ensure this value is between 1 and 12") }
        guard subseedStrength.isFinite, (0...1).contains(subseedStrength) else {
            throw RequestError(field: "subseed_strength", "ensure this value is between 0 and 1")
        }
        guard subseed == -1 || (0...4_294_967_295).contains(subseed) else {
            throw RequestError(field: "subseed", "subseed must be -1 (random) or between 0 and 4294967295")
        }
        if seedResizeFromW > 0 && seedResizeFromH > 0 {
            for (name, v) in [("seed_resize_from_w", seedResizeFromW), ("seed_resize_from_h", seedResizeFromH)] where v < 8 || v > 4096 {
                throw RequestError(field: name, "ensure this value is between 8 and 4096")
            }
        }
        if let eta, !(eta.isFinite && eta >= 0 && eta <= 10) { throw RequestError(field: "eta", "ensure this value is between 0 and 10") }
        if sampler == .uniPC {
            // A1111 asserts steps >= order (3) inside the sampler; Atelier names the field before any work
            let n = initImage == nil ? DDIMSampler.timesteps(steps: steps).count : Int(min(denoisingStrength, 0.999) * Double(steps))
            if n < 3 {
                throw RequestError(field: initImage == nil ? "steps" : "denoising_strength", "UniPC needs at least 3 sampling steps (its order); this job has \(n)")
            }
        }
        if let img = initImage {
            guard denoisingStrength.isFinite, denoisingStrength > 0, denoisingStrength <= 1 else {
                throw RequestError(field: "denoising_strength", "ensure this value is greater than 0 and at most 1")
            }
            guard img.rgb.count == img.width * img.height * 3 else { throw RequestError(field: "init_images", "init image data does not match its size") }
            if img.latentUpscale {
                guard img.width >= 8, img.height >= 8, img.width * img.height <= 4096 * 4096 else {
                    throw RequestError(field: "init_images", "init image is \(img.width)x\(img.height); latent upscale needs 8 to 4096 × 4096 pixels")
                }
            } else if img.width != width || img.height != height {
                throw RequestError(field: "init_images", "init image is \(img.width)x\(img.height) but the request is \(width)x\(height); fit it to the request's size first")
            }
            if let m = img.inpaint, m.nmask.count != (width / 8) * (height / 8) {
                throw RequestError(field: "mask", "latent mask has \(m.nmask.count) values, expected \((width / 8) * (height / 8))")
            }
            guard initialNoiseMultiplier.isFinite, (0...10).contains(initialNoiseMultiplier) else {
                throw RequestError(field: "initial_noise_multiplier", "ensure this value is between 0 and 10")
            }
        }
        if let hr = hires {
            guard initImage == nil else { throw RequestError(field: "enable_hr", "hires fix is a txt2img option") }
            guard hr.scale.isFinite, (1...8).contains(hr.scale) else { throw RequestError(field: "hr_scale", "ensure this value is between 1 and 8") }
            for (name, v) in [("hr_resize_x", hr.resizeX), ("hr_resize_y", hr.resizeY)] where !(0...4096).contains(v) {
                throw RequestError(field: name, "ensure this value is between 0 and 4096")
            }
            guard (0...500).contains(hr.secondPassSteps) else { throw RequestError(field: "hr_second_pass_steps", "ensure this value is between 0 and 500") }
            guard denoisingStrength.isFinite, denoisingStrength > 0, denoisingStrength <= 1 else {
                throw RequestError(field: "denoising_strength", "ensure this value is greater than 0 and at most 1")
            }
            let t = hr.target(width: width, height: height)
            let (w, h) = (t.x / 8 - t.truncateX, t.y / 8 - t.truncateY)
            guard w >= 8, h >= 8, t.x <= 8192, t.y <= 8192, w * h * 64 * batchSize <= 4096 * 4096 else {
                throw RequestError(field: hr.resizeX > 0 || hr.resizeY > 0 ? "hr_resize_x" : "hr_scale",
                                   "the hires size \(w * 8)x\(h * 8) must be between 64 and 4096 × 4096 pixels (× batch_size)")
            }
            guard controlUnits.isEmpty else { throw RequestError(field: "enable_hr", "hires fix with ControlNet is not available in Atelier yet") }
        }
        for (i, u) in controlUnits.enumerated() {
            let field = "controlnet.args[\(i)]"
            guard u.hint.shape == [1, 3, height / 8 * 8, width / 8 * 8] else {
                throw RequestError(field: field + ".image", "control hint is \(u.hint.shape), expected [1, 3, \(height / 8 * 8), \(width / 8 * 8)]")
            }
            guard u.weight.isFinite, (0...2).contains(u.weight) else { throw RequestError(field: field + ".weight", "ensure this value is between 0 and 2") }
            guard (0...1).contains(u.guidanceStart) else { throw RequestError(field: field + ".guidance_start", "ensure this value is between 0 and 1") }
            guard (0...1).contains(u.guidanceEnd) else { throw RequestError(field: field + ".guidance_end", "ensure this value is between 0 and 1") }
            guard u.guidanceStart <= u.guidanceEnd else {
                throw RequestError(field: field + ".guidance_start", "guidance_start (\(u.guidanceStart)) is after guidance_end (\(u.guidanceEnd))")
            }
        }
    }
}

/// An RGB image given to img2img: at the request's size, or (latent upscale) at its own, whose
/// latent is then resized bilinearly; with `inpaint`, the mask that limits what is repainted.
public struct InitImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]
    /// resize mode 3: the latent, not the picture, is resized to the request's size
    public var latentUpscale = false
    public var inpaint: InpaintSetup?
    /// A1111's infotext fields of the mask handling (Mask blur, Inpaint area, Masked content …)
    public var infotext: [InfotextField] = []
    public init(width: Int, height: Int, rgb: [UInt8], latentUpscale: Bool = false, inpaint: InpaintSetup? = nil, infotext: [InfotextField] = []) {
        self.width = width
        self.height = height
        self.rgb = rgb
        self.latentUpscale = latentUpscale
        self.inpaint = inpaint
        self.infotext = infotext
    }
}

/// One finished image: RGB bytes, row-major.
public struct GeneratedImage: Sendable {
    public let width: Int
    public let height: Int
    public let rgb: [UInt8]
    public let seed: UInt64
    public let subseed: UInt64
    public let infotext: String
}

/// Progress of a running job, reported after every sampler step.
public struct GenerationProgress: Sendable {
    public let step: Int
    public let steps: Int
    public let batch: Int
    public let batches: Int
    /// the sampler's current latents of the whole batch (shared with it, not copied)
    let batchLatents: [Float]
    public let latentShape: [Int]
    /// the current latents of the batch's first image, `[4, h, w]` (copied when read)
    public var latents: [Float] { Array(batchLatents[0..<latentShape.reduce(1, *)]) }
}

/// Interrupt and skip, set from another thread while a job runs (A1111's `state.interrupted`
/// / `state.skipped`): the sampler stops after its current step and the batch is decoded
/// from the latest latents; interrupt also drops the remaining batches.
public final class JobControl: @unchecked Sendable {
    private let lock = NSLock()
    private var _interrupted = false
    private var _skipped = false
    public init() {}
    public func interrupt() { lock.withLock { _interrupted = true } }
    public func skip() { lock.withLock { _skipped = true } }
    public var interrupted: Bool { lock.withLock { _interrupted } }
    public var skipped: Bool { lock.withLock { _skipped } }
    func clearSkip() { lock.withLock { _skipped = false } }
    public func reset() { lock.withLock { _interrupted = false; _skipped = false } }
}

struct StopSampling: Error {}

/// Receives named intermediates (`--dump`), under the reference oracle's file names.
public protocol DumpSink: AnyObject {
    func write(_ name: String, shape: [Int], values: [Float])
}

/// txt2img with a loaded SD 1.x model, reproducing A1111 1.10 step by step.
public final class Pipeline: @unchecked Sendable {
    public let model: StableDiffusionModel
    public let tokenizer: CLIPTokenizer
    public let schedule: DiscreteSchedule

    public init(model: StableDiffusionModel, tokenizer: CLIPTokenizer = .shared) {
        self.model = model
        self.tokenizer = tokenizer
        schedule = DiscreteSchedule(alphasCumprod: model.alphasCumprod)
    }

    /// Conditioning for a prompt: each 77-token chunk through CLIP, emphasis applied with
    /// A1111's "Original" mean restoration, chunks concatenated → `[1, 77·k, C]`.
    public func encode(_ text: String, clipSkip: Int, embeddings: EmbeddingLookup? = nil) -> (Tensor, [PromptChunk]) {
        let chunks = PromptParser.chunks(text, tokenizer: tokenizer, embeddings: embeddings)
        let c = model.textEncoder.config.hidden
        let out = Tensor(uninitialized: [1, 77 * chunks.count, c])
        for (k, chunk) in chunks.enumerated() {
            let z = model.textEncoder.encode(chunk.tokens, clipSkip: clipSkip,
                                             replacing: chunk.fixes.map { (offset: $0.offset + 1, vectors: $0.vectors) })
            let zp = z.unsafePointer
            let n = z.count
            var before = 0.0
            for i in 0..<n { before += Double(zp[i]) }
            let weighted = (0..<n).map { zp[$0] * Float(chunk.multipliers[$0 / c]) }
            var after = 0.0
            for v in weighted { after += Double(v) }
            let ratio = Float(before / Double(n)) / Float(after / Double(n))
            let dst = out.unsafePointer + k * 77 * c
            for i in 0..<n { dst[i] = weighted[i] * ratio }
        }
        return (out, chunks)
    }

    /// A request's conditioning: for each `AND` part its weight and its prompt-editing schedule
    /// of encoded texts, and the negative prompt's schedule (schedules use `steps`, img2img too).
    public struct Conditioning {
        public var parts: [(weight: Double, schedule: [(endAt: Int, cond: Tensor)])]
        public var negative: [(endAt: Int, cond: Tensor)]
        /// the embeddings the prompts named, in order of first use (for `TI hashes`)
        public var embeddingsUsed: [TextualInversion] = []

        static func pick(_ schedule: [(endAt: Int, cond: Tensor)], at k: Int) -> Tensor {
            (schedule.first { k <= $0.endAt } ?? schedule[0]).cond
        }
    }

    /// Encodes every distinct scheduled text once.
    public func conditioning(_ r: GenerationRequest) -> Conditioning {
        var cache: [String: Tensor] = [:]
        let width = model.textEncoder.config.hidden
        let usable = r.embeddings.filter { $0.vectors.shape[1] == width }
        let lookup = usable.isEmpty ? nil : EmbeddingLookup(usable, tokenizer: tokenizer)
        var used: [String] = []
        func encoded(_ text: String) -> Tensor {
            if let c = cache[text] { return c }
            let (c, chunks) = encode(text, clipSkip: r.clipSkip, embeddings: lookup)
            for fix in chunks.flatMap(\.fixes) where !used.contains(fix.embedding) { used.append(fix.embedding) }
            cache[text] = c
            return c
        }
        let parts = PromptSchedule.splitAND(ExtraNetworkTags.strip(r.prompt)).map { part in
            (weight: part.weight, schedule: PromptSchedule.schedule(part.text, steps: r.steps).map { (endAt: $0.endAt, cond: encoded($0.text)) })
        }
        let negative = PromptSchedule.schedule(r.negativePrompt, steps: r.steps).map { (endAt: $0.endAt, cond: encoded($0.text)) }
        return Conditioning(parts: parts, negative: negative, embeddingsUsed: used.compactMap { n in usable.first { $0.name == n } })
    }

    /// How many sampler steps a request runs: `steps` for txt2img; for img2img `t_enc + 1`
    /// (k-diffusion) or `t_enc − 1` (A1111's DDIM), `t_enc = int(min(strength, 0.999) · steps)`.
    public static func samplingSteps(_ r: GenerationRequest) -> Int {
        // UniPC takes one step per timestep; DDIM / PLMS one fewer
        let timestepShortfall = r.sampler == .uniPC ? 0 : 1
        guard r.initImage != nil else {
            // always_discard_next_to_last_sigma: timestep samplers get the timesteps of one step more
            let discard = r.samplerOptions.discardPenultimateSigma ? 1 : 0
            return r.sampler.isTimestepSampler
                ? max(1, DDIMSampler.timesteps(steps: r.steps + discard).count - timestepShortfall) : r.steps
        }
        return img2imgSteps(tEnc: Int(min(r.denoisingStrength, 0.999) * Double(r.steps)), sampler: r.sampler)
    }

    /// Sampler steps of an img2img pass that starts `tEnc` steps from the end of its schedule:
    /// `t_enc + 1` (k-diffusion), `t_enc − 1` (A1111's DDIM / PLMS), `t_enc` (UniPC).
    static func img2imgSteps(tEnc: Int, sampler: Sampler) -> Int {
        sampler.isTimestepSampler ? max(0, tEnc - (sampler == .uniPC ? 0 : 1)) : tEnc + 1
    }

    /// The seeds and variation seeds of every image of the job: `seed + i` (or `seed` for all
    /// when a variation strength is set) and `subseed + i`; −1 draws a random one.
    public static func seeds(for r: GenerationRequest) -> (seeds: [UInt64], subseeds: [UInt64]) {
        let base = r.seed == -1 ? UInt64.random(in: 0..<4_294_967_294) : UInt64(r.seed)
        let sub = r.subseed == -1 ? UInt64.random(in: 0..<4_294_967_294) : UInt64(r.subseed)
        let n = r.batchSize * r.nIter
        return ((0..<n).map { base + (r.subseedStrength == 0 ? UInt64($0) : 0) }, (0..<n).map { sub + UInt64($0) })
    }

    /// Generates `batchSize × nIter` images. `progress` may throw to stop the job.
    public func txt2img(_ r: GenerationRequest, control: JobControl? = nil,
                        progress: ((GenerationProgress) throws -> Void)? = nil,
                        dump: DumpSink? = nil) throws -> [GeneratedImage] {
        try ConvPadding.$circular.withValue(r.tiling) {
            try generate(r, control: control, progress: progress, dump: dump)
        }
    }

    private func generate(_ r: GenerationRequest, control: JobControl?, progress: ((GenerationProgress) throws -> Void)?,
                          dump: DumpSink?) throws -> [GeneratedImage] {
        try r.validate()
        let (allSeeds, allSubseeds) = Self.seeds(for: r)
        try model.applyNetworks(r.networks)  // before the text encoder: networks patch it too
        let conditioning = self.conditioning(r)
        dump?.write("cond", shape: conditioning.parts[0].schedule[0].cond.shape, values: conditioning.parts[0].schedule[0].cond.scalars)
        dump?.write("uncond", shape: conditioning.negative[0].cond.shape, values: conditioning.negative[0].cond.scalars)

        var images: [GeneratedImage] = []
        let firstSteps = Self.samplingSteps(r)
        let totalSteps = Self.totalSamplingSteps(r)
        // the hires pass: its own request (size, steps for the prompt schedules, prompts, sampler)
        let hiresPass = r.hires.map { hiresRequest(r, $0) }
        let hiresConditioning = hiresPass.map { self.conditioning($0.request) }
        for batch in 0..<r.nIter {
            let seeds = Array(allSeeds[(batch * r.batchSize)..<((batch + 1) * r.batchSize)])
            let subseeds = Array(allSubseeds[(batch * r.batchSize)..<((batch + 1) * r.batchSize)])
            let batchDump = batch == 0 ? dump : nil
            func report(_ pass: GenerationRequest, offset: Int) -> (Int, [Float]) throws -> Void {
                let latentShape = [4, pass.height / 8, pass.width / 8]
                return { step, x in
                    if let control, control.interrupted || control.skipped { throw StopSampling() }
                    try progress?(GenerationProgress(step: offset + step, steps: totalSteps, batch: batch, batches: r.nIter,
                                                     batchLatents: x, latentShape: latentShape))
                }
            }
            var latents = try sample(r, seeds: seeds, subseeds: subseeds, conditioning: conditioning,
                                     dump: hiresPass == nil ? batchDump : batchDump.map { PrefixedDump(inner: $0, prefix: "firstpass_") },
                                     onStep: report(r, offset: 0))
            var outSize = (width: r.width, height: r.height)
            if let hiresPass, let hiresConditioning, control?.interrupted != true {
                let initLatent = try upscaleForHires(latents, r, hiresPass, dump: batchDump)
                latents = try sample(hiresPass.request, seeds: seeds, subseeds: subseeds, conditioning: hiresConditioning, dump: batchDump,
                                     initLatent: initLatent, img2imgSteps: hiresPass.steps, onStep: report(hiresPass.request, offset: firstSteps))
                outSize = (hiresPass.request.width, hiresPass.request.height)
            }
            // The sampler loop's cached buffers (up to the pool's bound) and kernel scratch are of
            // other sizes than the final decoder's: freeing them first keeps them from adding to the
            // decode's peak; the next generation's first step faults them in again.
            Scratch.drain()  // its buffers go back to the pool…
            BufferPool.drain()  // …which frees them with the rest
            var decoded = decode(latents, vae: r.vae, tileStatistics: r.vaeTileStatistics, dump: batchDump)
            if let inpaint = r.initImage?.inpaint, inpaint.overlay != nil {
                // the generated picture back in the init image's frame, its kept pixels restored
                if let batchDump { batchDump.write("image_decoded", shape: [outSize.height, outSize.width, 3], values: decoded[0].map(Float.init)) }
                var composed = (width: outSize.width, height: outSize.height)
                decoded = decoded.map { rgb in
                    let img = inpaint.composite(rgb, width: r.width, height: r.height)
                    composed = (img.width, img.height)
                    return img.pixels
                }
                outSize = composed
            }
            for (i, rgb) in decoded.enumerated() {
                images.append(GeneratedImage(width: outSize.width, height: outSize.height, rgb: rgb, seed: seeds[i], subseed: subseeds[i],
                                             infotext: infotext(r, seed: seeds[i], subseed: subseeds[i], embeddingsUsed: conditioning.embeddingsUsed)))
            }
            control?.clearSkip()
            if control?.interrupted == true { break }
        }
        return images
    }

    /// Runs the sampler for one batch; returns the final latents `[B, 4, h, w]`. `initLatent`
    /// (`[B, 4, h, w]`) with `img2imgSteps` (schedule length, t_enc) starts from a given latent
    /// (the hires pass); otherwise img2img starts from `r.initImage`.
    func sample(_ r: GenerationRequest, seeds: [UInt64], subseeds: [UInt64], conditioning: Conditioning, dump: DumpSink?,
                initLatent givenLatent: [Float]? = nil, img2imgSteps: (total: Int, tEnc: Int)? = nil,
                onStep: (Int, [Float]) throws -> Void) throws -> Tensor {
        let b = seeds.count
        let shape = [4, r.height / 8, r.width / 8]
        let per = shape.reduce(1, *)
        let resize = r.seedResizeFromW > 0 && r.seedResizeFromH > 0 ? (r.seedResizeFromW, r.seedResizeFromH) : nil
        var rng = ImageNoise(source: r.randnSource, shape: shape, seeds: seeds, subseeds: subseeds,
                             subseedStrength: r.subseedStrength, resizeFrom: resize.map { (width: $0.0, height: $0.1) },
                             etaNoiseSeedDelta: r.etaNoiseSeedDelta)
        var noise = rng.next()
        dump?.write("noise", shape: [b] + shape, values: noise)
        // img2img (not the hires pass): A1111's initial_noise_multiplier scales the starting noise
        if givenLatent == nil, r.initImage != nil, r.initialNoiseMultiplier != 1 {
            let m = Float(r.initialNoiseMultiplier)
            noise = noise.map { $0 * m }
        }
        /// inpainting: the latent mask (1 = repaint) and the init latent it blends with
        let inpaint = givenLatent == nil ? r.initImage?.inpaint : nil
        let plane = shape[1] * shape[2]
        var blendLatent: [Float] = []
        /// inpainting checkpoints: the mask and masked-image latent the UNet reads beside x, per image
        var imageCond: [Float]?
        if model.isInpainting {
            let source = givenLatent == nil ? r.initImage : nil
            if let source, source.width != r.width || source.height != r.height {
                throw RequestError(field: "resize_mode", "an inpainting checkpoint needs the init image at the request's size (A1111 fails here too); use resize_mode 0–2")
            }
            imageCond = inpaintingConditioning(r, shape: shape, sourceRGB: source?.rgb)
            dump?.write("image_cond", shape: [1, 5, shape[1], shape[2]], values: imageCond!)
        }

        var samplerNoise: [[Float]] = []
        let drawNoise: NoiseInto = { n in
            rng.next(into: &n)
            if dump != nil { samplerNoise.append(n) }
        }
        var steps: [[Float]] = []

        var x: [Float] = []
        // img2img: the VAE-encoded init image (posterior mean × scale factor), one copy per image
        var initLatent: [Float]?
        var tEnc = r.steps
        /// the length of the schedule the steps are taken from (img2img keeps its tail)
        var scheduleSteps = r.steps
        if let givenLatent, let img2imgSteps {
            initLatent = givenLatent
            dump?.write("init_latent", shape: [b] + shape, values: givenLatent)
            (scheduleSteps, tEnc) = img2imgSteps
        } else if let img = r.initImage {
            var encoded = encodeInitLatent(img, vae: r.vae, tileStatistics: r.vaeTileStatistics)
            if img.latentUpscale {
                // resize mode 3: the latent of the image at its own size, bilinearly to the request's
                encoded = Ops.interpolate(encoded, height: shape[1], width: shape[2], mode: .bilinear)
            }
            let one = encoded.scalars
            var latent = Array((0..<b).map { _ in one }.joined())
            if let inpaint {
                dump?.write("latent_nmask", shape: [1, 4, shape[1], shape[2]], values: Array(repeating: inpaint.nmask, count: 4).flatMap { $0 })
                dump?.write("init_latent_encoded", shape: [b] + shape, values: latent)
                applyMaskedContent(&latent, inpaint, seeds: seeds, shape: shape, source: r.randnSource)
                blendLatent = latent
            }
            initLatent = latent
            dump?.write("init_latent", shape: [b] + shape, values: latent)
            tEnc = Int(min(r.denoisingStrength, 0.999) * Double(r.steps))
        }
        let denoiser = CFGDenoiser(model: model, conditioning: conditioning, images: b, latentShape: shape, cfgScale: r.cfgScale,
                                   cfgpp: r.sampler == .ddimCFGpp, imageConditioning: imageCond,
                                   keep: inpaint.map { (blendLatent, $0.nmask) }, dump: dump)
        /// the latest step's latents (what an interrupted job decodes), copied into a buffer of its own
        var latest: [Float] = []
        let stepCallback: StepCallback = { i, x in
            denoiser.controlSession?.stepFinished()
            if dump != nil { steps.append(x) }
            if latest.count != x.count { latest = [Float](repeating: 0, count: x.count) }
            for j in x.indices { latest[j] = x[j] }
            try onStep(i + 1, x)
        }

        /// DDIM / PLMS / UniPC inpainting blends the model's input with the init latent (into a kept buffer)
        var blendBuffer: [Float] = []
        func blended(_ x: [Float]) -> [Float] {
            guard let inpaint else { return x }
            Self.blend(x, blendLatent, inpaint.nmask, per: per, plane: plane, into: &blendBuffer)
            return blendBuffer
        }

        /// DDIM / PLMS / UniPC: CFG on ε (a v-model's ε from v: A1111's CompVisTimestepsVDenoiser)
        func timestepOutput(_ t: Int) -> DenoiserOutput {
            guard model.prediction == .v else { return .epsilon }
            let a = schedule.alphasCumprod[t]
            return .epsilonFromV(sa: a.squareRoot(), s1: (1 - a).squareRoot())
        }
        if !r.controlUnits.isEmpty {
            denoiser.controlSession = ControlSession(units: r.controlUnits, samplingSteps: initLatent != nil ? tEnc + 1 : r.steps,
                                                     dumps: dump != nil)
        }
        do {
        if r.sampler.isTimestepSampler {
            // always_discard_next_to_last_sigma: A1111 makes the timesteps for one step more (and drops nothing)
            var ts = DDIMSampler.timesteps(steps: scheduleSteps + (r.samplerOptions.discardPenultimateSigma ? 1 : 0))
            if let initLatent {
                let a = schedule.alphasCumprod[ts[tEnc]]
                let sa = a.squareRoot(), s1 = (1 - a).squareRoot()
                x = (0..<noise.count).map { initLatent[$0] * sa + noise[$0] * s1 }
                ts = Array(ts.prefix(tEnc))
            } else {
                x = noise
            }
            if dump != nil { steps.append(x) }
            dump?.write("timesteps", shape: [ts.count], values: ts.map(Float.init))
            if r.sampler == .uniPC {
                // A1111 asserts steps >= order (3) here; Atelier names the field instead
                guard ts.count >= 3 else {
                    throw RequestError(field: initLatent != nil ? "denoising_strength" : "steps",
                                       "UniPC needs at least 3 sampling steps (its order); this job has \(ts.count)")
                }
                x = try UniPCSampler.sample(eps: { x, t, e in
                    let x = blended(x)
                    // a v-model's ε uses the integer part of the float timestep (A1111: t.to(torch.int))
                    denoiser.combine(denoiser.unetOutputs(x, inputScale: 1, t: t), x: x, timestepOutput(Int(t)), keepOutsideMask: false, into: &e)
                }, x, steps: ts.count, lastTimestep: initLatent != nil ? ts.last : nil, alphasCumprod: schedule.alphasCumprod,
                   onStep: stepCallback)
            } else if r.sampler == .plms {
                x = try DDIMSampler.plms(eps: { x, t, e in
                    let x = blended(x)
                    denoiser.combine(denoiser.unetOutputs(x, inputScale: 1, t: Float(t)), x: x, timestepOutput(t), keepOutsideMask: false, into: &e)
                }, x, timesteps: ts, alphasCumprod: schedule.alphasCumprod, onStep: stepCallback)
            } else {
                x = try DDIMSampler.sample(eps: { x, t, e, u in
                    let x = blended(x)
                    let eps = denoiser.unetOutputs(x, inputScale: 1, t: Float(t))
                    denoiser.uncond(eps, x: x, timestepOutput(t), into: &u)
                    denoiser.combine(eps, x: x, timestepOutput(t), keepOutsideMask: false, into: &e)
                }, x, timesteps: ts, alphasCumprod: schedule.alphasCumprod, eta: r.resolvedEta(for: r.sampler) ?? 0, cfgpp: r.sampler == .ddimCFGpp,
                   noise: drawNoise, onStep: stepCallback)
            }
        } else {
            let sched = r.scheduler == .automatic ? (r.sampler.defaultScheduler ?? .uniform) : r.scheduler
            // LCM's denoiser has its own 50-step grid of the model's timesteps
            let grid = r.sampler == .lcm ? DiscreteSchedule(lcmFrom: schedule.alphasCumprod) : schedule
            let opts = r.samplerOptions
            let discard = r.sampler.discardsPenultimateSigma || opts.discardPenultimateSigma
            var sigmas = sched.sigmas(steps: scheduleSteps + (discard ? 1 : 0), schedule: grid,
                                      sigmaMin: opts.sigmaMin, sigmaMax: opts.sigmaMax, rho: opts.rho)
            if discard { sigmas.remove(at: sigmas.count - 2) }
            /// the SDE samplers' Brownian trees span the full schedule (before img2img keeps its tail)
            // option overrides can make a schedule that is not one (e.g. ρ near 0 overflows Karras)
            guard sigmas.dropLast().allSatisfy({ $0.isFinite && $0 > 0 }), sigmas.last.map({ $0.isFinite && $0 >= 0 }) ?? false else {
                let field = opts.rho != 0 ? "override_settings.rho" : (opts.sigmaMin != 0 ? "override_settings.sigma_min" : "override_settings.sigma_max")
                throw RequestError(field: field, "\(field): the \(sched.rawValue) schedule made from these settings is not a valid σ schedule (σ must be finite and positive)")
            }
            let brownian = r.sampler.brownianNoise
                ? BrownianNoiseSampler(seeds: seeds, perImage: per, sigmaMin: sigmas.filter { $0 > 0 }.min() ?? 0, sigmaMax: sigmas.max() ?? 0,
                                       source: r.randnSource)
                : nil
            if let initLatent {
                sigmas = Array(sigmas[(scheduleSteps - tEnc - 1)...])
                x = (0..<noise.count).map { initLatent[$0] + noise[$0] * sigmas[0] }
            } else {
                x = noise.map { $0 * sigmas[0] }
            }
            dump?.write("sigmas", shape: [sigmas.count], values: sigmas)
            if dump != nil { steps.append(x) }
            let vPrediction = model.prediction == .v
            /// k-diffusion inpainting keeps the init latent outside the mask in the CFG output
            let keep = inpaint != nil
            let denoise: DenoiseInto = { x, sigma, out in
                let cIn = 1 / (sigma * sigma + 1).squareRoot()
                let eps = denoiser.unetOutputs(x, inputScale: cIn, t: self.schedule.sigmaToT(sigma))
                // k-diffusion's CompVisVDenoiser (σ_data 1) or CompVisDenoiser
                let output: DenoiserOutput = vPrediction
                    ? .denoisedFromV(cOut: -sigma / (sigma * sigma + 1).squareRoot(), cSkip: 1 / (sigma * sigma + 1))
                    : .denoisedFromEpsilon(cOut: -sigma)
                denoiser.combine(eps, x: x, output, keepOutsideMask: keep, into: &out)
            }
            /// A1111's LCMCompVisDenoiser: ε on the grid's integer timestep, then the consistency
            /// output `c_out·denoised + c_skip·x` (timestep × 10, σ_data 0.5)
            let lcmDenoise: DenoiseInto = { x, sigma, out in
                let cIn = 1 / (sigma * sigma + 1).squareRoot()
                let t = grid.sigmaToT(sigma)
                let eps = denoiser.unetOutputs(x, inputScale: cIn, t: t)
                let st = t * 10
                let cSkip = 0.25 / (st * st + 0.25), cO = st / (st * st + 0.25).squareRoot()
                denoiser.combine(eps, x: x, .consistency(sigma: sigma, cO: cO, cSkip: cSkip), keepOutsideMask: keep, into: &out)
            }
            let eta = Float(r.resolvedEta(for: r.sampler) ?? 1)
            switch r.sampler {
            case .euler: x = try KSamplers.euler(denoise, x, sigmas: sigmas, churn: opts.churn, noise: drawNoise, onStep: stepCallback)
            case .eulerA: x = try KSamplers.eulerAncestral(denoise, x, sigmas: sigmas, eta: eta, noise: drawNoise, onStep: stepCallback)
            case .dpmpp2m: x = try KSamplers.dpmpp2M(denoise, x, sigmas: sigmas, onStep: stepCallback)
            case .heun: x = try KSamplers.heun(denoise, x, sigmas: sigmas, churn: opts.churn, noise: drawNoise, onStep: stepCallback)
            case .dpm2: x = try KSamplers.dpm2(denoise, x, sigmas: sigmas, churn: opts.churn, noise: drawNoise, onStep: stepCallback)
            case .dpm2A: x = try KSamplers.dpm2Ancestral(denoise, x, sigmas: sigmas, eta: eta, sNoise: Float(opts.sNoise),
                                                           noise: drawNoise, onStep: stepCallback)
            case .lms: x = try KSamplers.lms(denoise, x, sigmas: sigmas, onStep: stepCallback)
            case .dpmpp2sA: x = try KSamplers.dpmpp2SAncestral(denoise, x, sigmas: sigmas, eta: eta, sNoise: Float(opts.sNoise),
                                                               noise: drawNoise, onStep: stepCallback)
            case .restart: x = try KSamplers.restart(denoise, x, sigmas: sigmas, noise: drawNoise, onStep: stepCallback)
            case .lcm:
                guard model.prediction == .epsilon else { throw RequestError(field: "sampler_name", "LCM needs an ε-prediction model; this checkpoint predicts v") }
                x = try KSamplers.lcm(lcmDenoise, x, sigmas: sigmas, noise: drawNoise, onStep: stepCallback)
            case .dpmFast, .dpmAdaptive:
                // A1111 hands DPM fast / adaptive the model's σ range (txt2img) or the img2img tail's ends
                let (smin, smax, n) = initLatent != nil ? (sigmas[sigmas.count - 2], sigmas[0], sigmas.count - 1)
                                                         : (schedule.sigmaMin, schedule.sigmaMax, scheduleSteps)
                if r.sampler == .dpmFast {
                    x = try KSamplers.dpmFast(denoise, x, sigmaMin: smin, sigmaMax: smax, n: n, eta: eta, sNoise: Float(opts.sNoise),
                                              noise: drawNoise, onStep: stepCallback)
                } else {
                    x = try KSamplers.dpmAdaptive(denoise, x, sigmaMin: smin, sigmaMax: smax, eta: eta, noise: drawNoise, onStep: stepCallback)
                }
            case .dpmppSDE:
                x = try KSamplers.dpmppSDE(denoise, x, sigmas: sigmas, eta: eta, sNoise: Float(opts.sNoise), noise: brownian!, onStep: stepCallback)
            case .dpmpp2mSDE, .dpmpp2mSDEHeun:
                x = try KSamplers.dpmpp2MSDE(denoise, x, sigmas: sigmas, eta: eta, sNoise: Float(opts.sNoise), heun: r.sampler == .dpmpp2mSDEHeun,
                                             noise: brownian!, onStep: stepCallback)
            case .dpmpp3mSDE:
                x = try KSamplers.dpmpp3MSDE(denoise, x, sigmas: sigmas, eta: eta, sNoise: Float(opts.sNoise), noise: brownian!, onStep: stepCallback)
            case .ddim, .ddimCFGpp, .plms, .uniPC: fatalError("unreachable")
            }
        }
        } catch is StopSampling {
            x = latest.isEmpty ? x : latest  // interrupted or skipped: decode what we have
        }
        if let inpaint {
            // A1111's img2img sample(): one more blend after the sampler
            dump?.write("latents_unblended", shape: [b] + shape, values: x)
            x = Self.blend(x, blendLatent, inpaint.nmask, per: per, plane: plane)
        }
        if let dump {
            dump.write("steps", shape: [steps.count, b] + shape, values: steps.flatMap { $0 })
            if !samplerNoise.isEmpty && !r.sampler.isTimestepSampler {
                dump.write("sampler_noise", shape: [samplerNoise.count, b] + shape, values: samplerNoise.flatMap { $0 })
            }
            dump.write("latents", shape: [b] + shape, values: x)
            if let log = denoiser.controlSession?.log {
                dump.write("control_calls", shape: [log.count, 2], values: log.flatMap { [Float($0.samplingStep), $0.active ? 1 : 0] })
            }
        }
        return Tensor(shape: [b] + shape, data: x)
    }

    /// img2img's init latent: `uint8/255·2−1` → VAE encoder posterior mean → × scale factor.
    func encodeInit(_ img: InitImage, vae: VAEFile? = nil, tileStatistics: TileStatistics) -> [Float] {
        encodeInitLatent(img, vae: vae, tileStatistics: tileStatistics).scalars
    }

    /// The init latent `[1, 4, h/8, w/8]` (sizes as the VAE encoder's strided convolutions give them).
    func encodeInitLatent(_ img: InitImage, vae: VAEFile? = nil, tileStatistics: TileStatistics) -> Tensor {
        let (h, w) = (img.height, img.width)
        let x = Tensor(uninitialized: [1, 3, h, w])
        let p = x.unsafePointer
        for c in 0..<3 {
            for i in 0..<(h * w) { p[c * h * w + i] = Float(img.rgb[i * 3 + c]) / 255 * 2 - 1 }
        }
        return BufferPool.oneOffPhase {
            let mean = (vae?.encoder ?? model.vaeEncoder).mean(x, statistics: tileStatistics)
            return Ops.scale(mean, model.vaeDecoder.config.scaleFactor)
        }
    }

    /// VAE decode of `latents / scale_factor`, `clamp((x+1)/2, 0, 1)`, ×255 truncated to uint8.
    func decode(_ latents: Tensor, vae: VAEFile? = nil, tileStatistics: TileStatistics, dump: DumpSink?) -> [[UInt8]] {
        let inv = Float(1.0 / Double(model.vaeDecoder.config.scaleFactor))
        // tiles pad from their neighbours, not around the picture: circular padding decodes whole
        let img = BufferPool.oneOffPhase {
            (vae?.decoder ?? model.vaeDecoder)(Ops.scale(latents, inv), tile: ConvPadding.circular ? 0 : nil, statistics: tileStatistics)
        }
        let (b, h, w) = (img.shape[0], img.shape[2], img.shape[3])
        let p = img.unsafePointer
        var out: [[UInt8]] = []
        for n in 0..<b {
            var floats = [Float](repeating: 0, count: h * w * 3)
            var rgb = [UInt8](repeating: 0, count: h * w * 3)
            for c in 0..<3 {
                let plane = p + (n * 3 + c) * h * w
                for i in 0..<(h * w) {
                    let raw = (plane[i] + 1) / 2
                    let v = raw.isNaN ? 0 : min(max(raw, 0), 1)  // a NaN latent decodes to black (A1111 too), never a trap
                    floats[i * 3 + c] = v
                    rgb[i * 3 + c] = UInt8(255 * v)
                }
            }
            if n == 0 { dump?.write("image_float", shape: [h, w, 3], values: floats) }
            out.append(rgb)
        }
        return out
    }

    /// The infotext of one image (A1111 1.10 field order).
    public func infotext(_ r: GenerationRequest, seed: UInt64, subseed: UInt64 = 0, embeddingsUsed: [TextualInversion] = []) -> String {
        let fields: [(String, String?)] = [
            ("Steps", String(r.steps)),
            ("Sampler", r.sampler.rawValue),
            // A1111 writes p.scheduler, which get_sigmas replaces by the schedule "Automatic" resolved to
            ("Schedule type", r.scheduler == .automatic && !r.sampler.isTimestepSampler ? (r.sampler.defaultScheduler ?? .automatic).rawValue : r.scheduler.rawValue),
            ("CFG scale", Infotext.pythonFloat(r.cfgScale)),
            ("Seed", String(seed)),
            ("Size", "\(r.width)x\(r.height)"),
            ("Model hash", model.shortHash),
            ("Model", model.name),
            ("VAE hash", r.vae?.shortHash),
            ("VAE", r.vae?.name),
            ("Variation seed", r.subseedStrength != 0 ? String(subseed) : nil),
            ("Variation seed strength", r.subseedStrength != 0 ? Infotext.pythonFloat(r.subseedStrength) : nil),
            ("Seed resize from", r.seedResizeFromW > 0 && r.seedResizeFromH > 0 ? "\(r.seedResizeFromW)x\(r.seedResizeFromH)" : nil),
            ("Denoising strength", r.initImage != nil || r.hires != nil ? Infotext.pythonFloat(r.denoisingStrength) : nil),
            ("Conditional mask weight", model.isInpainting ? Infotext.pythonFloat(r.inpaintingMaskWeight) : nil),
            ("Clip skip", r.clipSkip > 1 ? String(r.clipSkip) : nil),
            // A1111's is_sampler_using_eta_noise_seed_delta: not with eta 0
            // A1111 asks p.eta, else p.sampler's eta — which the hires pass has reset to None (then 1)
            ("ENSD", r.etaNoiseSeedDelta != 0 && r.sampler.usesENSD
                && (r.hires != nil ? r.eta ?? 1 : r.resolvedEta(for: r.sampler) ?? 1) != 0 ? String(r.etaNoiseSeedDelta) : nil),
            ("RNG", r.randnSource == .gpu ? nil : r.randnSource.rawValue),
            ("Tiling", r.tiling ? "True" : nil),
        ]
        // set while sampling (get_sigmas, then Sampler.initialize): after everything set before it
        func samplingEntries(_ q: GenerationRequest) -> [(String, String?)] {
            q.samplerOptions.scheduleInfotext(q, model: schedule) + [q.etaInfotext(for: q.sampler)] + q.samplerOptions.samplerInfotext(q.sampler)
        }
        var sampling = samplingEntries(r)
        // the hires pass samples again (get_sigmas with the hires schedule, then its sampler's
        // initialize): each entry it writes replaces a written value under the same key in place, or
        // comes last (a Python dict); with the first pass's sampler and schedule nothing changes
        if let hr = r.hires {
            for entry in samplingEntries(hiresRequest(r, hr).request) where entry.1 != nil {
                if let i = sampling.firstIndex(where: { $0.0 == entry.0 && $0.1 != nil }) {
                    sampling[i] = entry
                } else {
                    sampling.append(entry)
                }
            }
        }
        let hr = r.hires
        let hires: [(String, String?)] = [
            ("Hires upscale", hr.flatMap { $0.resizeX == 0 && $0.resizeY == 0 ? Infotext.pythonFloat($0.scale) : nil }),
            ("Hires resize", hr.flatMap { $0.resizeX != 0 || $0.resizeY != 0 ? "\($0.resizeX)x\($0.resizeY)" : nil }),
            ("Hires steps", hr.flatMap { $0.secondPassSteps > 0 ? String($0.secondPassSteps) : nil }),
            ("Hires upscaler", hr?.upscaler.name),
            ("Hires sampler", hr?.sampler.flatMap { $0 != r.sampler ? $0.rawValue : nil }),
            ("Hires schedule type", hr?.scheduler.flatMap { $0 != r.scheduler ? $0.rawValue : nil }),
            ("Hires prompt", hr?.prompt.flatMap { $0.isEmpty || $0 == r.prompt ? nil : $0 }),
            ("Hires negative prompt", hr?.negativePrompt.flatMap { $0.isEmpty || $0 == r.negativePrompt ? nil : $0 }),
        ]
        let hashes: [(String, String?)] = [
            ("Lora hashes", r.networks.isEmpty ? nil : r.networks.map { u in
                u.file.name.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: ",", with: "") + ": " + u.file.shortHash
            }.joined(separator: ", ")),
            ("TI hashes", embeddingsUsed.isEmpty ? nil : embeddingsUsed.map { e in
                e.name.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: ",", with: "") + ": " + e.shortHash
            }.joined(separator: ", ")),
        ]
        // A1111's extra_generation_params in the order it sets them: the mask's (img2img init),
        // the noise multiplier (sample), then the networks' hashes (activation)
        let inpaint: [(String, String?)] = (r.initImage?.infotext ?? []).map { ($0.key, $0.value) } + [
            ("Noise multiplier", r.initImage != nil && r.initialNoiseMultiplier != 1 ? Infotext.pythonFloat(r.initialNoiseMultiplier) : nil),
        ]
        let extra: [(String, String?)] = r.extraInfotext.map { ($0.key, $0.value) }
        return Infotext.make(prompt: r.prompt, negativePrompt: r.negativePrompt, fields: fields + hires + inpaint + hashes + extra + sampling + [("Version", "v1.10.1")])
    }
}
