import AtelierDiffusion
import AtelierImaging
import AtelierModels
import Foundation

/// A txt2img job as the service runs it: the engine request plus what the API adds.
public struct Txt2ImgJob: Sendable {
    public var request: GenerationRequest
    /// checkpoint to use for this job (`override_settings.sd_model_checkpoint`, EAS
    /// `alwayson_scripts.sd_model_checkpoint`); nil = the current option
    public var checkpoint: String?
    public var saveImages = false
    public var taskID: String
    /// where saved images go, relative to the data dir (EAS `save_dir`); nil = options
    public var saveDir: String?
    /// where ControlNet detected maps are saved (EAS `<save_dir>/controlnet_mask`); nil = not saved
    public var controlMapDir: String?
    /// enabled ControlNet units, bound to the model when the job runs
    public var controlUnits: [ControlUnitRequest] = []
    /// the SD VAE setting for this job (`override_settings.sd_vae`); nil = the current option
    public var vae: String?
    /// img2img's "Outpainting mk2" script: the job is its steps, each an img2img call
    public var outpaint: OutpaintJob?

    public init(request: GenerationRequest, checkpoint: String? = nil, saveImages: Bool = false,
                taskID: String = "task(\(Instance.randomTaskID()))", saveDir: String? = nil) {
        self.request = request
        self.checkpoint = checkpoint
        self.saveImages = saveImages
        self.taskID = taskID
        self.saveDir = saveDir
    }
}

/// What a finished job returns.
/// What img2img's "Outpainting mk2" needs besides the request: the script's settings, the init
/// picture as decoded, and the img2img fields the script leaves in effect.
public struct OutpaintJob: Sendable {
    public var script: OutpaintingMk2
    public var initImage: Image8
    public var invertMask: Bool
    public var roundMask: Bool
    public var resizeMode: ImageResizeMode

    public init(script: OutpaintingMk2, initImage: Image8, invertMask: Bool, roundMask: Bool, resizeMode: ImageResizeMode) {
        self.script = script
        self.initImage = initImage
        self.invertMask = invertMask
        self.roundMask = roundMask
        self.resizeMode = resizeMode
    }
}

public struct JobResult: Sendable {
    public let pngs: [Data]
    public let infotexts: [String]
    public let seeds: [UInt64]
    public let subseeds: [UInt64]
    public let savedPaths: [String]
    /// each ControlNet unit's detected map (PNG) and, when saved, the paths of the saved copies
    public var controlMaps: [Data] = []
    public var controlMapPaths: [String] = []
    public let checkpoint: CheckpointInfo
    /// the VAE file used instead of the checkpoint's own, if any
    public var vae: (name: String, shortHash: String)?
    /// an inpainting checkpoint ran (A1111's `is_using_inpainting_conditioning`)
    public var inpaintingConditioning = false
    public let jobTimestamp: String
    public let seconds: Double
    /// A1111's grid of a job with more than one picture when samples are saved (`return_grid`:
    /// sent first; `grid_save`: its path is first in `savedPaths`), and its infotext
    public var grid: Data?
    public var gridInfotext: String?
}

/// The live state `/sdapi/v1/progress` reports (A1111's `shared.state`).
public struct ProgressSnapshot: Sendable {
    public var job = ""
    public var jobCount = 0
    public var jobNo = 0
    public var samplingStep = 0
    public var samplingSteps = 0
    public var jobTimestamp = "0"
    public var started: Date?
    public var taskID: String?
    public var interrupted = false
    public var skipped = false
    public var preview: Data?
    public var queued: [String] = []
    public var finished: [String] = []

    /// `0.01 + job_no/job_count + (step/steps)/job_count`, capped at 1; 0 when idle.
    public var progress: Double {
        guard jobCount > 0 else { return 0 }
        var p = 0.01 + Double(jobNo) / Double(jobCount)
        if samplingSteps > 0 { p += Double(samplingStep) / Double(samplingSteps) / Double(jobCount) }
        return min(p, 1)
    }

    public var etaRelative: Double {
        guard let started, progress > 0 else { return 0 }
        let elapsed = Date().timeIntervalSince(started)
        return elapsed / progress - elapsed
    }
}

