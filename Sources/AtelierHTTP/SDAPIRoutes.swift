import AtelierDiffusion
import AtelierImaging
import AtelierModels
import AtelierService
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The `/sdapi/v1` and `/internal` routes (a1111-api.md §1).
struct SDAPIRoutes {
    let instance: Instance
    let configuration: ServerConfiguration
    let logger: Logger

    func register(on router: Router<BasicRequestContext>) {
        let v1 = router.group("sdapi/v1")
        let maxBody = configuration.maxBodyBytes

        v1.post("txt2img") { request, _ -> Response in
            var request = request
            let body = try await Self.jsonObject(&request, limit: maxBody)
            return jsonResponse(try await generate(body, img2img: false))
        }
        v1.post("img2img") { request, _ -> Response in
            var request = request
            let body = try await Self.jsonObject(&request, limit: maxBody)
            return jsonResponse(try await generate(body, img2img: true))
        }
        v1.post("png-info") { request, _ -> Response in
            var request = request
            let body = try await Self.jsonObject(&request, limit: maxBody)
            return jsonResponse(try pngInfo(body))
        }
        v1.get("progress") { request, _ -> Response in
            let skip = request.uri.queryParameters.get("skip_current_image").map { $0 == "true" || $0 == "1" } ?? false
            return jsonResponse(progress(skipImage: skip))
        }
        v1.post("interrupt") { _, _ -> Response in
            instance.interrupt()
            return jsonResponse(.object([:]))
        }
        v1.post("skip") { _, _ -> Response in
            instance.skip()
            return jsonResponse(.null)
        }
        v1.get("options") { _, _ -> Response in jsonResponse(.object(instance.options.all)) }
        v1.post("options") { request, _ -> Response in
            var request = request
            return jsonResponse(try setOptions(try await Self.jsonObject(&request, limit: maxBody)))
        }
        v1.get("cmd-flags") { _, _ -> Response in jsonResponse(.object(configuration.cmdFlags)) }
        v1.get("samplers") { _, _ -> Response in
            jsonResponse(.array(Sampler.allCases.map { s in
                let options = s.options.mapValues { v -> JSONValue in v == "true" ? .bool(true) : .string(v) }
                return .object(["name": .string(s.rawValue), "aliases": .array(s.aliases.map { .string($0) }), "options": .object(options)])
            }))
        }
        v1.get("schedulers") { _, _ -> Response in
            jsonResponse(.array(Scheduler.allCases.map { s in
                .object(["name": .string(s.name), "label": .string(s.rawValue),
                         "aliases": s == .sgmUniform ? .array([.string("SGMUniform")]) : .null,
                         "default_rho": .double(s == .karras ? 7.0 : s == .polyexponential ? 1.0 : -1),
                         "need_inner_model": .bool([.uniform, .sgmUniform, .simple, .normal, .ddim, .beta].contains(s))])
            }))
        }
        v1.get("sd-models") { _, _ -> Response in
            jsonResponse(.array(instance.library.list().map { c in
                .object(["title": .string(c.title), "model_name": .string(c.modelName), "hash": c.shortHash.map(JSONValue.string) ?? .null,
                         "sha256": c.sha256.map(JSONValue.string) ?? .null, "filename": .string(c.filename), "config": .null])
            }))
        }
        v1.get("loras") { _, _ -> Response in
            jsonResponse(.array(Self.files(in: instance.data.loraDir, extensions: ["safetensors", "pt", "ckpt"]).map { url in
                let name = url.deletingPathExtension().lastPathComponent
                let metadata = Self.networkMetadata(url)
                let alias = metadata["ss_output_name"].flatMap { if case .string(let s) = $0 { s } else { nil } } ?? name
                return .object(["name": .string(name), "alias": .string(alias), "path": .string(url.path), "metadata": .object(metadata)])
            }))
        }
        v1.get("embeddings") { _, _ -> Response in
            // loaded: readable embeddings (the loaded model's width, when one is loaded); skipped: the rest
            let (loaded, skipped) = instance.embeddings.embeddings(width: instance.loadedTextWidth)
            var l: [String: JSONValue] = [:], sk: [String: JSONValue] = [:]
            for e in loaded {
                l[e.name] = .object(["step": .null, "sd_checkpoint": .null, "sd_checkpoint_name": .null,
                                     "shape": .int(e.vectors.shape[1]), "vectors": .int(e.vectors.shape[0])])
            }
            for name in skipped {
                sk[name] = .object(["step": .null, "sd_checkpoint": .null, "sd_checkpoint_name": .null, "shape": .null, "vectors": .null])
            }
            return jsonResponse(.object(["loaded": .object(l), "skipped": .object(sk)]))
        }
        v1.post("extra-single-image") { request, _ -> Response in
            var request = request
            return jsonResponse(try ExtrasRequest.single(try await Self.jsonObject(&request, limit: maxBody)))
        }
        v1.post("extra-batch-images") { request, _ -> Response in
            var request = request
            return jsonResponse(try ExtrasRequest.batch(try await Self.jsonObject(&request, limit: maxBody)))
        }
        v1.get("sd-vae") { _, _ -> Response in
            jsonResponse(.array(instance.vaes.list().map { .object(["model_name": .string($0.name), "filename": .string($0.path)]) }))
        }
        for (path, value) in [("hypernetworks", JSONValue.array([])), ("face-restorers", .array([])),
                              ("realesrgan-models", .array([])), ("prompt-styles", .array([])),
                              ("script-info", .array([])), ("extensions", .array([])),
                              ("scripts", .object(["txt2img": .array([.string("controlnet")]), "img2img": .array([.string("controlnet")])])),
                              ("latent-upscale-modes", .array(HiresUpscaler.names.prefix(6).map { .object(["name": .string($0.0)]) })),
                              ("upscalers", .array(["None", "Lanczos", "Nearest"].map { name in
                                  .object(["name": .string(name), "model_name": .null, "model_path": .null, "model_url": .null, "scale": .int(4)])
                              }))] {
            v1.get(RouterPath(stringLiteral: path)) { _, _ -> Response in jsonResponse(value) }
        }
        // Every listing rescans its directory, so a refresh only has to answer; the checkpoint
        // refresh also hashes new files now rather than on the next request.
        v1.post("refresh-checkpoints") { _, _ -> Response in
            _ = instance.library.list()
            return jsonResponse(.null)
        }
        for path in ["refresh-vae", "refresh-loras", "refresh-embeddings"] {
            v1.post(RouterPath(stringLiteral: path)) { _, _ -> Response in jsonResponse(.null) }
        }
        v1.post("unload-checkpoint") { _, _ -> Response in
            instance.unloadCheckpoint()
            return jsonResponse(.object([:]))
        }
        v1.post("reload-checkpoint") { _, _ -> Response in jsonResponse(.object([:])) }
        v1.get("memory") { _, _ -> Response in jsonResponse(memory()) }
        router.get("internal/ping") { _, _ -> Response in jsonResponse(.object([:])) }
        // The WebUI's token counter: how A1111 would chunk this prompt (75 tokens per chunk).
        router.post("internal/token-count") { request, _ -> Response in
            var request = request
            let body = try await Self.jsonObject(&request, limit: 1 << 20)
            let prompt = body["prompt"]?.string ?? ""
            let chunks = PromptParser.chunks(prompt, tokenizer: .shared)
            let used = chunks.reduce(0) { n, c in n + c.tokens.dropFirst().dropLast().filter { $0 != CLIPTokenizer.eos }.count }
            return jsonResponse(.object(["tokens": .int(used), "chunks": .int(chunks.count), "max": .int(75 * chunks.count)]))
        }
    }

