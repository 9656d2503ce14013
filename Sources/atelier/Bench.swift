import CMallocCount
import ArgumentParser
import AtelierDiffusion
import AtelierModels
import AtelierQueue
import AtelierTensor
import Foundation

/// `atelier bench`: hot paths timed, next to PyTorch on the same shapes in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time the engine's hot paths (ratio to PyTorch when --reference-python is given).")

    enum What: String, ExpressibleByArgument, CaseIterable {
        case unet, vaeDecode = "vae-decode", vaeEncode = "vae-encode", textEncoder = "text-encoder", txt2img, load, matmul, conv, queue, gateway, api
    }

    @Argument(help: "unet | vae-decode | vae-encode | text-encoder | txt2img | load | matmul | conv | queue | gateway | api") var what: What
    @Option(help: "queue, gateway, api: items (requests) per measurement.") var items: Int = 2000
    @Option(help: "queue: a PostgreSQL URL to measure besides SQLite (postgres://user@host:port/db).") var queueDb: String?
    @Option(help: "Checkpoint (.safetensors); not needed for matmul.") var model: String?
    @Option(help: "Timed runs (after one warm-up).") var runs: Int = 3
    @Option(help: "Compute threads (default: all cores).") var threads: Int?
    @Option(help: "How linear and conv weights stay in memory: auto (float16 where the file stores float16, widened per layer; half the memory, same numbers) or fp32.") var residentWeights: ResidentWeights = .auto
    @Option(help: "Image size in pixels (latents are size/8).") var size: Int = 512
    @Option(help: "Python with torch and diffusers: runs tools/bench_reference.py on the same shapes.") var referencePython: String?
    @Flag(help: "One JSON object per line.") var json = false
    @Flag(help: "Print the time per operation kind.") var profile = false
    @Option(help: "unet: also time one step with this ControlNet (.safetensors/.pth), next to the plain step; txt2img: sample with one unit of it (a grey hint), so its steps are counted too.") var controlnet: String?
    @Option(help: "unet, txt2img: also time patching this LoRA / LyCORIS file in at weight 1 (and restoring the weights), next to the plain step.") var lora: String?
    @Option(help: "unet, txt2img: also time one UNet step at the hires fix's second-pass size (size × this factor), next to the plain step.") var hiresScale: Double?
    @Option(help: "txt2img with --controlnet: the unit's control mode (Balanced, \"My prompt is more important\", \"ControlNet is more important\", or 0–2).") var controlMode: String = "Balanced"
    @Option(help: "vae-decode: decode in tiles of this many latent pixels (0: whole) and report the PSNR against the whole decode, on torch.randn latents (of --latent-seed) instead of constant ones.") var tile: Int?
    @Option(help: "vae-decode with --tile: the random latents' seed.") var latentSeed: UInt64 = 11
    @Option(help: "vae-decode with --tile, vae-encode above 1024²: the tiles' GroupNorm statistics: exact (the whole picture's, one short pass per GroupNorm) or tile (each tile's own).") var tileStatistics: TileStatistics = TileStatistics.byDefault
    @Option(help: "txt2img: the sampler (A1111's name, e.g. \"DPM++ 2M\"); the reference's bench is Euler's.") var sampler: String = "Euler"
    @Flag(help: "Write a backtrace of every allocation call during the last run (txt2img: during its third step, a steady one) to stderr; tools/malloc_sites.py names the sites.") var mallocBacktraces = false

    func run() throws {
        ResidentWeights.current = residentWeights
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be positive") }
            Compute.setThreads(threads)
        }
        guard runs > 0 else { throw ValidationError("--runs must be positive") }
        if let hiresScale, !(1...4).contains(hiresScale) { throw ValidationError("--hires-scale must be between 1 and 4") }
        if let lora, !FileManager.default.fileExists(atPath: lora) { throw ValidationError("--lora: no such file \(lora)") }
        guard let (samplerChoice, samplerSchedule) = Sampler.resolve(sampler) else {
            throw ValidationError("--sampler: no sampler named \(sampler) (one of: \(Sampler.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let controlModeChoice = ControlMode(api: controlMode) else {
            throw ValidationError("--control-mode: one of \(ControlMode.allCases.map(\.rawValue).joined(separator: ", ")) (or 0–2)")
        }
        if referencePython != nil, what == .txt2img, samplerChoice != .euler {
            throw ValidationError("--reference-python: the reference bench samples with Euler; leave --sampler out to compare")
        }
        if what == .queue { return try runQueue() }
        if what == .gateway || what == .api {
            guard items >= 16 else { throw ValidationError("--items must be at least 16") }
            let gateway = GatewayBench(requests: items, clients: 16, json: json)
            let api = APIBench(requests: items, clients: 16, model: model, size: size == 512 ? 256 : size, json: json)
            let what = self.what
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var failure: Error?
            Task {
                do { if what == .gateway { try await gateway.run() } else { try await api.run() } } catch { failure = error }
                done.signal()
            }
            done.wait()
            if let failure { throw failure }
            return
        }
        guard size % 8 == 0, size >= 64 else { throw ValidationError("--size must be a multiple of 8, at least 64") }
        let load0 = loadAverage()
        let sgemm = measureSGEMM()
        let openBLAS = measureSGEMM(openBLAS: true)
        if what == .conv { return benchConv(sgemm: sgemm, load: load0) }
        var loaded: StableDiffusionModel?
        func m() throws -> StableDiffusionModel {
            if let loaded { return loaded }
            guard let model else { throw ValidationError("--model is required for \(what.rawValue)") }
            let l = try StableDiffusionModel(path: model)
            loaded = l
            return l
        }
        let h = size / 8
        var work: () throws -> Void
        nonisolated(unsafe) var freshInLoop: Int?
        nonisolated(unsafe) var mallocsInLoop: Int?
        var tiledComparison: (psnr: Double, wholeSeconds: Double)?
        switch what {
        case .queue, .gateway, .api, .conv: return
        case .matmul:
            work = { _ = measureSGEMM(n: 2048, runs: 1) }
        case .load:
            guard let model else { throw ValidationError("--model is required for load") }
            work = { _ = try StableDiffusionModel(path: model) }
        case .unet:
            let mdl = try m()
            let x = Tensor(filling: [2, 4, h, h], with: 0.1)
            let ctx = Tensor(filling: [2, 77, mdl.unet.config.contextDim], with: 0.1)
            let timesteps: [Float] = [500, 500]
            work = { _ = mdl.unet(x, timesteps: timesteps, context: ctx) }
        case .vaeDecode:
            let mdl = try m()
            let statistics = tileStatistics
            guard (tile ?? 0) >= 0 else { throw ValidationError("--tile must be 0 (whole) or a side in latent pixels") }
            var z = Tensor(filling: [1, 4, h, h], with: 0.1)
            if let tile {
                var g = TorchCPUGenerator(seed: latentSeed)
                z = Tensor(shape: [1, 4, h, h], data: g.randn(4 * h * h))
                let t = now()
                // one-off phases, as the pipeline decodes (so the peak RSS is the pipeline's)
                let whole = BufferPool.oneOffPhase { mdl.vaeDecoder(z, tile: 0) }
                let wholeSeconds = now() - t
                let tiled = BufferPool.oneOffPhase { mdl.vaeDecoder(z, tile: tile, statistics: statistics) }
                tiledComparison = (psnr: VAEDecoder.picturePSNR(tiled, whole), wholeSeconds: wholeSeconds)
            }
            work = { [tile] in _ = BufferPool.oneOffPhase { mdl.vaeDecoder(z, tile: tile, statistics: statistics) } }  // as the pipeline decodes
        case .vaeEncode:
            let mdl = try m()
            let img = Tensor(filling: [1, 3, size, size], with: 0.1)
            work = { [tileStatistics] in _ = BufferPool.oneOffPhase { mdl.vaeEncoder.mean(img, statistics: tileStatistics) } }  // as the pipeline encodes
        case .textEncoder:
            let mdl = try m()
            work = { _ = mdl.textEncoder.encode(Array(repeating: 320, count: 77)) }
        case .txt2img:
            let p = Pipeline(model: try m())
            var r = GenerationRequest()
            r.prompt = "a photo of a cat"
            r.seed = 1
            r.steps = 20
            r.width = size
            r.height = size
            r.randnSource = .cpu
            r.sampler = samplerChoice
            if let samplerSchedule { r.scheduler = samplerSchedule }  // a pre-1.9 name such as "DPM++ 2M Karras"
            if let controlnet {
                let net = try ControlNetModel(path: controlnet, config: p.model.unet.config)
                r.controlUnits = [ControlUnit(model: net, hint: Tensor(filling: [1, 3, size, size], with: 0.5), mode: controlModeChoice)]
            }
            // tensor buffers and malloc calls over steps 2…N (the step loop should reuse step 1's buffers)
            var run = 0
            work = { [runs, mallocBacktraces] in
                var atFirst = 0
                var mallocsAtFirst: UInt = 0
                run += 1
                _ = try p.txt2img(r, progress: { progress in
                    // reported after each step: on after step 2, off after step 3
                    if mallocBacktraces, run == runs + 1 { atelier_malloc_backtraces(progress.step == 2 ? 1 : 0) }
                    if progress.step == 1 { atFirst = BufferPool.freshAllocations; mallocsAtFirst = atelier_malloc_calls() }
                    // counted up to the last step reported (DPM fast and adaptive report fewer than `steps`)
                    if progress.step >= 2 {
                        freshInLoop = BufferPool.freshAllocations - atFirst
                        mallocsInLoop = Int(atelier_malloc_calls() - mallocsAtFirst)
                    }
                })
            }
        }
        try work()  // warm-up
        var times: [Double] = []
        times.reserveCapacity(runs)  // no allocation of the bench's own between runs (malloc calls are counted)
        let ru0 = cpuSeconds()
        let faults0 = minorFaults(), fresh0 = BufferPool.freshAllocations
        let wall0 = now()
        Profiler.reset()
        Profiler.enabled = true
        var mallocsLastRun: UInt = 0, mallocsFewest = UInt.max
        for i in 0..<runs {
            if i > 0 { Profiler.enabled = false }
            let traced = mallocBacktraces && what != .txt2img && i == runs - 1
            if traced { atelier_malloc_backtraces(1) }
            let t = now(), mallocs0 = atelier_malloc_calls()
            try work()
            times.append(now() - t)
            if mallocBacktraces { atelier_malloc_backtraces(0) }  // txt2img: also when it ends before step 3
            mallocsLastRun = atelier_malloc_calls() - mallocs0
            mallocsFewest = min(mallocsFewest, mallocsLastRun)
        }
        Profiler.enabled = false
        let utilisation = (cpuSeconds() - ru0) / (now() - wall0)
        let faultsPerRun = (minorFaults() - faults0) / runs
        let freshPerRun = Double(BufferPool.freshAllocations - fresh0) / Double(runs)
        times.sort()
        let median = times[times.count / 2]
        let flops = Profiler.flops
        var refMedian: Double?
        if let py = referencePython, what != .load {
            refMedian = try reference(python: py)
        }
        let rss = peakRSS()
        let gflops = flops / median / 1e9
        if json {
            var o: [String: Any] = ["name": what.rawValue, "median_s": median, "min_s": times.first!, "max_s": times.last!,
                                    "runs": runs, "threads": Compute.threads, "size": size, "gflop": flops / 1e9,
                                    "gflops": gflops, "sgemm_gflops": sgemm, "fraction_of_sgemm": gflops / sgemm,
                                    "cpu_utilisation": utilisation, "peak_rss_bytes": rss, "load_average": load0,
                                    "page_faults_per_run": faultsPerRun, "fresh_buffers_per_run": freshPerRun,
                                    "malloc_calls_last_run": mallocsLastRun, "malloc_calls_fewest_run": mallocsFewest,
                                    "attention_tiles": Ops.attentionUsesAVX512 ? "avx512" : "avx2", "gemm_tiles": GEMM.wide ? "avx512" : "avx2", "openblas_gflops": openBLAS, "openblas_core": GEMM.openBLASCore,
                                    "reference_median_s": refMedian ?? NSNull(), "ratio": refMedian.map { median / $0 } ?? NSNull()]
            if what == .matmul { o["gflops"] = sgemm }
            if let freshInLoop { o["fresh_buffers_steps_2_to_n"] = freshInLoop }
            if let mallocsInLoop { o["malloc_calls_steps_2_to_n"] = mallocsInLoop }
            if what == .txt2img { o["sampler"] = samplerChoice.rawValue }
            if let tiledComparison, let tile {
                o["tile"] = tile
                o["tile_statistics"] = tileStatistics.rawValue
                o["tiled_vs_whole_psnr_db"] = tiledComparison.psnr
                o["whole_decode_s"] = tiledComparison.wholeSeconds
            }
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("\(what.rawValue): median \(f(median)) s (min \(f(times.first!)), max \(f(times.last!)), \(runs) runs, \(Compute.threads) threads)")
            print("  work \(f(flops / 1e9)) GFLOP, \(f(gflops)) GFLOP/s = \(f(gflops / sgemm)) of the GEMM rate (\(f(sgemm)) GFLOP/s at 2048³ measured now)")
            print("  CPU utilisation \(f(utilisation)), peak RSS \(f(Double(rss) / 1_073_741_824)) GiB, load average before \(f(load0)), "
                  + "attention tiles \(Ops.attentionUsesAVX512 ? "AVX-512" : "AVX2"), GEMM tiles \(GEMM.wide ? "AVX-512" : "AVX2")")
            print("  OpenBLAS sgemm \(f(openBLAS)) GFLOP/s in this run (kernels \(GEMM.openBLASCore)); Atelier's GEMM \(f(sgemm))")
            print("  per run after the warm-up: \(f(freshPerRun)) tensor buffers allocated (0 = all reused), \(faultsPerRun) minor page faults")
            print("  malloc calls in the last run: \(mallocsLastRun) (fewest in a run: \(mallocsFewest))")
            if let freshInLoop { print("  tensor buffers allocated over steps 2…N of the last run: \(freshInLoop)") }
            if let mallocsInLoop { print("  malloc calls over steps 2…N of the last run: \(mallocsInLoop) (\(samplerChoice.rawValue))") }
            if let tiledComparison, let tile {
                print("  tiles of \(tile) latents, \(tileStatistics.rawValue) statistics: \(f(tiledComparison.psnr)) dB from the whole decode (which took \(f(tiledComparison.wholeSeconds)) s once)")
            }
            if let refMedian { print("  PyTorch \(f(refMedian)) s → ratio Atelier/PyTorch \(f(median / refMedian))") }
        }
        if what == .unet, let controlnet { try benchControlNet(controlnet, model: try m(), plainMedian: median, sgemm: sgemm) }
        if what == .unet || what == .txt2img {
            if let lora { try benchLoRA(lora, model: try m(), plainMedian: median, plainName: what.rawValue) }
            if let hiresScale { try benchHiresStep(hiresScale, model: try m(), sgemm: sgemm) }
        }
        if profile {
            for (name, secs, calls, fl) in Profiler.report {
                print(String(format: "  %-14@ %8.3f s  %6d calls  %8.1f GFLOP  %6.1f GFLOP/s", name as NSString, secs, calls, fl / 1e9, fl / 1e9 / max(secs, 1e-9)))
            }
        }
    }

    /// The 3×3 convolutions of SD 1.5 at each shape class, im2col+sgemm and Winograd one after
    /// the other in this run: time, rate in direct-convolution FLOP/s, fraction of sgemm.
    func benchConv(sgemm: Double, load: Double) {
        let h = size / 8   // latent side; the shapes below are SD 1.5's at --size
        let shapes: [(String, [Int], Int)] = [
            ("unet 320ch \(h)²", [2, 320, h, h], 320), ("unet 640ch \(h / 2)²", [2, 640, h / 2, h / 2], 640),
            ("unet 1280ch \(h / 4)²", [2, 1280, h / 4, h / 4], 1280), ("unet 1280ch \(h / 8)²", [2, 1280, h / 8, h / 8], 1280),
            ("vae 512ch \(h)²", [1, 512, h, h], 512), ("vae 512ch \(4 * h)²", [1, 512, 4 * h, 4 * h], 512),
            ("vae 128ch \(8 * h)²", [1, 128, 8 * h, 8 * h], 128),
        ]
        let pad = (top: 1, left: 1, bottom: 1, right: 1)
        let saved = Ops.winogradEnabled
        defer { Ops.winogradEnabled = saved }
        for (name, shape, o) in shapes {
            let x = Tensor(filling: shape, with: 0.1)
            let weight = Tensor(filling: [o, shape[1], 3, 3], with: 0.01)
            let flop = 2.0 * Double(o * shape[1] * 9 * shape[0] * shape[2] * shape[3])
            var medians: [String: Double] = [:]
            for fast in [false, true] {
                Ops.winogradEnabled = fast
                let algorithm = Ops.convAlgorithm(input: shape, weight: weight.shape, stride: 1, padding: pad)
                if fast && algorithm != .winograd && algorithm != .winograd2 { continue }
                _ = Ops.conv2d(x, weight: weight, bias: nil, padding: pad)
                var times: [Double] = []
                for _ in 0..<max(runs, 3) {
                    let t = now()
                    _ = Ops.conv2d(x, weight: weight, bias: nil, padding: pad)
                    times.append(now() - t)
                }
                times.sort()
                medians[algorithm.rawValue] = times[times.count / 2]
            }
            let base = medians["im2col"]!, fast = medians["winograd"] ?? medians["winograd2"]
            let variant = medians["winograd"] != nil ? "F(4x4)" : "F(2x2)"
            if json {
                let o: [String: Any] = ["name": "conv", "shape": name, "median_s": fast ?? base, "im2col_median_s": base,
                                        "winograd_median_s": fast ?? NSNull(),
                                        "winograd": fast == nil ? NSNull() : variant, "gflops": flop / (fast ?? base) / 1e9,
                                        "sgemm_gflops": sgemm, "fraction_of_sgemm": flop / (fast ?? base) / 1e9 / sgemm,
                                        "reference_median_s": NSNull(), "ratio": NSNull(), "peak_rss_bytes": peakRSS(),
                                        "load_average": load]
                if let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) { print(String(decoding: data, as: UTF8.self)) }
            } else {
                var line = String(format: "%-16@ im2col %7.1f ms (%5.1f GFLOP/s, %.2f of sgemm)", name as NSString, base * 1e3, flop / base / 1e9, flop / base / 1e9 / sgemm)
                if let fast {
                    line += String(format: "  %@ %7.1f ms (%5.1f GFLOP/s-equivalent, %.2f of sgemm) → %.2f×", "winograd " + variant as NSString, fast * 1e3, flop / fast / 1e9, flop / fast / 1e9 / sgemm, fast / base)
                }
                print(line)
            }
        }
        if !json { print(String(format: "sgemm %.1f GFLOP/s measured now, load average before %.2f", sgemm, load)) }
    }

    /// One UNet step with a ControlNet unit (its residuals, then the UNet taking them), at the
    /// same shape as `unet`; reports the time and the extra over the plain step of this run.
    func benchControlNet(_ path: String, model: StableDiffusionModel, plainMedian: Double, sgemm: Double) throws {
        let net = try ControlNetModel(path: path, config: model.unet.config)
        let h = size / 8
        let x = Tensor(filling: [2, 4, h, h], with: 0.1)
        let ctx = Tensor(filling: [2, 77, model.unet.config.contextDim], with: 0.1)
        let one = net.encodeHint(Tensor(filling: [1, 3, size, size], with: 0.5))
        // as a job's steps run it: the hint stacked once for the batch, the residual arrays kept
        let hint = Tensor.stack([one, one]), timesteps: [Float] = [500, 500]
        var residuals: [Tensor] = [], skips: [Tensor] = []
        let step = {
            net.residuals(x, encodedHint: hint, timesteps: timesteps, context: ctx, into: &residuals)
            skips.removeAll(keepingCapacity: true)
            skips.append(contentsOf: residuals.dropLast())
            _ = model.unet(x, timesteps: timesteps, context: ctx, control: ControlResiduals(skips: skips, middle: residuals[residuals.count - 1]))
        }
        step()  // warm-up
        Profiler.reset()
        Profiler.enabled = true
        var times: [Double] = []
        times.reserveCapacity(runs)
        var mallocsFewest = UInt.max
        for i in 0..<runs {
            if i > 0 { Profiler.enabled = false }
            let t = now(), mallocs0 = atelier_malloc_calls()
            step()
            mallocsFewest = min(mallocsFewest, atelier_malloc_calls() - mallocs0)
            times.append(now() - t)
        }
        Profiler.enabled = false
        times.sort()
        let median = times[times.count / 2]
        let gflops = Profiler.flops / median / 1e9
        let extra = median / plainMedian - 1
        if json {
            let o: [String: Any] = ["name": "unet+controlnet", "median_s": median, "min_s": times.first!, "max_s": times.last!, "runs": runs,
                                    "threads": Compute.threads, "size": size, "gflop": Profiler.flops / 1e9, "gflops": gflops,
                                    "sgemm_gflops": sgemm, "fraction_of_sgemm": gflops / sgemm, "plain_unet_median_s": plainMedian,
                                    "extra_over_unet": extra, "peak_rss_bytes": peakRSS(), "reference_median_s": NSNull(), "ratio": NSNull(),
                                    "malloc_calls_fewest_run": mallocsFewest]
            print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("unet+controlnet: median \(f(median)) s (min \(f(times.first!)), max \(f(times.last!))) = plain step + \(f(extra * 100)) %")
            print("  work \(f(Profiler.flops / 1e9)) GFLOP, \(f(gflops)) GFLOP/s = \(f(gflops / sgemm)) of sgemm; the hint block runs once per job (not timed)")
            print("  malloc calls in a step (fewest of the runs): \(mallocsFewest)")
        }
    }

    /// Patching a network into the weights (A1111's `W += updown · scale`) and restoring them, the
    /// cost a job with `<lora:…>` pays once when the network set changes, next to the plain run.
    func benchLoRA(_ path: String, model: StableDiffusionModel, plainMedian: Double, plainName: String) throws {
        let use = NetworkUse(file: try NetworkFile(path: path), te: 1, unet: 1)
        try model.applyNetworks([])
        var patch: [Double] = [], restore: [Double] = []
        var modules = 0
        for _ in 0...runs {  // the first pair warms up
            var t = now()
            modules = try model.applyNetworks([use])
            patch.append(now() - t)
            t = now()
            try model.applyNetworks([])
            restore.append(now() - t)
        }
        patch = Array(patch.dropFirst()).sorted()
        restore = Array(restore.dropFirst()).sorted()
        let (pm, rm) = (patch[patch.count / 2], restore[restore.count / 2])
        if json {
            let o: [String: Any] = ["name": "lora-patch", "median_s": pm, "min_s": patch.first!, "max_s": patch.last!, "runs": runs,
                                    "restore_median_s": rm, "modules": modules, "plain": plainName, "plain_median_s": plainMedian,
                                    "extra_over_plain": pm / plainMedian, "peak_rss_bytes": peakRSS(), "reference_median_s": NSNull(), "ratio": NSNull()]
            print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("lora patch: median \(f(pm)) s (min \(f(patch.first!)), max \(f(patch.last!))), \(modules) modules; restore \(f(rm)) s")
            print("  = \(f(pm / plainMedian * 100)) % of one \(plainName) (paid once per change of the network set, not per step)")
        }
    }

    /// One UNet step at the hires fix's second-pass size next to the plain step (the second pass's
    /// per-step cost; its step count is `hr_second_pass_steps` or the job's).
    func benchHiresStep(_ scale: Double, model: StableDiffusionModel, sgemm: Double) throws {
        func step(_ px: Int) -> Double {
            let h = px / 8
            let x = Tensor(filling: [2, 4, h, h], with: 0.1)
            let ctx = Tensor(filling: [2, 77, model.unet.config.contextDim], with: 0.1)
            _ = model.unet(x, timesteps: [500, 500], context: ctx)  // warm-up
            var times: [Double] = []
            for _ in 0..<runs {
                let t = now()
                _ = model.unet(x, timesteps: [500, 500], context: ctx)
                times.append(now() - t)
            }
            return times.sorted()[times.count / 2]
        }
        let hiresSize = Int((Double(size) * scale / 8).rounded(.down)) * 8
        let plain = step(size), hires = step(hiresSize)
        if json {
            let o: [String: Any] = ["name": "hires-step", "median_s": hires, "size": hiresSize, "plain_size": size, "plain_step_median_s": plain,
                                    "ratio_to_plain_step": hires / plain, "runs": runs, "threads": Compute.threads, "sgemm_gflops": sgemm,
                                    "peak_rss_bytes": peakRSS(), "reference_median_s": NSNull(), "ratio": NSNull()]
            print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("hires step (\(hiresSize)²): median \(f(hires)) s = \(f(hires / plain))× the plain step at \(size)² (\(f(plain)) s)")
        }
    }

    func runQueue() throws {
        guard items >= 16 else { throw ValidationError("--items must be at least 16") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atelier-bench-queue-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var stores: [(name: String, open: () async throws -> any QueueStore)] = [
            ("sqlite", { try SQLiteQueueStore(path: dir.appendingPathComponent("queue.sqlite3").path) }),
        ]
        if let url = queueDb {
            guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else { throw ValidationError("--queue-db must be a postgres:// URL") }
            let schema = "bench_\(getpid())"
            stores.append(("postgres", { try await PostgresQueueStore(url: url + (url.contains("?") ? "&" : "?") + "schema=\(schema)") }))
        }
        let bench = QueueBench(stores: stores, items: items, clients: [1, 16], json: json)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: Error?
        Task {
            do { try await bench.run() } catch { failure = error }
            done.signal()
        }
        done.wait()
        if let failure { throw failure }
    }

    func f(_ x: Double) -> String { String(format: x < 10 ? "%.3f" : "%.1f", x) }

    /// Runs tools/bench_reference.py with the same shapes and threads; its median seconds.
    func reference(python: String) throws -> Double {
        let script = Self.toolsDir().appendingPathComponent("bench_reference.py").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script, what.rawValue, "--runs", String(runs), "--threads", String(Compute.threads), "--size", String(size)]
            + (model.map { ["--model", $0] } ?? [])
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard p.terminationStatus == 0, let line = text.split(separator: "\n").last,
              let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let med = o["median_s"] as? Double
        else { throw ValidationError("reference bench failed: \(text)") }
        return med
    }

    static func toolsDir() -> URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("tools/bench_reference.py").path) { break }
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("tools")
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Minor page faults of this process so far (fresh pages touched).
func minorFaults() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return u.ru_minflt
}

