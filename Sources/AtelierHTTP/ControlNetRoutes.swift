import AtelierDiffusion
import AtelierImaging
import AtelierService
import Foundation
import Hummingbird

/// ControlNet units of a request, read as sd-webui-controlnet 1.1.455 reads
/// `alwayson_scripts.controlnet.args[]` (also under the extension's title `ControlNet`), with
/// Atelier's rule for bad input: a 422 naming the field (the extension answers 500, or
/// silently generates without the unit).
enum ControlNetUnits {
    /// The extension's preprocessors that Atelier does not have (answered with a clear 422).
    static let otherModules: Set<String> = [
        "depth", "depth_midas", "depth_leres", "depth_leres++", "depth_zoe", "depth_anything", "depth_hand_refiner",
        "hed", "softedge_hed", "hed_safe", "softedge_hedsafe", "pidinet", "softedge_pidinet", "pidinet_safe",
        "softedge_pidisafe", "mlsd", "normal_map", "normal_midas", "normal_bae", "openpose", "openpose_face",
        "openpose_faceonly", "openpose_full", "openpose_hand", "dw_openpose_full", "animal_openpose", "scribble_hed",
        "scribble_pidinet", "scribble_xdog", "fake_scribble", "segmentation", "seg_ofade20k", "seg_ofcoco", "seg_ufade20k",
        "seg_anime_face", "shuffle", "lineart", "lineart_standard", "lineart_realistic", "lineart_coarse", "lineart_anime",
        "lineart_anime_denoise", "invert", "tile_resample", "tile_colorfix", "tile_colorfix+sharp", "reference_only",
        "reference_adain", "reference_adain+attn", "inpaint", "inpaint_global_harmonious", "inpaint_only", "inpaint_only+lama",
        "clip_vision", "t2ia_style_clipvision", "t2ia_color_grid", "t2ia_sketch_pidi", "color", "threshold", "binary",
        "recolor_luminance", "recolor_intensity", "blur_gaussian", "ip-adapter_clip_sd15", "ip-adapter_clip_sdxl",
        "instant_id_face_embedding", "densepose", "mediapipe_face", "revision_clipvision", "revision_ignore_prompt",
    ]

    /// The script key of a request's `alwayson_scripts`, if any (`controlnet` or `ControlNet`).
    static func key(in scripts: [String: JSONValue]) -> String? {
        scripts.keys.first { $0.lowercased() == "controlnet" }
    }

    /// Downloads each unit's `image_link` (the standard edition's fetch rules) into `image`.
    static func fetchLinks(_ body: [String: JSONValue], options: OptionsStore) async throws -> [String: JSONValue] {
        guard case .object(var scripts)? = body["alwayson_scripts"], let key = key(in: scripts),
              case .object(var script)? = scripts[key], case .array(var args)? = script["args"] else { return body }
        let fetcher = ImageFetcher(options: options)
        for (i, arg) in args.enumerated() {
            guard case .object(var unit) = arg, let link = unit["image_link"], link != .null else { continue }
            let field = "alwayson_scripts.\(key).args[\(i)].image_link"
            guard let url = link.string, !url.isEmpty else { throw ServiceError(422, field: field, "\(field): a URL") }
            unit["image"] = .string(try await fetcher.fetch(url, field: field).base64EncodedString())
            args[i] = .object(unit)
        }
        script["args"] = .array(args)
        scripts[key] = .object(script)
        var out = body
        out["alwayson_scripts"] = .object(scripts)
        return out
    }