    /// A request body for the log: image data (long base64 strings) replaced by its size.
    static func redacted(_ v: JSONValue) -> JSONValue {
        switch v {
        case .string(let s) where s.count > 256 && (s.hasPrefix("data:") || s.allSatisfy { $0.isLetter || $0.isNumber || "+/=".contains($0) }):
            return .string("<\(s.count) characters of image data>")
        case .array(let a): return .array(a.map(redacted))
        case .object(let o): return .object(o.mapValues(redacted))
        default: return v
        }
    }

    /// A network file's safetensors metadata as A1111's `/loras` shows it: values that hold a JSON
    /// object (kohya's `ss_tag_frequency`, …) parsed, the rest as strings; none for `.pt` / `.ckpt`
    /// or an unreadable header.
    static func networkMetadata(_ url: URL) -> [String: JSONValue] {
        guard url.pathExtension.lowercased() == "safetensors", let raw = try? SafeTensorsFile.metadata(path: url.path) else { return [:] }
        return raw.mapValues { v in
            if v.hasPrefix("{"), let o = try? JSONSerialization.jsonObject(with: Data(v.utf8)), o is [String: Any] { return JSONValue(any: o) }
            return .string(v)
        }
    }

    /// Model files in a directory (recursively), sorted.
    static func files(in dir: URL, extensions: Set<String>) -> [URL] {
        guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else { return [] }
        return e.compactMap { $0 as? URL }.filter { extensions.contains($0.pathExtension.lowercased()) }
            .sorted { $0.path < $1.path }
    }