func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) * 1e-6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) * 1e-6
}

/// VmHWM of this process, bytes.
func peakRSS() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return (Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0) * 1024
    }
    return 0
}

func loadAverage() -> Double {
    var l = [Double](repeating: 0, count: 3)
    getloadavg(&l, 3)
    return l[0]
}

/// The machine's matmul rate at 2048³ (median of `runs` after a warm-up): the engine's GEMM, or
/// OpenBLAS's sgemm (the library floor) with `openBLAS`.
func measureSGEMM(n: Int = 2048, runs: Int = 3, openBLAS: Bool = false) -> Double {
    let a = Tensor(filling: [n, n], with: 0.5), b = Tensor(filling: [n, n], with: 0.25)
    let c = Tensor(uninitialized: [n, n])
    var best: [Double] = []
    for _ in 0...runs {
        let t = now()
        if openBLAS {
            GEMM.openBLAS(m: n, n: n, k: n, a: a.unsafePointer, b: b.unsafePointer, c: c.unsafePointer)
        } else {
            sgemm(m: n, n: n, k: n, a: a.unsafePointer, lda: n, b: b.unsafePointer, ldb: n, c: c.unsafePointer, ldc: n)
        }
        best.append(now() - t)
    }
    best.removeFirst()
    best.sort()
    return 2 * Double(n * n * n) / best[best.count / 2] / 1e9
}

extension ResidentWeights: ExpressibleByArgument {}

extension TileStatistics: ExpressibleByArgument {}