    /// The enabled units, checked; `initImage` is img2img's (a unit without an image uses it).
    static func decode(_ value: JSONValue, key: String, library: ControlNetLibrary, initImage: Image8?) throws -> [ControlUnitRequest] {
        let base = "alwayson_scripts.\(key)"
        guard case .object(let script) = value else { throw ServiceError(422, field: base, "\(base): an object {\"args\": [unit, …]}") }
        let args: [JSONValue]
        switch script["args"] {
        case .array(let a)?: args = a
        case nil, .null?: args = []
        default: throw ServiceError(422, field: base + ".args", "\(base).args: a list of ControlNet units")
        }
        var units: [ControlUnitRequest] = []
        for (i, arg) in args.enumerated() {
            let prefix = "\(base).args[\(i)]"
            guard case .object(var u) = arg else { throw ServiceError(422, field: prefix, "\(prefix): a ControlNet unit object") }
            func problem(_ name: String, _ message: String) -> ServiceError {
                ServiceError(422, field: "\(prefix).\(name)", "\(prefix).\(name): \(message)")
            }
            // the extension's legacy aliases
            for (old, new) in [("input_image", "image"), ("guidance", "guidance_end"), ("lowvram", "low_vram")] {
                if let v = u.removeValue(forKey: old) {
                    if u[new] != nil && u[new] != .null && v != .null { throw problem(old, "conflicts with '\(new)'") }
                    u[new] = v
                }
            }
            func bool(_ name: String, _ fallback: Bool) throws -> Bool {
                switch u[name] {
                case nil, .null?: return fallback
                case .bool(let b)?: return b
                case .int(let n)? where n == 0 || n == 1: return n == 1
                default: throw problem(name, "true or false")
                }
            }
            func number(_ name: String, _ fallback: Double) throws -> Double {
                switch u[name] {
                case nil, .null?: return fallback
                case let v?:
                    guard let d = v.double ?? v.string.flatMap(Double.init), d.isFinite else { throw problem(name, "a number") }
                    return d
                }
            }
            func text(_ name: String, _ fallback: String) throws -> String {
                switch u[name] {
                case nil, .null?: return fallback
                case .string(let s)?: return s
                case .int(let n)?: return String(n)
                default: throw problem(name, "a string")
                }
            }
            guard try bool("enabled", false) else { continue }  // the extension's default: a unit must say enabled

            let moduleName = try text("module", "none")
            guard let module = ControlModule(rawValue: moduleName) else {
                if otherModules.contains(moduleName) {
                    throw problem("module", "preprocessor '\(moduleName)' is not available in Atelier yet; use one of \(ControlModule.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                throw problem("module", "module(\(moduleName)) not found in supported modules.")
            }
            let modelName = try text("model", "None")
            guard modelName != "None", !modelName.isEmpty else { throw problem("model", "You have not selected any ControlNet Model.") }
            guard let model = library.resolve(modelName) else {
                let known = library.list().map(\.title)
                throw problem("model", "model not found: '\(modelName)'" + (known.isEmpty
                    ? "; no ControlNet models are installed (put one into models/ControlNet)"
                    : "; installed: \(known.joined(separator: ", "))"))
            }
            let weight = try number("weight", 1)
            guard (0...2).contains(weight) else { throw problem("weight", "ensure this value is between 0 and 2") }
            let start = try number("guidance_start", 0), end = try number("guidance_end", 1)
            guard (0...1).contains(start) else { throw problem("guidance_start", "ensure this value is between 0 and 1") }
            guard (0...1).contains(end) else { throw problem("guidance_end", "ensure this value is between 0 and 1") }
            guard start <= end else { throw problem("guidance_start", "guidance_start(\(start)) > guidance_end(\(end))") }
            let resizeName = try text("resize_mode", ControlResizeMode.cropAndResize.rawValue)
            guard let resizeMode = ControlResizeMode(api: resizeName) else {
                throw problem("resize_mode", "'\(resizeName)' is not one of \(ControlResizeMode.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", "))")
            }
            let modeName = try text("control_mode", ControlMode.balanced.rawValue)
            guard let controlMode = ControlMode(api: modeName) else {
                throw problem("control_mode", "'\(modeName)' is not one of \(ControlMode.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", "))")
            }
            let inputMode = try text("input_mode", "simple")
            guard inputMode == "simple" else { throw problem("input_mode", "'\(inputMode)' (batch / merge inputs) is not available in Atelier yet; use 'simple'") }
            if try bool("loopback", false) { throw problem("loopback", "loopback is not available in Atelier yet") }

            // the image: base64 (raw or data: URL), {"image", "mask"}, [image, mask]; never a server path
            var imageText: String?
            switch u["image"] {
            case .string(let s)?: imageText = s.isEmpty ? nil : s
            case .object(let o)?: imageText = o["image"]?.string
            case .array(let a)?: imageText = a.first?.string
            case nil, .null?: imageText = nil
            default: throw problem("image", "a base64 image")
            }
            if let mask = u["mask"] ?? u["mask_image"], mask != .null, mask != .string("") {
                throw problem("mask", "ControlNet masks are not available in Atelier yet")
            }
            let image: Image8
            if let imageText {
                image = try decodeImage(imageText, field: "\(prefix).image")
            } else if let initImage {
                image = initImage
            } else {
                throw problem("image", "controlnet is enabled but no input image is given (image, input_image or image_link)")
            }

            var unit = ControlUnitRequest(model: model, module: module, image: image)
            unit.resizeMode = resizeMode
            unit.processorRes = try number("processor_res", -1)
            unit.thresholdA = try number("threshold_a", -1)
            unit.thresholdB = try number("threshold_b", -1)
            unit.pixelPerfect = try bool("pixel_perfect", false)
            unit.weight = weight
            unit.guidanceStart = start
            unit.guidanceEnd = end
            unit.controlMode = controlMode
            unit.index = i
            unit.requestedModel = modelName
            units.append(unit)
        }
        return units
    }
}

/// The extension's own routes (`/controlnet/*`, scripts/api.py), for clients that ask which
/// models and preprocessors exist or run a preprocessor alone.
struct ControlNetRoutes {
    let instance: Instance
    let configuration: ServerConfiguration

    func register(on router: Router<BasicRequestContext>) {
        let cn = router.group("controlnet")
        cn.get("version") { _, _ -> Response in jsonResponse(.object(["version": .int(3)])) }
        cn.get("model_list") { _, _ -> Response in
            jsonResponse(.object(["model_list": .array(instance.controlNets.list().map { .string($0.title) })]))
        }
        cn.get("module_list") { _, _ -> Response in
            var detail: [String: JSONValue] = [:]
            for m in ControlModule.allCases {
                detail[m.rawValue] = .object(["model_free": .bool(false), "sliders": .array(m.sliders.map { s in
                    .object(["name": .string(s.name), "value": .double(s.value), "min": .double(s.min), "max": .double(s.max), "step": .double(s.step)])
                })])
            }
            // "none" first, then by the extension's priority (canny 100 > none 10)
            return jsonResponse(.object(["module_list": .array([.string("none"), .string("canny")]), "module_detail": .object(detail)]))
        }
        cn.get("settings") { _, _ -> Response in jsonResponse(.object(["control_net_unit_count": .int(3)])) }
        cn.post("detect") { request, _ -> Response in
            var request = request
            let body = try await SDAPIRoutes.jsonObject(&request, limit: configuration.maxBodyBytes)
            return jsonResponse(try detect(body))
        }
    }

    /// Runs a preprocessor on each image at its processor resolution (no fitting to a size).
    func detect(_ body: [String: JSONValue]) throws -> JSONValue {
        let moduleName = body["controlnet_module"]?.string ?? "none"
        guard let module = ControlModule(rawValue: moduleName) else {
            if ControlNetUnits.otherModules.contains(moduleName) {
                throw ServiceError(422, field: "controlnet_module", "controlnet_module: preprocessor '\(moduleName)' is not available in Atelier yet")
            }
            throw ServiceError(422, field: "controlnet_module", "Module not available")
        }
        let field = body["controlnet_input_images"] != nil ? "controlnet_input_images" : "controlnet_images"
        guard case .array(let images)? = body[field], !images.isEmpty else {
            throw ServiceError(422, field: "controlnet_input_images", "No image selected")
        }
        func number(_ name: String) throws -> Double {
            guard let v = body[name], v != .null else { return -1 }
            guard let d = v.double, d.isFinite else { throw ServiceError(422, field: name, "\(name): a number") }
            return d
        }
        let res = try number("controlnet_processor_res"), a = try number("controlnet_threshold_a"), b = try number("controlnet_threshold_b")
        var out: [JSONValue] = []
        for (i, v) in images.enumerated() {
            guard let text = v.string else { throw ServiceError(422, field: "\(field)[\(i)]", "\(field)[\(i)]: a base64 image") }
            let image = ControlPreprocessor.hwc3(try decodeImage(text, field: "\(field)[\(i)]"))
            let detected: Image8
            switch module {
            case .none: detected = image
            case .canny:
                detected = ControlPreprocessor.canny(image, resolution: res >= 64 && res <= 2048 ? Int(res) : 512,
                                                     low: a >= 1 && a <= 255 ? a : 100, high: b >= 1 && b <= 255 ? b : 200)
            }
            out.append(.string(try PNG.encode(detected).base64EncodedString()))
        }
        return .object(["images": .array(out), "info": .string("Success")])
    }
}