    /// The body as a JSON object, or FastAPI's 422 for non-JSON / non-object bodies.
    static func jsonObject(_ request: inout Request, limit: Int) async throws -> [String: JSONValue] {
        try jsonObject(Data(buffer: try await request.collectBody(upTo: limit)))
    }

    static func jsonObject(_ data: Data) throws -> [String: JSONValue] {
        if data.isEmpty { return [:] }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw ValidationFailure(problems: [FieldProblem(loc: [.string("body"), .int(0)], msg: "Expecting value: invalid JSON", type: "value_error.jsondecode")])
        }
        guard case .object(let o) = JSONValue(any: parsed) else {
            throw ValidationFailure(problems: [FieldProblem(loc: [.string("body")], msg: "value is not a valid dict", type: "type_error.dict")])
        }
        return o
    }

    /// The POST endpoints a queue worker can call, by request path (eas-queue-protocol.md §2.2).
    static let queueablePaths: Set<String> = ["/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/png-info",
                                              "/sdapi/v1/options", "/sdapi/v1/refresh-checkpoints"]

    /// Runs one POST endpoint on a body, as a queue worker does with an entry: the status and
    /// JSON the synchronous API would have answered for it.
    func respond(path: String, body: Data) async -> (status: Int, body: JSONValue) {
        do {
            let object = try Self.jsonObject(body)
            switch path {
            case "/sdapi/v1/txt2img": return (200, try await generate(object, img2img: false))
            case "/sdapi/v1/img2img": return (200, try await generate(object, img2img: true))
            case "/sdapi/v1/png-info": return (200, try pngInfo(object))
            case "/sdapi/v1/options": return (200, try setOptions(object))
            case "/sdapi/v1/refresh-checkpoints":
                _ = instance.library.list()
                return (200, .null)
            default: throw ServiceError(404, field: "path", "\(path) cannot be queued")
            }
        } catch {
            let r = errorResponse(error, maxBodyMB: configuration.maxBodyBytes >> 20)
            let status = Int(r.status.code)
            if status == 500 { logger.error("queued \(path) failed: \(error)") }
            return (status, Self.errorJSON(error, status: status))
        }
    }

    /// The error body `errorResponse` would send, as a value.
    static func errorJSON(_ error: Error, status: Int) -> JSONValue {
        switch error {
        case let e as ValidationFailure: return .object(["detail": .array(e.problems.map(\.json))])
        case let e as ServiceError: return APIError(status: e.status, error: "HTTPException", detail: e.detail).json
        case let e as RequestError:
            return .object(["detail": .array([FieldProblem(loc: [.string("body"), .string(e.field)], msg: e.message, type: "value_error").json])])
        case let e as APIError: return e.json
        default: return APIError(status: status, error: String(describing: type(of: error)), detail: "\(error)").json
        }
    }

    func setOptions(_ body: [String: JSONValue]) throws -> JSONValue {
        try instance.options.validate(body)
        var update = body
        if let vae = body["sd_vae"]?.string { try instance.vaes.validate(setting: vae, field: "sd_vae") }
        if let ckpt = body["sd_model_checkpoint"] {
            guard let name = ckpt.string else { throw ServiceError(422, field: "sd_model_checkpoint", "sd_model_checkpoint: a checkpoint name") }
            let info = try instance.checkpoint(named: name, field: "sd_model_checkpoint")
            update["sd_model_checkpoint"] = .string(info.title)
        }
        try instance.options.set(update)
        return .null
    }

    /// img2img's init images and mask given by URL (`alwayson_scripts.image_link`, `http(s)://` entries of
    /// `init_images`, `mask`) downloaded and put in place as base64, before the body is decoded.
    func fetchLinkedImages(_ body: [String: JSONValue]) async throws -> [String: JSONValue] {
        var body = body
        let fetcher = ImageFetcher(options: instance.options)
        if case .object(let scripts)? = body["alwayson_scripts"], let link = scripts["image_link"] {
            guard let url = link.string, !url.isEmpty else { throw ServiceError(422, field: "alwayson_scripts.image_link", "alwayson_scripts.image_link: a URL") }
            let data = try await fetcher.fetch(url, field: "alwayson_scripts.image_link")
            body["init_images"] = .array([.string(data.base64EncodedString())])
        } else if case .array(let inits)? = body["init_images"], inits.contains(where: { ImageFetcher.isURL($0.string ?? "") }) {
            var fetched: [JSONValue] = []
            for (i, v) in inits.enumerated() {
                if let s = v.string, ImageFetcher.isURL(s) {
                    fetched.append(.string(try await fetcher.fetch(s, field: "init_images[\(i)]").base64EncodedString()))
                } else {
                    fetched.append(v)
                }
            }
            body["init_images"] = .array(fetched)
        }
        if let mask = body["mask"]?.string, ImageFetcher.isURL(mask) {
            body["mask"] = .string(try await fetcher.fetch(mask, field: "mask").base64EncodedString())
        }
        return body
    }

    func generate(_ body: [String: JSONValue], img2img: Bool) async throws -> JSONValue {
        var body = img2img ? try await fetchLinkedImages(body) : body
        body = try await ControlNetUnits.fetchLinks(body, options: instance.options)
        let start = Date()
        if configuration.apiLog {
            logger.info("\(img2img ? "img2img" : "txt2img") request \(String(decoding: Self.redacted(.object(body)).data(), as: UTF8.self))")
        }
        let req = try Txt2ImgRequest.decode(body, instance: instance, img2img: img2img)
        let result: JobResult
        do {
            result = try await instance.txt2img(req.job)
        } catch let e as ServiceError {
            throw e
        } catch let e as RequestError {
            throw e
        } catch where req.eas != nil {
            // EAS callers see generation failures in the body (status 1), so queue sinks get them
            return .object(["images": .array([]), "info": .string(""), "parameters": .object([
                "id_task": req.eas?.idTask.map(JSONValue.string) ?? .null, "status": .int(1), "image_url": .string(""),
                "seed": .string(""), "error_msg": .string("\(error)"), "total_time": .double(Date().timeIntervalSince(start)),
                "image_mask_url": .string(""),
            ])])
        }
        logger.info("\(req.job.taskID) done: \(result.pngs.count) image(s), seeds \(result.seeds.map(String.init).joined(separator: ",")), \(String(format: "%.2f", result.seconds)) s")
        // the extension appends each unit's detected map after the pictures (unless control_net_no_detectmap)
        let maps = instance.options["control_net_no_detectmap"]?.any as? Bool == true ? [] : result.controlMaps
        let images: [JSONValue] = req.sendImages ? ((result.grid.map { [$0] } ?? []) + result.pngs + maps).map { .string($0.base64EncodedString()) } : []
        let r = req.job.request
        let seeds = result.seeds.map { JSONValue.int(Int($0)) }
        let subseeds = result.subseeds.map { JSONValue.int(Int($0)) }
        var info: JSONValue = .object([
            "prompt": .string(r.prompt), "all_prompts": .array(result.seeds.map { _ in .string(r.prompt) }),
            "negative_prompt": .string(r.negativePrompt), "all_negative_prompts": .array(result.seeds.map { _ in .string(r.negativePrompt) }),
            "seed": seeds.first ?? .null, "all_seeds": .array(seeds), "subseed": subseeds.first ?? .null, "all_subseeds": .array(subseeds),
            "subseed_strength": .double(r.subseedStrength), "width": .int(r.width), "height": .int(r.height), "sampler_name": .string(r.sampler.rawValue),
            "cfg_scale": .double(r.cfgScale), "steps": .int(r.steps), "batch_size": .int(r.batchSize), "restore_faces": .bool(false),
            "face_restoration_model": .null, "sd_model_name": .string(result.checkpoint.modelName),
            "sd_model_hash": result.checkpoint.shortHash.map(JSONValue.string) ?? .null, "sd_vae_name": result.vae.map { .string($0.name) } ?? .null,
            "sd_vae_hash": result.vae.map { .string($0.shortHash) } ?? .null,
            "seed_resize_from_w": .int(r.seedResizeFromW), "seed_resize_from_h": .int(r.seedResizeFromH),
            "denoising_strength": r.initImage != nil ? .double(r.denoisingStrength) : .null,
            "extra_generation_params": r.initImage != nil ? .object(["Denoising strength": .double(r.denoisingStrength)]) : .object([:]),
            "index_of_first_image": .int(result.grid == nil ? 0 : 1),
            "infotexts": .array(((result.gridInfotext.map { [$0] } ?? []) + result.infotexts).map(JSONValue.string)), "styles": .array([]), "job_timestamp": .string(result.jobTimestamp),
            "clip_skip": .int(r.clipSkip), "is_using_inpainting_conditioning": .bool(result.inpaintingConditioning), "version": .string("v1.10.1"),
        ])
        // a deployed instance says which one served (the cloud service's `info.hostname`)
        if let name = configuration.instanceName, case .object(var o) = info {
            o["hostname"] = .string(name)
            info = .object(o)
        }
        var parameters = req.echo
        if let eas = req.eas {
            func mountStyle(_ path: String) -> String {
                if case .mount(let prefix) = eas.saveDirStyle, path.hasPrefix(instance.data.root.path) {
                    return prefix + path.dropFirst(instance.data.root.path.count)
                }
                return path
            }
            let urls = result.savedPaths.map(mountStyle)
            parameters["id_task"] = eas.idTask.map(JSONValue.string) ?? .null
            parameters["status"] = .int(0)
            parameters["image_url"] = .string(urls.joined(separator: ","))
            parameters["seed"] = .string(result.seeds.map(String.init).joined(separator: ","))
            parameters["error_msg"] = .string("")
            parameters["total_time"] = .double(Date().timeIntervalSince(start))
            parameters["image_mask_url"] = .string(result.controlMapPaths.map(mountStyle).joined(separator: ","))
        }
        return .object(["images": .array(images), "parameters": .object(parameters),
                        "info": .string(String(decoding: info.data(), as: UTF8.self))])
    }

    func pngInfo(_ body: [String: JSONValue]) throws -> JSONValue {
        guard let image = body["image"]?.string, !image.isEmpty else {
            throw ValidationFailure(problems: [FieldProblem(loc: [.string("body"), .string("image")], msg: "field required", type: "value_error.missing")])
        }
        guard let data = base64Payload(image), ImageDecoder.format(of: data) != nil else {
            throw ValidationFailure(problems: [FieldProblem(loc: [.string("body"), .string("image")], msg: "not a base64-encoded PNG, JPEG or WebP image", type: "value_error")])
        }
        var text = ImageDecoder.format(of: data) == .png ? PNGText.read(data) : [:]
        let info = text.removeValue(forKey: "parameters") ?? ""
        var params: [String: JSONValue] = [
            "Clip skip": .string("1"), "Hires resize-1": .int(0), "Hires resize-2": .int(0), "Hires sampler": .string("Use same sampler"),
            "Hires checkpoint": .string("Use same checkpoint"), "Hires prompt": .string(""), "Hires negative prompt": .string(""),
            "Mask mode": .string("Inpaint masked"), "Masked content": .string("original"), "Inpaint area": .string("Whole picture"),
            "Masked area padding": .int(32), "RNG": .string("GPU"), "Schedule type": .string("Automatic"), "Schedule max sigma": .int(0),
            "Schedule min sigma": .int(0), "Schedule rho": .int(0), "VAE Encoder": .string("Full"), "VAE Decoder": .string("Full"),
            "FP8 weight": .string("Disable"),
        ]
        if !info.isEmpty {
            for (k, v) in Infotext.parse(info) { params[k] = .string(v) }
        } else {
            params["Prompt"] = .string("")
            params["Negative prompt"] = .string("")
        }
        return .object(["info": .string(info), "items": .object(text.mapValues(JSONValue.string)), "parameters": .object(params)])
    }

    func progress(skipImage: Bool) -> JSONValue {
        let s = instance.progress
        var preview: JSONValue = .null
        if !skipImage, let p = s.preview { preview = .string(p.base64EncodedString()) }
        return .object([
            "progress": .double(s.progress), "eta_relative": .double(s.etaRelative),
            "state": .object(["skipped": .bool(s.skipped), "interrupted": .bool(s.interrupted), "stopping_generation": .bool(false),
                              "job": .string(s.job), "job_count": .int(s.jobCount), "job_timestamp": .string(s.jobTimestamp),
                              "job_no": .int(s.jobNo), "sampling_step": .int(s.samplingStep), "sampling_steps": .int(s.samplingSteps)]),
            "current_image": preview, "textinfo": .null, "current_task": s.taskID.map(JSONValue.string) ?? .null,
        ])
    }

    func memory() -> JSONValue {
        var total = 0.0, available = 0.0
        if let meminfo = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in meminfo.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                guard parts.count >= 2, let kb = Double(parts[1]) else { continue }
                if parts[0] == "MemTotal:" { total = kb * 1024 }
                if parts[0] == "MemAvailable:" { available = kb * 1024 }
            }
        }
        return .object(["ram": .object(["free": .double(available), "used": .double(total - available), "total": .double(total)]),
                        "cuda": .object(["error": .string("unavailable: Atelier runs on the CPU")])])
    }
}
