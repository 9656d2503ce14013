import AtelierDiffusion
import AtelierImaging
import AtelierModels
import AtelierService
import Foundation

/// The A1111 txt2img body (a1111-api.md §2), decoded and validated into a service job.
struct Txt2ImgRequest {
    var job: Txt2ImgJob
    var sendImages: Bool
    /// the request echoed back with defaults filled in (`parameters` of the response)
    var echo: [String: JSONValue]
    /// EAS keys used (`alwayson_scripts.save_dir`, …): the response takes the EAS shape
    var eas: EASKeys?

    struct EASKeys {
        var idTask: String?
        var saveDir: String?
        var saveDirStyle: SaveDirStyle
    }

    /// How `image_url` paths are written back: as the mount path the caller used, or absolute.
    enum SaveDirStyle { case mount(prefix: String), absolute }

    /// Mount prefixes of the cloud container that map onto the data dir.
    static let mountPrefixes = ["/code/stable-diffusion-webui/data-oss", "/code/stable-diffusion-webui/data"]

    static let defaults: [String: JSONValue] = [
        "prompt": .string(""), "negative_prompt": .string(""), "styles": .array([]), "seed": .int(-1), "subseed": .int(-1),
        "subseed_strength": .double(0), "seed_resize_from_h": .int(-1), "seed_resize_from_w": .int(-1),
        "sampler_name": .null, "sampler_index": .string("Euler"), "scheduler": .null, "batch_size": .int(1), "n_iter": .int(1),
        "steps": .int(50), "cfg_scale": .double(7.0), "width": .int(512), "height": .int(512), "restore_faces": .null,
        "tiling": .null, "do_not_save_samples": .bool(false), "do_not_save_grid": .bool(false), "eta": .null,
        "denoising_strength": .double(0.75), "s_min_uncond": .null, "s_churn": .null, "s_tmax": .null, "s_tmin": .null,
        "s_noise": .null, "override_settings": .object([:]), "override_settings_restore_afterwards": .bool(true),
        "refiner_checkpoint": .null, "refiner_switch_at": .null, "disable_extra_networks": .bool(false),
        "firstpass_image": .null, "comments": .null, "enable_hr": .bool(false), "firstphase_width": .int(0),
        "firstphase_height": .int(0), "hr_scale": .double(2.0), "hr_upscaler": .null, "hr_second_pass_steps": .int(0),
        "hr_resize_x": .int(0), "hr_resize_y": .int(0), "hr_checkpoint_name": .null, "hr_sampler_name": .null,
        "hr_scheduler": .null, "hr_prompt": .string(""), "hr_negative_prompt": .string(""), "force_task_id": .null,
        "script_name": .null, "script_args": .array([]), "send_images": .bool(true), "save_images": .bool(false),
        "alwayson_scripts": .object([:]), "infotext": .null,
    ]