/// One instance: its data dir, options, checkpoints, the loaded model and a FIFO executor
/// that runs one job at a time on its own thread, so HTTP stays responsive meanwhile.
public final class Instance: @unchecked Sendable {
    public let data: DataDirectory
    public let options: OptionsStore
    public let library: ModelLibrary
    public let storage: any FileStorage
    /// LoRA / LyCORIS files of the data dir's Lora folder, for `<lora:…>` tags
    public let networks: NetworkResolver
    /// textual-inversion embeddings of the data dir's embeddings folder
    public let embeddings: EmbeddingLibrary
    /// ControlNet models of `models/ControlNet` and `--controlnet-dir`
    public let controlNets: ControlNetLibrary
    /// VAE files of `models/VAE` (`--vae-dir`) and beside the checkpoints; `--vae-path` forces one
    public let vaes: VAELibrary
    private let jobs = DispatchQueue(label: "atelier.jobs", qos: .userInitiated)
    private let control = JobControl()
    private let lock = NSLock()
    private var state = ProgressSnapshot()
    private var loaded: (info: CheckpointInfo, pipeline: Pipeline)?

    /// `storage`: where outputs go (default: the data dir itself).
    public init(data: DataDirectory, hashing: Bool = true, storage: (any FileStorage)? = nil) throws {
        try data.create()
        self.data = data
        options = OptionsStore(file: data.configFile)
        library = ModelLibrary(directory: data.checkpointDir, hashing: hashing)
        self.storage = storage ?? LocalStorage(root: data.root)
        networks = NetworkResolver(directories: [data.loraDir])
        embeddings = EmbeddingLibrary(directories: [data.embeddingsDir])
        controlNets = ControlNetLibrary(directories: [data.controlNetDir] + data.extraControlNetDirs)
        vaes = VAELibrary(directories: [data.vaeDir], checkpointDirectory: data.checkpointDir, forced: data.vaePath)
    }

