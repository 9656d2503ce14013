import ArgumentParser
import AtelierDiffusion
import AtelierImaging
import AtelierModels
import AtelierTensor
import Foundation

@main
struct Atelier: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "atelier",
        abstract: "A Stable Diffusion WebUI service with its own diffusion engine.",
        subcommands: [Serve.self, Generate.self, Bench.self, Tokenize.self, ControllerCommand.self, Deploy.self, Services.self, OSS.self])
}

/// `atelier generate`: one txt2img job from the command line, A1111's names and defaults.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate images from a prompt with an SD 1.x checkpoint (txt2img).")

    @Option(help: "Checkpoint file (.safetensors, SD 1.x).") var model: String
    @Option(help: "Prompt (A1111 syntax: (emphasis:1.2), [less], BREAK).") var prompt: String = ""
    @Option(help: "Negative prompt.") var negativePrompt: String = ""
    @Option(help: "Seed; -1 for random.") var seed: Int64 = -1
    @Option(help: "Sampling steps.") var steps: Int = 20
    @Option(help: "Classifier-free guidance scale.") var cfgScale: Double = 7
    @Option(help: "Sampler: \(Sampler.allCases.map(\.rawValue).joined(separator: ", ")).") var sampler: String = "Euler a"
    @Option(help: "Schedule type: \(Scheduler.allCases.map(\.rawValue).joined(separator: ", ")).") var scheduler: String = "Automatic"
    @Option(name: .customShort("W"), help: "Width in pixels (multiple of 8).") var width: Int = 512
    @Option(name: .customShort("H"), help: "Height in pixels (multiple of 8).") var height: Int = 512
    @Option(help: "Stop CLIP this many layers from the end (1 = last layer).") var clipSkip: Int = 1
    @Option(help: "Images per batch.") var batchSize: Int = 1
    @Option(help: "Number of batches.") var nIter: Int = 1
    @Option(help: "Noise source: CPU, GPU or NV (GPU gives NVIDIA's numbers, as NV).") var randnSource: String = "GPU"
    @Option(help: "A1111's eta_noise_seed_delta (ENSD).") var etaNoiseSeedDelta: Int64 = 0
    @Option(help: "Compute threads (default: all cores).") var threads: Int?
    @Option(help: "How linear and conv weights stay in memory: auto (float16 where the file stores float16, widened per layer; half the memory, same numbers) or fp32.") var residentWeights: ResidentWeights = .auto
    @Option(help: "GroupNorm statistics of a VAE decode or encode run in tiles (above 768² decoded, 1024² encoded): exact (the whole picture's, A1111's picture) or tile (each tile's own: faster, tones shift a little per tile).") var vaeTileStatistics: TileStatistics = TileStatistics.byDefault
    @Option(help: "Output PNG; with several images, -N is added before .png.") var output: String = "out.png"
    @Option(help: "Write intermediates as .npy files into this directory (reference oracle names).") var dump: String?
    @Option(help: "img2img: init image (PNG, JPEG or WebP; resized to -W x -H with Lanczos as A1111).") var initImage: String?
    @Option(help: "img2img: how much of the init image to repaint (0 < x ≤ 1).") var denoisingStrength: Double = 0.75
    @Option(help: "img2img: how the init image is fitted: 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale.") var resizeMode: Int = 0
    @Option(help: "img2img: scale of the starting noise (A1111's initial_noise_multiplier).") var initialNoiseMultiplier: Double = 1
    @Option(help: "Inpainting: mask image (white = repaint; RGBA with transparency: its alpha).") var mask: String?
    @Option(help: "Inpainting: mask blur (Gaussian sigma in pixels, x and y).") var maskBlur: Int = 4
    @Option(help: "Inpainting: mask blur along x (overrides --mask-blur).") var maskBlurX: Int?
    @Option(help: "Inpainting: mask blur along y (overrides --mask-blur).") var maskBlurY: Int?
    @Option(help: "Inpainting: masked content: 0 fill, 1 original, 2 latent noise, 3 latent nothing.") var inpaintingFill: Int = 1
    @Flag(help: "Inpainting: only the masked area, at full resolution (A1111's \"Only masked\").") var inpaintFullRes = false
    @Option(help: "Inpainting: pixels around the mask for --inpaint-full-res.") var inpaintFullResPadding: Int = 32
    @Flag(help: "Inpainting: repaint what the mask leaves out.") var inpaintingMaskInvert = false
    @Flag(help: "Inpainting: keep grey mask levels (A1111's mask_round off).") var noMaskRound = false
    @Option(help: "A VAE file (.safetensors, .pt, .ckpt) used instead of the checkpoint's own.") var vae: String?
    @Option(help: "Where <lora:NAME:…> tags find NAME.safetensors (default: the model's dir/../Lora).") var loraDir: String?
    @Flag(help: "Hires fix: a second pass at a larger size (denoised by --denoising-strength).") var enableHr = false
    @Option(help: "Hires fix: upscale factor (when no --hr-resize-x/-y).") var hrScale: Double = 2
    @Option(help: "Hires fix: target width (0 = from the scale / aspect).") var hrResizeX: Int = 0
    @Option(help: "Hires fix: target height (0 = from the scale / aspect).") var hrResizeY: Int = 0
    @Option(help: "Hires fix: Latent, Latent (antialiased), Latent (bicubic), Latent (bicubic antialiased), Latent (nearest), Latent (nearest-exact), Lanczos or Nearest.") var hrUpscaler: String = "Latent"
    @Option(help: "Hires fix: steps of the second pass (0 = --steps).") var hrSecondPassSteps: Int = 0
    @Flag(help: "Tiling: circular padding in every UNet and VAE convolution, so the picture tiles seamlessly (A1111's Tiling).") var tiling = false

    func run() throws {
        ResidentWeights.current = residentWeights
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be positive") }
            Compute.setThreads(threads)
        }
        var r = GenerationRequest()
        r.prompt = prompt
        r.tiling = tiling
        let networkDir = loraDir.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: model).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Lora")
        let (uses, missing) = try NetworkResolver(directories: [networkDir]).uses(in: prompt)
        if !missing.isEmpty { FileHandle.standardError.write(Data("networks not found in \(networkDir.path): \(missing.joined(separator: ", "))\n".utf8)) }
        r.networks = uses
        r.negativePrompt = negativePrompt
        r.seed = seed
        r.steps = steps
        r.cfgScale = cfgScale
        guard let (s, schedFromName) = Sampler.resolve(sampler) else {
            throw ValidationError("--sampler: unknown sampler '\(sampler)'; use one of \(Sampler.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        r.sampler = s
        guard let sched = Scheduler(label: scheduler) else {
            throw ValidationError("--scheduler: unknown schedule type '\(scheduler)'; use one of \(Scheduler.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        r.scheduler = sched == .automatic ? (schedFromName ?? .automatic) : sched
        r.width = width
        r.height = height
        r.clipSkip = clipSkip
        r.batchSize = batchSize
        r.nIter = nIter
        guard let source = NoiseSource(label: randnSource) else {
            throw ValidationError("--randn-source: use CPU, GPU or NV")
        }
        r.randnSource = source
        r.etaNoiseSeedDelta = etaNoiseSeedDelta
        r.vaeTileStatistics = vaeTileStatistics
        if let initImage {
            guard let mode = ImageResizeMode(rawValue: resizeMode) else { throw ValidationError("--resize-mode: 0, 1, 2 or 3") }
            guard let fill = InpaintOptions.MaskedContent(rawValue: inpaintingFill) else { throw ValidationError("--inpainting-fill: 0, 1, 2 or 3") }
            for (name, v) in [("--mask-blur", maskBlur), ("--mask-blur-x", maskBlurX ?? 0), ("--mask-blur-y", maskBlurY ?? 0)] where !(0...256).contains(v) {
                throw ValidationError("\(name): 0 to 256")
            }
            guard inpaintFullResPadding >= 0 else { throw ValidationError("--inpaint-full-res-padding: 0 or more") }
            var o = InpaintOptions()
            o.blurX = maskBlurX ?? maskBlur
            o.blurY = maskBlurY ?? maskBlur
            o.fill = fill
            o.onlyMasked = inpaintFullRes
            o.padding = inpaintFullResPadding
            o.invert = inpaintingMaskInvert
            o.round = !noMaskRound
            let image = try ImageDecoder.decode(Data(contentsOf: URL(fileURLWithPath: initImage)))
            let maskImage = try mask.map { try ImageDecoder.decode(Data(contentsOf: URL(fileURLWithPath: $0))) }
            if maskImage != nil, mode == .latentUpscale, image.width != width || image.height != height {
                throw ValidationError("--resize-mode 3 cannot inpaint an init image of another size; use 0, 1 or 2")
            }
            r.initImage = InitImage.prepared(image, mask: maskImage, width: width, height: height, resizeMode: mode, inpaint: o)
            r.denoisingStrength = denoisingStrength
            r.initialNoiseMultiplier = initialNoiseMultiplier
        } else if mask != nil {
            throw ValidationError("--mask needs --init-image (inpainting is img2img)")
        }
        if enableHr {
            guard initImage == nil else { throw ValidationError("--enable-hr is for txt2img (no --init-image)") }
            var hr = HiresFix()
            hr.scale = hrScale
            hr.resizeX = hrResizeX
            hr.resizeY = hrResizeY
            hr.secondPassSteps = hrSecondPassSteps
            guard let up = HiresUpscaler(name: hrUpscaler) else {
                throw ValidationError("--hr-upscaler: one of \(HiresUpscaler.names.map(\.0).joined(separator: ", "))")
            }
            hr.upscaler = up
            r.hires = hr
            r.denoisingStrength = denoisingStrength
        }
        do { try r.validate() } catch let e as RequestError {
            throw ValidationError("--\(e.field.replacingOccurrences(of: "_", with: "-")): \(e.message)")
        }

        let t0 = Date()
        let loaded: StableDiffusionModel
        do { loaded = try StableDiffusionModel(path: model) } catch let e as ModelFileError {
            throw ValidationError("cannot load the model: \(e)")
        }
        FileHandle.standardError.write("loaded \(loaded.name) [\(loaded.shortHash)] in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s\n")
        if let vae {
            do { r.vae = try VAEFile(path: vae, config: loaded.vaeDecoder.config) } catch let e as ModelFileError {
                throw ValidationError("--vae: \(e)")
            }
        }
        let pipeline = Pipeline(model: loaded)
        var sink: DirectoryDump?
        if let dump { sink = try DirectoryDump(path: dump) }
        let bar = ProgressBar(total: Pipeline.totalSamplingSteps(r) * r.nIter)
        let images = try pipeline.txt2img(r, progress: { p in bar.update(p.batch * p.steps + p.step) }, dump: sink)
        bar.finish()
        for (i, img) in images.enumerated() {
            let path = images.count == 1 ? output : numbered(output, i)
            let png = try PNG.encode(Image8(width: img.width, height: img.height, channels: 3, pixels: img.rgb),
                                     text: [("parameters", img.infotext)])
            try png.write(to: URL(fileURLWithPath: path))
            if let dump, i == 0 { try png.write(to: URL(fileURLWithPath: dump).appendingPathComponent("image.png")) }
            print("\(path)  seed \(img.seed)")
        }
        FileHandle.standardError.write("done in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s\n")
    }

    func numbered(_ path: String, _ i: Int) -> String {
        let ext = (path as NSString).pathExtension
        let stem = (path as NSString).deletingPathExtension
        return "\(stem)-\(i)" + (ext.isEmpty ? "" : ".\(ext)")
    }
}

/// Writes dumped intermediates as `.npy` files.
final class DirectoryDump: DumpSink {
    let dir: URL
    init(path: String) throws {
        dir = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    func write(_ name: String, shape: [Int], values: [Float]) {
        do { try NPY.write(values, shape: shape, to: dir.appendingPathComponent(name + ".npy")) } catch {
            FileHandle.standardError.write("cannot write \(name).npy: \(error)\n")
        }
    }
}

/// A one-line progress bar on stderr.
final class ProgressBar {
    let total: Int
    let start = Date()
    init(total: Int) { self.total = total }
    func update(_ done: Int) {
        let width = 30
        // DPM adaptive may take more steps than asked for
        let filled = total == 0 ? width : min(max(done * width / total, 0), width)
        let elapsed = Date().timeIntervalSince(start)
        let eta = done == 0 ? 0 : elapsed / Double(done) * Double(max(total - done, 0))
        let line = "\r[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            + "] \(done)/\(total) steps, \(String(format: "%.1f", elapsed)) s, ETA \(String(format: "%.1f", eta)) s"
        FileHandle.standardError.write(line)
    }
    func finish() { FileHandle.standardError.write("\n") }
}

extension FileHandle {
    func write(_ s: String) { write(Data(s.utf8)) }
}

/// `atelier tokenize`: shows how a prompt is split into 77-token chunks with emphasis.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a prompt's CLIP token chunks and emphasis multipliers.")
    @Argument(help: "Prompt text.") var prompt: String

    func run() throws {
        for (i, chunk) in PromptParser.chunks(prompt, tokenizer: .shared).enumerated() {
            print("chunk \(i): \(chunk.tokens.map(String.init).joined(separator: " "))")
            print("weights \(i): \(chunk.multipliers.map { String(format: "%g", $0) }.joined(separator: " "))")
        }
    }
}