    /// Schedulers A1111 1.10 knows; those the engine lacks are refused by name.
    static let a1111Schedulers = ["automatic", "uniform", "karras", "exponential", "polyexponential", "sgm_uniform",
                                  "kl_optimal", "align_your_steps", "simple", "normal", "ddim", "beta"]
    static let a1111Samplers = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
                                "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart",
                                "DDIM", "DDIM CFG++", "PLMS", "UniPC", "LCM"]

    static let img2imgDefaults: [String: JSONValue] = [
        "init_images": .null, "resize_mode": .int(0), "image_cfg_scale": .null, "mask": .null, "mask_blur_x": .int(4),
        "mask_blur_y": .int(4), "mask_blur": .null, "mask_round": .bool(true), "inpainting_fill": .int(0),
        "inpaint_full_res": .bool(true), "inpaint_full_res_padding": .int(0), "inpainting_mask_invert": .int(0),
        "initial_noise_multiplier": .null, "latent_mask": .null, "include_init_images": .bool(false),
    ]

    static func decode(_ body: [String: JSONValue], instance: Instance, img2img: Bool = false) throws -> Txt2ImgRequest {
        var f = Fields(body)
        var r = GenerationRequest()
        r.prompt = f.string("prompt", "")
        r.negativePrompt = f.string("negative_prompt", "")
        r.seed = Int64(f.int("seed", -1))
        r.steps = f.int("steps", 50)
        r.cfgScale = f.double("cfg_scale", 7)
        r.width = f.int("width", 512)
        r.height = f.int("height", 512)
        r.batchSize = f.int("batch_size", 1)
        r.nIter = f.int("n_iter", 1)
        r.eta = f.optionalDouble("eta")
        let subseedStrength = f.double("subseed_strength", 0)
        let resizeW = f.int("seed_resize_from_w", -1), resizeH = f.int("seed_resize_from_h", -1)
        let samplerName = f.optionalString("sampler_name")
        let samplerIndex = f.string("sampler_index", "Euler")
        let schedulerName = f.optionalString("scheduler")
        let enableHR = img2img ? false : f.bool("enable_hr", false)
        var hires = HiresFix()
        var hrUpscalerName: String?, hrSamplerName: String?, hrSchedulerName: String?, hrCheckpoint: String?
        if enableHR {
            hires.scale = f.double("hr_scale", 2)
            hires.resizeX = f.int("hr_resize_x", 0)
            hires.resizeY = f.int("hr_resize_y", 0)
            hires.secondPassSteps = f.int("hr_second_pass_steps", 0)
            hires.prompt = f.string("hr_prompt", "")
            hires.negativePrompt = f.string("hr_negative_prompt", "")
            hrUpscalerName = f.optionalString("hr_upscaler")
            hrSamplerName = f.optionalString("hr_sampler_name")
            hrSchedulerName = f.optionalString("hr_scheduler")
            hrCheckpoint = f.optionalString("hr_checkpoint_name")
            _ = f.int("firstphase_width", 0)
            _ = f.int("firstphase_height", 0)
            r.denoisingStrength = f.double("denoising_strength", 0.75)
            f.check("denoising_strength", r.denoisingStrength, min: 0, max: 1)
            f.check("hr_scale", hires.scale, min: 1, max: 8)
            f.check("hr_resize_x", hires.resizeX, min: 0, max: 4096)
            f.check("hr_resize_y", hires.resizeY, min: 0, max: 4096)
            f.check("hr_second_pass_steps", hires.secondPassSteps, min: 0, max: 500)
        }
        let restoreFaces = f.bool("restore_faces", false)
        // null: the `tiling` setting (A1111's `p.tiling = opts.tiling`)
        let tiling: Bool? = f.isSet("tiling") ? f.bool("tiling", false) : nil
        // the request's sampler-option fields (A1111's p.s_churn …; null = the settings' value)
        let requestSamplerFields = ["s_churn", "s_tmin", "s_tmax", "s_noise"].reduce(into: [String: Double]()) { d, k in
            if let v = f.optionalDouble(k) { d[k] = v }
        }
        let sendImages = f.bool("send_images", true)
        let saveImages = f.bool("save_images", false)
        let scriptName = f.optionalString("script_name")
        let overrides = f.object("override_settings")
        let alwaysOn = f.object("alwayson_scripts")
        let forceTaskID = f.optionalString("force_task_id")
        _ = f.list("styles")
        var initImage: Image8?
        var scriptMask = (invert: false, round: true, mode: ImageResizeMode.justResize)

        f.check("steps", r.steps, min: 1, max: 500)
        f.check("width", r.width, min: 64, max: 4096)
        f.check("height", r.height, min: 64, max: 4096)
        if r.width % 8 != 0 { f.problem("width", "width must be a multiple of 8") }
        if r.height % 8 != 0 { f.problem("height", "height must be a multiple of 8") }
        f.check("batch_size", r.batchSize, min: 1, max: 64)
        f.check("n_iter", r.nIter, min: 1, max: 1000)
        f.check("cfg_scale", r.cfgScale, min: 0, max: 100)
        f.check("subseed_strength", subseedStrength, min: 0, max: 1)
        if r.seed != -1 { f.check("seed", r.seed, min: 0, max: 4_294_967_295) }
        if r.width * r.height * r.batchSize > 4096 * 4096 { f.problem("width", "width × height × batch_size exceeds 4096 × 4096") }
        if let eta = r.eta { f.check("eta", eta, min: 0, max: 10) }
        if img2img {
            r.denoisingStrength = f.double("denoising_strength", 0.75)
            f.check("denoising_strength", r.denoisingStrength, min: 0, max: 1)
            let inits = f.list("init_images")
            let resizeModeValue = f.int("resize_mode", 0)
            _ = f.optionalDouble("image_cfg_scale")  // instruct-pix2pix models only; accepted as A1111 does
            _ = f.bool("include_init_images", false)
            r.initialNoiseMultiplier = f.optionalDouble("initial_noise_multiplier") ?? instance.options.initialNoiseMultiplier
            f.check("initial_noise_multiplier", r.initialNoiseMultiplier, min: 0, max: 10)
            // inpainting (A1111's API defaults, not its UI's: fill 0, only masked, padding 0)
            let maskText = f.optionalString("mask")
            var inpaint = InpaintOptions()
            let blur = f.isSet("mask_blur") ? f.int("mask_blur", 4) : nil
            inpaint.blurX = blur ?? f.int("mask_blur_x", 4)
            inpaint.blurY = blur ?? f.int("mask_blur_y", 4)
            if blur != nil { _ = f.int("mask_blur_x", 4); _ = f.int("mask_blur_y", 4) }
            inpaint.round = f.bool("mask_round", true)
            let fill = f.int("inpainting_fill", 0)
            inpaint.onlyMasked = f.bool("inpaint_full_res", true)
            inpaint.padding = f.int("inpaint_full_res_padding", 0)
            inpaint.invert = f.int("inpainting_mask_invert", 0) != 0
            let latentMask = f.optionalString("latent_mask")
            for (name, v) in [("mask_blur_x", inpaint.blurX), ("mask_blur_y", inpaint.blurY)] { f.check(name, v, min: 0, max: 256) }
            if blur != nil { f.check("mask_blur", inpaint.blurX, min: 0, max: 256) }
            f.check("inpaint_full_res_padding", inpaint.padding, min: 0, max: 1024)
            guard f.problems.isEmpty else { throw ValidationFailure(problems: f.problems) }
            guard let mode = ImageResizeMode(rawValue: resizeModeValue) else {
                throw ServiceError(422, field: "resize_mode", "resize_mode: \(resizeModeValue) is not one of 0 (just resize), 1 (crop and resize), 2 (resize and fill), 3 (just resize, latent upscale)")
            }
            guard let content = InpaintOptions.MaskedContent(rawValue: fill) else {
                throw ServiceError(422, field: "inpainting_fill", "inpainting_fill: \(fill) is not one of 0 (fill), 1 (original), 2 (latent noise), 3 (latent nothing)")
            }
            inpaint.fill = content
            guard let first = inits.first?.string else { throw ServiceError(404, field: "init_images", "Init image not found") }
            let decoded = try decodeImage(first, field: "init_images")
            initImage = decoded
            if inits.count > 1 { throw ServiceError(422, field: "init_images", "init_images: several init images are not available in Atelier yet") }
            if latentMask != nil { throw ServiceError(422, field: "latent_mask", "latent_mask: a separate latent mask is not available in Atelier yet; the mask is used for both") }
            let mask = try maskText.flatMap { $0.isEmpty ? nil : try decodeImage($0, field: "mask") }
            if let mask, mode == .latentUpscale, decoded.width != r.width || decoded.height != r.height {
                // A1111 fails here too: its overlay stays at the init size while the picture is generated at the request's
                throw ServiceError(422, field: "resize_mode", "resize_mode: 3 (latent upscale) cannot inpaint an init image of another size (\(decoded.width)x\(decoded.height) for \(r.width)x\(r.height)); resize it first or use resize_mode 0–2")
            }
            r.initImage = InitImage.prepared(decoded, mask: mask, width: r.width, height: r.height, resizeMode: mode, inpaint: inpaint)
            scriptMask = (inpaint.invert, inpaint.round, mode)
        }
        guard f.problems.isEmpty else { throw ValidationFailure(problems: f.problems) }

        // Sampler and schedule by A1111's names (404 for unknown names, 422 for known ones not built yet).
        let samplerField = samplerName == nil ? "sampler_index" : "sampler_name"
        let sName = samplerName ?? samplerIndex
        guard let (sampler, schedFromName) = Sampler.resolve(sName) else {
            if a1111Samplers.contains(where: { $0.lowercased() == sName.lowercased() }) {
                throw ServiceError(422, field: samplerField, "\(samplerField): sampler '\(sName)' is not available in Atelier yet; use one of \(Sampler.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            throw ServiceError(404, field: samplerField, "Sampler not found: \(samplerField) '\(sName)'")
        }
        r.sampler = sampler
        r.scheduler = schedFromName ?? .automatic
        if let schedulerName, !schedulerName.isEmpty {
            guard let s = Scheduler(label: schedulerName) else {
                let key = schedulerName.lowercased().replacingOccurrences(of: " ", with: "_")
                if a1111Schedulers.contains(key) || key == "sgmuniform" {
                    throw ServiceError(422, field: "scheduler", "scheduler: '\(schedulerName)' is not available in Atelier yet; use one of \(Scheduler.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                throw ServiceError(404, field: "scheduler", "Scheduler not found: scheduler '\(schedulerName)'")
            }
            if s != .automatic || schedFromName == nil { r.scheduler = s }
        }

        // Features the engine does not have yet are refused by name, never ignored.
        func notYet(_ field: String, _ what: String) -> ServiceError {
            ServiceError(422, field: field, "\(field): \(what) is not available in Atelier yet")
        }
        if enableHR {
            // A1111: no upscaler named → its default latent mode ("Latent")
            let name = hrUpscalerName ?? "Latent"
            guard let up = HiresUpscaler(name: name) else {
                if ["none", "esrgan_4x", "ldsr", "r-esrgan 4x+", "r-esrgan 4x+ anime6b", "swinir 4x", "scunet", "scunet psnr", "dat x2", "dat x3", "dat x4"].contains(name.lowercased()) {
                    throw notYet("hr_upscaler", "upscaler '\(name)'; use one of \(HiresUpscaler.names.map(\.0).joined(separator: ", "))")
                }
                throw ServiceError(422, field: "hr_upscaler", "hr_upscaler: could not find upscaler named \(name); use one of \(HiresUpscaler.names.map(\.0).joined(separator: ", "))")
            }
            hires.upscaler = up
            if let n = hrSamplerName, !n.isEmpty, n != "Use same sampler" {
                guard let (s, sched) = Sampler.resolve(n) else { throw ServiceError(422, field: "hr_sampler_name", "hr_sampler_name: sampler '\(n)' is not available; use one of \(Sampler.allCases.map(\.rawValue).joined(separator: ", "))") }
                hires.sampler = s
                if let sched { hires.scheduler = sched }
            }
            if let n = hrSchedulerName, !n.isEmpty, n != "Use same scheduler" {
                guard let s = Scheduler(label: n) else { throw ServiceError(422, field: "hr_scheduler", "hr_scheduler: scheduler '\(n)' is not available") }
                hires.scheduler = s
            }
            if let c = hrCheckpoint, !c.isEmpty, c != "Use same checkpoint" { throw notYet("hr_checkpoint_name", "a separate hires checkpoint") }
            r.hires = hires
        }
        if restoreFaces { throw notYet("restore_faces", "face restoration") }
        r.subseed = Int64(f.int("subseed", -1))
        r.subseedStrength = subseedStrength
        r.seedResizeFromW = resizeW
        r.seedResizeFromH = resizeH
        if r.subseed != -1 && !(0...4_294_967_295).contains(r.subseed) { throw RequestError(field: "subseed", "subseed must be -1 (random) or between 0 and 4294967295") }
        for (k, v) in requestSamplerFields { f.check(k, v, min: 0, max: OptionsStore.samplerOptionMax[k]!) }
        guard f.problems.isEmpty else { throw ValidationFailure(problems: f.problems) }
        // Extra networks: LoRA / LyCORIS tags are applied (resolved by the instance); other
        // kinds (hypernetworks) are not available, which is said rather than ignored.
        for tag in ExtraNetworkTags.parse(r.prompt).tags where tag.kind != "lora" && tag.kind != "lyco" {
            throw ServiceError(422, field: "prompt", "prompt: <\(tag.kind):\(tag.arguments.joined(separator: ":"))>: \(tag.kind == "hypernet" ? "hypernetworks are" : "this kind of extra network is") not available in Atelier yet")
        }
        var outpaint: OutpaintJob?
        if let scriptName, scriptName.lowercased() == "outpainting mk2", img2img, let initImage {
            outpaint = try OutpaintJob(script: Self.outpaintingScript(body["script_args"]), initImage: initImage,
                                       invertMask: scriptMask.invert, roundMask: scriptMask.round, resizeMode: scriptMask.mode)
        } else if let scriptName, !scriptName.isEmpty {
            // A1111's built-in scripts are named as such; anything else is unknown, as in A1111
            let builtIn = ["prompt matrix", "prompts from file or textbox", "x/y/z plot", "img2img alternative test", "loopback",
                           "outpainting mk2", "poor man's outpainting", "sd upscale"]
            if builtIn.contains(scriptName.lowercased()) {
                throw ServiceError(422, field: "script_name", "script_name: A1111's script '\(scriptName)' is not available in Atelier yet")
            }
            throw ServiceError(422, field: "script_name", "Script '\(scriptName)' not found")
        }

        // Options for this job: the instance's, overridden per request.
        let opts = instance.options
        r.clipSkip = opts.clipSkip
        r.etaNoiseSeedDelta = Int64(opts.ensd)
        r.randnSource = NoiseSource(label: opts.randnSource) ?? .gpu
        r.etaSettings = .init(ancestral: opts["eta_ancestral"]?.double ?? 1, ddim: opts["eta_ddim"]?.double ?? 0)
        r.inpaintingMaskWeight = opts["inpainting_mask_weight"]?.double ?? 1
        r.vaeTileStatistics = opts.vaeTileStatistics
        var checkpoint: String?
        var vae: String?
        // sampler options: the instance's settings, overridden per request
        var samplerSettings: [String: Double] = [:]
        for k in OptionsStore.samplerOptionMax.keys { if let d = opts[k]?.double { samplerSettings[k] = d } }
        var discardSetting = opts["always_discard_next_to_last_sigma"] == .bool(true)
        var tilingSetting = opts["tiling"] == .bool(true)
        for (k, v) in overrides {
            let field = "override_settings.\(k)"
            switch k {
            case "CLIP_stop_at_last_layers":
                guard let n = v.int, (1...12).contains(n) else { throw ServiceError(422, field: field, "\(field): an integer 1…12") }
                r.clipSkip = n
            case "eta_noise_seed_delta":
                guard let n = v.int else { throw ServiceError(422, field: field, "\(field): an integer") }
                r.etaNoiseSeedDelta = Int64(n)
            case "randn_source":
                guard let s = v.string.flatMap(NoiseSource.init(label:)) else { throw ServiceError(422, field: field, "\(field): GPU, CPU or NV") }
                r.randnSource = s
            case "sd_model_checkpoint":
                guard let s = v.string else { throw ServiceError(422, field: field, "\(field): a checkpoint name") }
                checkpoint = s
            case "sd_vae":
                guard let s = v.string else { throw ServiceError(422, field: field, "\(field): a VAE name, Automatic or None") }
                vae = s
            case "inpainting_mask_weight":
                guard let d = v.double, (0...1).contains(d) else { throw ServiceError(422, field: field, "\(field): a number 0…1") }
                r.inpaintingMaskWeight = d
            case "initial_noise_multiplier":
                guard let d = v.double, (0...10).contains(d) else { throw ServiceError(422, field: field, "\(field): a number 0…10") }
                if img2img && (body["initial_noise_multiplier"] ?? .null) == .null { r.initialNoiseMultiplier = d }
            case "s_churn", "s_tmin", "s_tmax", "s_noise", "sigma_min", "sigma_max", "rho":
                guard let d = v.double, d.isFinite, (0...OptionsStore.samplerOptionMax[k]!).contains(d) else {
                    throw ServiceError(422, field: field, "\(field): a number 0…\(Infotext.pythonFloat(OptionsStore.samplerOptionMax[k]!))")
                }
                samplerSettings[k] = d
            case "always_discard_next_to_last_sigma":
                guard case .bool(let b) = v else { throw ServiceError(422, field: field, "\(field): true or false") }
                discardSetting = b
            case "tiling":
                guard case .bool(let b) = v else { throw ServiceError(422, field: field, "\(field): true or false") }
                tilingSetting = b
            case "atelier_vae_tile_statistics":
                guard let t = v.string.flatMap(TileStatistics.init(rawValue:)) else {
                    throw ServiceError(422, field: field, "\(field): \"exact\" or \"tile\"")
                }
                r.vaeTileStatistics = t
            case "eta_ancestral":
                guard let d = v.double, (0...10).contains(d) else { throw ServiceError(422, field: field, "\(field): a number 0…10") }
                r.etaSettings.ancestral = d
            case "eta_ddim":
                guard let d = v.double, (0...10).contains(d) else { throw ServiceError(422, field: field, "\(field): a number 0…10") }
                r.etaSettings.ddim = d
            default:
                guard OptionsStore.defaults[k] != nil else { throw ServiceError(422, field: field, "\(field): unknown option") }
                if generationOptions.contains(k) && OptionsStore.defaults[k] != v && !(OptionsStore.defaults[k]?.double != nil && OptionsStore.defaults[k]?.double == v.double) {
                    throw notYet(field, "option \(k) = \(String(decoding: v.data(), as: UTF8.self))")
                }
            }
        }

        r.samplerOptions = Self.samplerOptions(request: requestSamplerFields, settings: samplerSettings, discard: discardSetting)
        r.tiling = tiling ?? tilingSetting

        // EAS keys inside alwayson_scripts (a1111-api.md §14.2), then real scripts.
        var eas: EASKeys?
        let defaultStyle: SaveDirStyle = instance.data.mountPath.map { .mount(prefix: $0) } ?? .absolute
        var saveDir: String?
        var controlUnits: [ControlUnitRequest] = []
        for (k, v) in alwaysOn {
            let field = "alwayson_scripts.\(k)"
            switch k {
            case "sd_model_checkpoint":
                guard let s = v.string else { throw ServiceError(422, field: field, "\(field): a checkpoint name") }
                checkpoint = s
                eas = eas ?? EASKeys(saveDirStyle: defaultStyle)
            case "sd_vae":
                guard let s = v.string else { throw ServiceError(422, field: field, "\(field): a VAE name, Automatic or None") }
                vae = s
                eas = eas ?? EASKeys(saveDirStyle: defaultStyle)
            case "save_dir":
                guard let s = v.string, !s.isEmpty else { throw ServiceError(422, field: field, "\(field): a directory") }
                var e = eas ?? EASKeys(saveDirStyle: defaultStyle)
                saveDir = try mapSaveDir(s, data: instance.data, style: &e.saveDirStyle)
                e.saveDir = s
                eas = e
            case "id_task":
                var e = eas ?? EASKeys(saveDirStyle: defaultStyle)
                e.idTask = v.string
                eas = e
            case "uid":
                eas = eas ?? EASKeys(saveDirStyle: defaultStyle)
            case "image_link":
                // downloaded into init_images before decoding (SDAPIRoutes.fetchLinkedImages)
                guard img2img else { throw ServiceError(422, field: field, "\(field): image_link is for img2img") }
                eas = eas ?? EASKeys(saveDirStyle: defaultStyle)
            case _ where k.lowercased() == "controlnet":
                controlUnits = try ControlNetUnits.decode(v, key: k, library: instance.controlNets, initImage: initImage)
                // the cloud service's key `controlnet` takes its response shape; the extension's title does not
                if k == "controlnet" { eas = eas ?? EASKeys(saveDirStyle: defaultStyle) }
            default:
                throw ServiceError(422, field: field, "always on script \(k) not found")
            }
        }

        var echo = defaults
        if img2img {
            echo.removeValue(forKey: "enable_hr")
            for (k, v) in img2imgDefaults { echo[k] = v }
            echo["denoising_strength"] = .double(r.denoisingStrength)
        }
        for (k, v) in body { echo[k] = v }
        if img2img && !(body["include_init_images"]?.any as? Bool ?? false) { echo["init_images"] = .null; echo["mask"] = .null }
        echo["sampler_name"] = .string(sampler.rawValue)
        echo["scheduler"] = .string(r.scheduler.rawValue)
        echo["do_not_save_samples"] = .bool(!saveImages)
        echo["do_not_save_grid"] = .bool(!saveImages)

        var job = Txt2ImgJob(request: r, checkpoint: checkpoint, saveImages: saveImages || saveDir != nil,
                             saveDir: saveDir.map { $0 + (img2img ? "/img2img-images" : "/txt2img-images") })
        if let forceTaskID, !forceTaskID.isEmpty { job.taskID = forceTaskID }
        job.controlUnits = controlUnits
        if let vae {
            // an unknown name is refused now, before the job queues (the checkpoint's sidecar is resolved when it runs)
            try instance.vaes.validate(setting: vae, field: "override_settings.sd_vae")
            job.vae = vae
        }
        job.controlMapDir = saveDir.map { $0 + "/controlnet_mask" }
        job.outpaint = outpaint
        return Txt2ImgRequest(job: job, sendImages: sendImages && saveDir == nil, echo: echo, eas: eas)
    }

    /// `script_args` of Outpainting mk2: `[info, pixels, mask_blur, direction, noise_q,
    /// color_variation]` (A1111 passes them positionally; all six are required here, since a
    /// shorter list shifts A1111's arguments).
    static func outpaintingScript(_ value: JSONValue?) throws -> OutpaintingMk2 {
        guard case .array(let a)? = value, a.count == 6 else {
            throw ServiceError(422, field: "script_args", "script_args: Outpainting mk2 takes 6 values [info, pixels, mask_blur, direction, noise_q, color_variation]")
        }
        guard case .int(let pixels) = a[1], (8...256).contains(pixels) else {
            throw ServiceError(422, field: "script_args[1]", "script_args[1] (pixels to expand): an integer 8…256")
        }
        guard let blur = a[2].double, blur >= 0, blur <= 64, blur == blur.rounded() else {
            throw ServiceError(422, field: "script_args[2]", "script_args[2] (mask blur): a whole number 0…64")
        }
        let names: [String]
        switch a[3] {
        case .array(let list): names = list.compactMap(\.string)
        case .string(let text): names = [text]   // A1111 tests "left" in direction: a string works by substring
        default: names = []
        }
        let directions = OutpaintingMk2.Directions(names: names)
        guard !directions.isEmpty else {
            throw ServiceError(422, field: "script_args[3]", "script_args[3] (direction): a list of left, right, up, down")
        }
        guard let q = a[4].double, q >= 0, q <= 4 else { throw ServiceError(422, field: "script_args[4]", "script_args[4] (fall-off exponent): a number 0…4") }
        guard let cv = a[5].double, cv >= 0, cv <= 1 else { throw ServiceError(422, field: "script_args[5]", "script_args[5] (color variation): a number 0…1") }
        return OutpaintingMk2(pixels: pixels, maskBlur: blur, directions: directions, noiseQ: q, colorVariation: cv)
    }

    /// Options that change the picture; a request may not set them to values the engine lacks.

    /// A1111's rule (`processing` + `Sampler.initialize`): a request field wins over the setting,
    /// but a setting that differs from the sampler's default (0, 0, ∞, 1) overrides both and is
    /// written to the infotext; `s_tmax` 0 means ∞. Schedule overrides are settings only.
    static func samplerOptions(request: [String: Double], settings: [String: Double], discard: Bool) -> SamplerOptions {
        var o = SamplerOptions()
        let defaults: [String: Double] = ["s_churn": 0, "s_tmin": 0, "s_tmax": 0, "s_noise": 1]
        var value: [String: Double] = [:]
        for (k, d) in defaults {
            let setting = settings[k] ?? d
            value[k] = request[k] ?? setting
            if setting != d {
                value[k] = setting
                o.fromSettings.insert(k)
            }
        }
        o.sChurn = value["s_churn"]!
        o.sTmin = value["s_tmin"]!
        o.sTmax = value["s_tmax"]! == 0 ? .infinity : value["s_tmax"]!
        o.sNoise = value["s_noise"]!
        o.sigmaMin = settings["sigma_min"] ?? 0
        o.sigmaMax = settings["sigma_max"] ?? 0
        o.rho = settings["rho"] ?? 0
        o.discardPenultimateSigma = discard
        return o
    }

    static let generationOptions: Set<String> = [
        "emphasis", "sgm_noise_multiplier",
        "s_min_uncond", "pad_cond_uncond", "use_old_emphasis_implementation",
        "comma_padding_backtrack", "token_merging_ratio", "sd_unet",
    ]

    /// `save_dir` → a path relative to the data dir (a1111-api.md §14.2 path rules).
    static func mapSaveDir(_ dir: String, data: DataDirectory, style: inout SaveDirStyle) throws -> String {
        var relative = dir
        let ownRoot = data.root.path
        if dir.hasPrefix("/") {
            let known = (data.mountPath.map { [$0] } ?? []) + mountPrefixes + [ownRoot]
            guard let prefix = known.first(where: { dir == $0 || dir.hasPrefix($0 + "/") }) else {
                throw ServiceError(400, field: "alwayson_scripts.save_dir", "save_dir must stay inside the data dir: '\(dir)'")
            }
            style = prefix == ownRoot ? (data.mountPath.map { .mount(prefix: $0) } ?? .absolute) : .mount(prefix: prefix)
            relative = String(dir.dropFirst(prefix.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        }
        do {
            let url = try data.resolveInside(relative.isEmpty ? "." : relative, field: "alwayson_scripts.save_dir")
            let root = data.root.path
            return url.path == root ? "." : String(url.path.dropFirst(root.count + 1))
        } catch {
            throw ServiceError(400, field: "alwayson_scripts.save_dir", "save_dir must stay inside the data dir: '\(dir)'")
        }
    }
}

/// The bytes of a base64 image field, raw or a `data:` URL; nil when it is not base64.
func base64Payload(_ text: String) -> Data? {
    let b64 = text.range(of: "base64,").map { String(text[$0.upperBound...]) } ?? text
    return Data(base64Encoded: b64, options: .ignoreUnknownCharacters).flatMap { $0.isEmpty ? nil : $0 }
}

/// A base64 image field (raw or a `data:` URL): PNG, JPEG or WebP; anything else is a 422
/// naming the field.
func decodeImage(_ text: String, field: String) throws -> Image8 {
    guard let data = base64Payload(text) else {
        throw ValidationFailure(problems: [FieldProblem(loc: [.string("body"), .string(field)], msg: "not valid base64 image data", type: "value_error")])
    }
    do { return try ImageDecoder.decode(data) } catch {
        throw ValidationFailure(problems: [FieldProblem(loc: [.string("body"), .string(field)], msg: "invalid image: \(error)", type: "value_error")])
    }
}