    public static func randomTaskID() -> String {
        let chars = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<15).map { _ in chars.randomElement()! })
    }

    public var progress: ProgressSnapshot { lock.withLock { state } }

    /// How to add a checkpoint, for the API and the WebUI when there is none.
    public var noCheckpointHelp: String {
        if let hint = data.checkpointUploadHint {
            return "No checkpoint found. Upload a Stable Diffusion 1.x .safetensors file to \(hint); it is picked up within seconds, no restart is needed."
        }
        return "No checkpoint found. Put a Stable Diffusion 1.x .safetensors file into \(data.checkpointDir.path) "
            + "and call POST /sdapi/v1/refresh-checkpoints (or press refresh in the WebUI); no restart is needed."
    }

    /// The checkpoint a job would use: the named one, else the current option, else the first file.
    public func checkpoint(named name: String?, field: String = "sd_model_checkpoint") throws -> CheckpointInfo {
        if let name, !name.isEmpty {
            guard let c = library.resolve(name) else { throw ServiceError(404, field: field, "\(field): checkpoint '\(name)' not found") }
            return c
        }
        if let current = options["sd_model_checkpoint"]?.string, !current.isEmpty, let c = library.resolve(current) { return c }
        guard let first = library.list().first else { throw ServiceError(404, field: field, noCheckpointHelp) }
        return first
    }

    /// Loads (or reuses) the pipeline for a checkpoint; one model is kept in memory.
    func pipeline(for info: CheckpointInfo) throws -> Pipeline {
        if let l = lock.withLock({ loaded }), l.info.filename == info.filename, l.info.sha256 == info.sha256 { return l.pipeline }
        lock.withLock { loaded = nil }  // free the old model before loading the next
        let model: StableDiffusionModel
        do { model = try StableDiffusionModel(path: info.filename) } catch let e as ModelFileError {
            throw ServiceError(422, field: "sd_model_checkpoint", "cannot load checkpoint \(info.name): \(e.problem)")
        }
        let p = Pipeline(model: model)
        lock.withLock { loaded = (info, p) }
        try? options.set(["sd_model_checkpoint": .string(info.title), "sd_checkpoint_hash": .string(info.sha256 ?? "")])
        return p
    }

    public func unloadCheckpoint() { lock.withLock { loaded = nil } }

    /// The text encoder's width of the loaded model (nil before one is loaded).
    public var loadedTextWidth: Int? { lock.withLock { loaded?.pipeline.model.textEncoder.config.hidden } }

    /// Runs work on the job queue (FIFO, one at a time) without blocking the caller's thread.
    public func enqueue<T: Sendable>(taskID: String? = nil, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        if let taskID { lock.withLock { state.queued.append(taskID) } }
        return try await withCheckedThrowingContinuation { cont in
            jobs.async { cont.resume(with: Result { try work() }) }
        }
    }

    private var shuttingDown = false

    /// SIGTERM: the running job stops at its next step (its images so far are returned),
    /// queued jobs fail with 503, and no new job starts.
    public func shutDown() {
        lock.withLock { shuttingDown = true }
        interrupt()
    }

    public func interrupt() {
        control.interrupt()
        lock.withLock { state.interrupted = true }
    }

    public func skip() {
        control.skip()
        lock.withLock { state.skipped = true }
    }

    /// Generates a txt2img job on the executor.
    public func txt2img(_ submitted: Txt2ImgJob) async throws -> JobResult {
        var job = submitted
        try job.request.validate()
        let (uses, missing) = try networks.uses(in: job.request.prompt)
        if !missing.isEmpty {
            // as A1111: the generation goes on without them ("Networks not found")
            NSLog("Networks not found: %@ (in %@)", missing.joined(separator: ", "), data.loraDir.path)
        }
        job.request.networks = uses
        job.request.embeddings = embeddings.embeddings(width: nil).loaded
        let info = try checkpoint(named: job.checkpoint)
        let resolved = job
        return try await enqueue(taskID: resolved.taskID) { [self] in try run(resolved, info: info) }
    }

    private func run(_ job: Txt2ImgJob, info: CheckpointInfo) throws -> JobResult {
        if lock.withLock({ shuttingDown }) { throw ServiceError(503, "the server is shutting down; the job was not started") }
        let start = Date()
        let stamp = Self.timestamp(start)
        if !lock.withLock({ shuttingDown }) { control.reset() }
        lock.withLock {
            state.queued.removeAll { $0 == job.taskID }
            state.job = job.request.initImage == nil ? "scripts_txt2img" : "scripts_img2img"
            state.jobCount = job.request.nIter
            state.jobNo = 0
            state.samplingStep = 0
            state.samplingSteps = Pipeline.totalSamplingSteps(job.request)
            state.jobTimestamp = stamp
            state.started = start
            state.taskID = job.taskID
            state.interrupted = false
            state.skipped = false
            state.preview = nil
        }
        defer {
            lock.withLock {
                state.job = ""
                state.jobCount = 0
                state.jobNo = 0
                state.samplingStep = 0
                state.samplingSteps = 0
                state.started = nil
                state.taskID = nil
                state.preview = nil
                state.finished = Array((state.finished + [job.taskID]).suffix(16))
            }
        }
        let pipe = try pipeline(for: info)
        var request = job.request
        let vaeField = job.vae == nil ? "sd_vae" : "override_settings.sd_vae"
        if let vaeInfo = try vaes.resolve(setting: job.vae ?? options["sd_vae"]?.string ?? "Automatic",
                                          checkpointPath: info.filename, field: vaeField) {
            request.vae = try vaes.load(vaeInfo, config: pipe.model.vaeDecoder.config, field: vaeField)
        }
        var controlMaps: [Data] = []
        for unit in job.controlUnits {
            let (bound, map) = try bind(unit, request: request, model: pipe.model)
            request.controlUnits.append(bound)
            request.extraInfotext.append(InfotextField("ControlNet \(request.controlUnits.count - 1)", unit.infotext))
            controlMaps.append(try PNG.encode(map))
        }
        let every = options.previewEvery
        if let outpaint = job.outpaint {
            return try runOutpaint(job, outpaint, request: request, pipe: pipe, info: info, stamp: stamp, start: start)
        }
        let images = try pipe.txt2img(request, control: control, progress: { [self] p in
            let preview = p.step % every == 0 ? Preview.cheapPNG(latents: p.latents, shape: p.latentShape) : nil
            lock.withLock {
                state.jobNo = p.batch
                state.samplingStep = p.step
                if let preview { state.preview = preview }
            }
        })
        var pngs: [Data] = [], saved: [String] = []
        for img in images {
            let png = try PNG.encode(Image8(width: img.width, height: img.height, channels: 3, pixels: img.rgb),
                                     text: [("parameters", img.infotext)])
            pngs.append(png)
            if job.saveImages {
                let optionKey = job.request.initImage == nil ? "outdir_txt2img_samples" : "outdir_img2img_samples"
                let fallback = job.request.initImage == nil ? "outputs/txt2img-images" : "outputs/img2img-images"
                saved.append(try save(png, seed: img.seed, dir: job.saveDir ?? options[optionKey]?.string ?? fallback))
            }
        }
        // A1111's grid: made when samples are saved (the API's do_not_save_grid = not save_images)
        // and there is more than one picture
        var gridPNG: Data?
        if job.saveImages && images.count > 1 && (option("return_grid") || option("grid_save")) {
            let pictures = images.map { Image8(width: $0.width, height: $0.height, channels: 3, pixels: $0.rgb) }
            let png = try grid(pictures, batchSize: job.request.batchSize, infotext: images[0].infotext)
            if option("grid_save") { saved.insert(try saveGrid(png, dir: gridDir(job)), at: 0) }
            if option("return_grid") { gridPNG = png }
        }
        // the detected maps under <save_dir>/controlnet_mask/YYYY-MM-DD/NNNNN.png, one per unit
        // and batch (as the cloud service's example response lists them)
        var mapPaths: [String] = []
        if let dir = job.controlMapDir, !controlMaps.isEmpty {
            let day = "\(dir)/\(Self.format(Date(), "yyyy-MM-dd"))"
            for _ in 0..<job.request.nIter {
                for map in controlMaps { mapPaths.append(try saveNumbered(map, dir: day)) }
            }
        }
        var result = JobResult(pngs: pngs, infotexts: images.map(\.infotext), seeds: images.map(\.seed), subseeds: images.map(\.subseed),
                               savedPaths: saved, checkpoint: info, jobTimestamp: stamp, seconds: Date().timeIntervalSince(start))
        result.controlMaps = controlMaps
        result.vae = request.vae.map { ($0.name, $0.shortHash) }
        result.inpaintingConditioning = pipe.model.isInpainting
        result.controlMapPaths = mapPaths
        result.grid = gridPNG
        result.gridInfotext = gridPNG == nil ? nil : images[0].infotext
        return result
    }

    /// Outpainting mk2 (tools/OUTPAINT_MK2.md): the script's steps, each an img2img call per batch
    /// position (seed + n; A1111 batches them, which gives the same pictures) on the noised crop
    /// with the script's mask (blurred by img2img), its separate latent mask and masked content
    /// "original". The answer is A1111's: the final pictures, the grid first when there are
    /// several, every picture with the first call's infotext, saved when `samples_save` is on.
    private func runOutpaint(_ job: Txt2ImgJob, _ op: OutpaintJob, request: GenerationRequest, pipe: Pipeline, info: CheckpointInfo,
                             stamp: String, start: Date) throws -> JobResult {
        var firstInfotext: String?
        var calls = 0
        // one seed for every step (A1111 with a fixed seed; with -1 it draws one per step)
        let baseSeed = request.seed >= 0 ? request.seed : Int64.random(in: 0..<4_294_967_294)
        let baseSubseed = request.subseed >= 0 ? request.subseed : Int64.random(in: 0..<4_294_967_294)
        let steps = [op.script.directions.contains(.left), op.script.directions.contains(.right),
                     op.script.directions.contains(.up), op.script.directions.contains(.down)].filter { $0 }.count
        lock.withLock { state.jobCount = job.request.nIter * max(steps, 1) }
        let finals: [Image8]
        do {
            finals = try runOutpaintSteps(op, job: job, request: request, pipe: pipe, baseSeed: baseSeed, baseSubseed: baseSubseed,
                                          firstInfotext: &firstInfotext, calls: &calls)
        } catch let e as OutpaintingMk2.ScriptError {
            // the request's sizes and the script's arguments do not fit (A1111 fails with a ValueError)
            throw ServiceError(422, field: "script_args", "script_args: \(e.description)")
        }
        return try outpaintResult(finals, job: job, request: request, pipe: pipe, info: info, stamp: stamp, start: start,
                                  infotext: firstInfotext ?? "", baseSeed: baseSeed, baseSubseed: baseSubseed)
    }

    private func runOutpaintSteps(_ op: OutpaintJob, job: Txt2ImgJob, request: GenerationRequest, pipe: Pipeline, baseSeed: Int64,
                                  baseSubseed: Int64, firstInfotext: inout String?, calls: inout Int) throws -> [Image8] {
        var first = firstInfotext, count = calls
        defer { firstInfotext = first; calls = count }
        return try op.script.run(initImage: op.initImage, width: job.request.width, height: job.request.height,
                                 batchSize: job.request.batchSize, batchCount: job.request.nIter) { step in
            guard step.width % 8 == 0, step.height % 8 == 0 else {
                throw ServiceError(422, field: "init_images",
                                   "Outpainting mk2: a step of \(step.width)x\(step.height) is not a multiple of 8 (A1111 generates the next smaller multiple and pastes it back); give an init image whose sides are multiples of 8")
            }
            var options = InpaintOptions()
            options.blurX = Int(step.maskBlurX)
            options.blurY = Int(step.maskBlurY)
            options.fill = .original
            options.onlyMasked = false
            options.invert = op.invertMask
            options.round = op.roundMask
            var made: [Image8] = []
            for (n, crop) in step.images.enumerated() {
                var r = request
                r.width = step.width
                r.height = step.height
                r.batchSize = 1
                r.nIter = 1
                // seeds stay in A1111's 32-bit range (seed + n wraps, as the batch's noise seeds do)
                r.seed = (baseSeed + Int64(n)) % 4_294_967_296
                r.subseed = (baseSubseed + Int64(n)) % 4_294_967_296
                r.initImage = InitImage.prepared(crop, mask: step.imageMask, width: step.width, height: step.height,
                                                 resizeMode: op.resizeMode, inpaint: options, latentMask: step.latentMask)
                let out = try pipe.txt2img(r, control: control, progress: { [self] p in
                    lock.withLock { state.samplingStep = p.step }
                })
                guard let img = out.first else { throw ServiceError(500, "Outpainting mk2: the generation gave no picture") }
                if first == nil { first = img.infotext }
                made.append(Image8(width: img.width, height: img.height, channels: 3, pixels: img.rgb))
            }
            count += 1
            lock.withLock { state.jobNo = count }
            return made
        }
    }

    private func outpaintResult(_ finals: [Image8], job: Txt2ImgJob, request: GenerationRequest, pipe: Pipeline, info: CheckpointInfo,
                                stamp: String, start: Date, infotext: String, baseSeed: Int64, baseSubseed: Int64) throws -> JobResult {
        var pngs: [Data] = [], saved: [String] = []
        let saveSamples = option("samples_save")
        for (i, img) in finals.enumerated() {
            let png = try PNG.encode(img)
            pngs.append(png)
            if saveSamples || job.saveImages {
                saved.append(try save(png, seed: UInt64(baseSeed) + UInt64(i % max(job.request.batchSize, 1)),
                                      dir: job.saveDir ?? options["outdir_img2img_samples"]?.string ?? "outputs/img2img-images"))
            }
        }
        var gridPNG: Data?
        if finals.count > 1 {
            let png = try grid(finals, batchSize: 1, infotext: nil)   // the script's grid carries no infotext
            if option("return_grid") { gridPNG = png }
            if option("grid_save") && (saveSamples || job.saveImages) { saved.insert(try saveGrid(png, dir: gridDir(job)), at: 0) }
        }
        let seeds = finals.indices.map { UInt64(baseSeed) + UInt64($0 % max(job.request.batchSize, 1)) }
        var result = JobResult(pngs: pngs, infotexts: finals.map { _ in infotext }, seeds: seeds,
                               subseeds: finals.indices.map { UInt64(baseSubseed) + UInt64($0 % max(job.request.batchSize, 1)) },
                               savedPaths: saved, checkpoint: info, jobTimestamp: stamp, seconds: Date().timeIntervalSince(start))
        result.vae = request.vae.map { ($0.name, $0.shortHash) }
        result.inpaintingConditioning = pipe.model.isInpainting
        result.grid = gridPNG
        result.gridInfotext = gridPNG == nil ? nil : infotext
        return result
    }

    /// A unit made concrete for the loaded model: its control map by the extension's
    /// preprocessing, and the ControlNet loaded for this checkpoint's layout.
    func bind(_ unit: ControlUnitRequest, request: GenerationRequest, model: StableDiffusionModel) throws -> (ControlUnit, Image8) {
        let field = "alwayson_scripts.controlnet.args[\(unit.index)]"
        let net = try controlNets.model(unit.model, for: model.unet.config, field: field + ".model")
        let (_, map) = ControlPreprocessor.run(unit.module, image: unit.image, width: request.width, height: request.height,
                                               mode: unit.resizeMode, processorRes: unit.processorRes, thresholdA: unit.thresholdA,
                                               thresholdB: unit.thresholdB, pixelPerfect: unit.pixelPerfect)
        let hint = ControlUnit.hint(rgb: map.pixels, width: map.width, height: map.height)
        return (ControlUnit(model: net, hint: hint, weight: unit.weight, guidanceStart: unit.guidanceStart,
                            guidanceEnd: unit.guidanceEnd, mode: unit.controlMode), map)
    }

    /// Saves as the next free `NNNNN.png` of `dir` (A1111's sequential names).
    func saveNumbered(_ png: Data, dir: String) throws -> String {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: data.root.appendingPathComponent(dir).path)) ?? []
        let next = (names.compactMap { Int($0.prefix(5)) }.max() ?? -1) + 1
        return try storage.write(png, to: "\(dir)/\(String(format: "%05d", next)).png")
    }

    /// Saves under `dir/YYYY-MM-DD/HHMMSS-<uuid>-<seed>.png` (the cloud service's names).
    func save(_ png: Data, seed: UInt64, dir: String) throws -> String {
        let now = Date()
        let day = Self.format(now, "yyyy-MM-dd"), time = Self.format(now, "HHmmss")
        let rel = "\(dir)/\(day)/\(time)-\(UUID().uuidString.lowercased())-\(seed).png"
        return try storage.write(png, to: rel)
    }

    /// A boolean option that is on unless set to false (A1111's defaults for these are true).
    func option(_ key: String) -> Bool { options[key]?.any as? Bool != false }

    /// A1111's grid of a job's pictures as PNG (`n_rows`, `grid_prevent_empty_spots`), with the
    /// `parameters` infotext when given.
    func grid(_ pictures: [Image8], batchSize: Int, infotext: String?) throws -> Data {
        let grid = Image8.a1111Grid(pictures, batchSize: batchSize, nRows: options["n_rows"]?.int ?? -1,
                                    preventEmptySpots: options["grid_prevent_empty_spots"]?.any as? Bool == true)
        return try PNG.encode(grid, text: infotext.map { [("parameters", $0)] } ?? [])
    }

    /// Where a job's grid goes: beside its pictures (`<save_dir>/…-grids`), else the grid option.
    func gridDir(_ job: Txt2ImgJob) -> String {
        if let dir = job.saveDir { return dir.hasSuffix("-images") ? String(dir.dropLast("-images".count)) + "-grids" : dir + "-grids" }
        let img2img = job.request.initImage != nil
        return options[img2img ? "outdir_img2img_grids" : "outdir_txt2img_grids"]?.string ?? (img2img ? "outputs/img2img-grids" : "outputs/txt2img-grids")
    }

    /// Saves under `dir/YYYY-MM-DD/grid-HHMMSS-<uuid>.png` (the cloud service's grid names).
    func saveGrid(_ png: Data, dir: String) throws -> String {
        let now = Date()
        let rel = "\(dir)/\(Self.format(now, "yyyy-MM-dd"))/grid-\(Self.format(now, "HHmmss"))-\(UUID().uuidString.lowercased()).png"
        return try storage.write(png, to: rel)
    }

    static func format(_ d: Date, _ pattern: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone.current
        f.dateFormat = pattern
        return f.string(from: d)
    }

    static func timestamp(_ d: Date) -> String { format(d, "yyyyMMddHHmmss") }
}

/// Where outputs go: the data dir (`LocalStorage`), or its copy mirrored into a bucket (`BucketStorage`).
public protocol FileStorage: Sendable {
    /// Writes `data` at a path relative to the storage root; returns the stored path.
    func write(_ data: Data, to relativePath: String) throws -> String
}

public struct LocalStorage: FileStorage {
    public let root: URL
    public init(root: URL) { self.root = root }
    public func write(_ data: Data, to relativePath: String) throws -> String {
        let url = root.appendingPathComponent(relativePath)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
        return url.path
    }
}

/// A data dir on storage mounted read-only (`readOnly: true` in a deploy spec): every save is
/// refused with a 403 that says so, instead of failing half-way.
public struct ReadOnlyStorage: FileStorage {
    public let description: String
    public init(description: String) { self.description = description }
    public func write(_ data: Data, to relativePath: String) throws -> String {
        throw ServiceError(403, field: "save_images", "cannot save \(relativePath): the data dir's storage \(description) is mounted read-only (readOnly: true)")
    }
}

/// Live previews: A1111's "Approx cheap" linear latent → RGB map, at latent resolution.
public enum Preview {
    static let coefficients: [[Float]] = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]

    public static func cheapPNG(latents: [Float], shape: [Int]) -> Data? {
        let (h, w) = (shape[1], shape[2])
        var rgb = [UInt8](repeating: 0, count: h * w * 3)
        for i in 0..<(h * w) {
            for c in 0..<3 {
                var v: Float = 0
                for l in 0..<4 { v += latents[l * h * w + i] * coefficients[l][c] }
                rgb[i * 3 + c] = UInt8(min(max((v + 1) / 2, 0), 1) * 255)
            }
        }
        return try? PNG.encode(Image8(width: w, height: h, channels: 3, pixels: rgb))
    }
}
