import AtelierDiffusion
import AtelierService
import Foundation
import Hummingbird

/// `/openapi.json` and `/docs`: the API described from what the routes decode — the body fields
/// and defaults are `Txt2ImgRequest.defaults` / `img2imgDefaults` (the same tables the decoder
/// fills missing fields from and echoes in `parameters`), the sampler and scheduler names the
/// decoder accepts, and the route table below, which lists every route `SDAPIRoutes`,
/// `ControlNetRoutes`, `ExtrasRoutes` and the queue register.
enum OpenAPI {
    struct Route {
        let method: String
        let path: String
        let summary: String
        let body: String?
    }

    static let routes: [Route] = [
        Route(method: "post", path: "/sdapi/v1/txt2img", summary: "Text to image", body: "StableDiffusionTxt2ImgProcessingAPI"),
        Route(method: "post", path: "/sdapi/v1/img2img", summary: "Image to image (init_images, mask, resize modes)", body: "StableDiffusionImg2ImgProcessingAPI"),
        Route(method: "post", path: "/sdapi/v1/extra-single-image", summary: "Upscale one image (Lanczos, Nearest)", body: "ExtrasSingleImageRequest"),
        Route(method: "post", path: "/sdapi/v1/extra-batch-images", summary: "Upscale several images", body: "ExtrasBatchImagesRequest"),
        Route(method: "post", path: "/sdapi/v1/png-info", summary: "Infotext of a PNG", body: "PNGInfoRequest"),
        Route(method: "get", path: "/sdapi/v1/progress", summary: "Progress of the running job, with a preview", body: nil),
        Route(method: "post", path: "/sdapi/v1/interrupt", summary: "Stop the running job", body: nil),
        Route(method: "post", path: "/sdapi/v1/skip", summary: "Skip the running image", body: nil),
        Route(method: "get", path: "/sdapi/v1/options", summary: "Settings", body: nil),
        Route(method: "post", path: "/sdapi/v1/options", summary: "Change settings (persisted in config.json)", body: "Options"),
        Route(method: "get", path: "/sdapi/v1/cmd-flags", summary: "Launch flags", body: nil),
        Route(method: "get", path: "/sdapi/v1/samplers", summary: "Samplers", body: nil),
        Route(method: "get", path: "/sdapi/v1/schedulers", summary: "Schedule types", body: nil),
        Route(method: "get", path: "/sdapi/v1/upscalers", summary: "Upscalers", body: nil),
        Route(method: "get", path: "/sdapi/v1/latent-upscale-modes", summary: "Latent upscale modes", body: nil),
        Route(method: "get", path: "/sdapi/v1/sd-models", summary: "Checkpoints", body: nil),
        Route(method: "get", path: "/sdapi/v1/sd-vae", summary: "VAE files", body: nil),
        Route(method: "get", path: "/sdapi/v1/loras", summary: "LoRA files", body: nil),
        Route(method: "get", path: "/sdapi/v1/embeddings", summary: "Textual-inversion embeddings", body: nil),
        Route(method: "get", path: "/sdapi/v1/hypernetworks", summary: "Hypernetworks (none)", body: nil),
        Route(method: "get", path: "/sdapi/v1/face-restorers", summary: "Face restorers (none)", body: nil),
        Route(method: "get", path: "/sdapi/v1/realesrgan-models", summary: "Real-ESRGAN models (none)", body: nil),
        Route(method: "get", path: "/sdapi/v1/prompt-styles", summary: "Prompt styles", body: nil),
        Route(method: "get", path: "/sdapi/v1/scripts", summary: "Scripts", body: nil),
        Route(method: "get", path: "/sdapi/v1/script-info", summary: "Script arguments", body: nil),
        Route(method: "get", path: "/sdapi/v1/extensions", summary: "Extensions", body: nil),
        Route(method: "post", path: "/sdapi/v1/refresh-checkpoints", summary: "Rescan checkpoints", body: nil),
        Route(method: "post", path: "/sdapi/v1/refresh-vae", summary: "Rescan VAE files", body: nil),
        Route(method: "post", path: "/sdapi/v1/refresh-loras", summary: "Rescan LoRA files", body: nil),
        Route(method: "post", path: "/sdapi/v1/refresh-embeddings", summary: "Rescan embeddings", body: nil),
        Route(method: "post", path: "/sdapi/v1/unload-checkpoint", summary: "Free the loaded checkpoint", body: nil),
        Route(method: "post", path: "/sdapi/v1/reload-checkpoint", summary: "Load the checkpoint again", body: nil),
        Route(method: "get", path: "/sdapi/v1/memory", summary: "Memory use", body: nil),
        Route(method: "get", path: "/controlnet/version", summary: "ControlNet extension version", body: nil),
        Route(method: "get", path: "/controlnet/model_list", summary: "ControlNet models", body: nil),
        Route(method: "get", path: "/controlnet/module_list", summary: "ControlNet preprocessors", body: nil),
        Route(method: "get", path: "/controlnet/settings", summary: "ControlNet settings", body: nil),
        Route(method: "post", path: "/controlnet/detect", summary: "Run a preprocessor", body: nil),
        Route(method: "get", path: "/internal/ping", summary: "Liveness (no token)", body: nil),
        Route(method: "post", path: "/internal/token-count", summary: "Prompt token count", body: nil),
        Route(method: "post", path: "/api/predict/{service}/{path}", summary: "API edition: put into the input queue (returns the index)", body: nil),
        Route(method: "get", path: "/api/predict/{service}/sink", summary: "API edition: get / watch (WebSocket) the sink", body: nil),
    ]

    /// A JSON-schema property from a field's default value (`null` defaults are typed by name).
    static func schema(_ key: String, _ value: JSONValue) -> JSONValue {
        var s: [String: JSONValue] = [:]
        switch value {
        case .bool: s["type"] = .string("boolean")
        case .int: s["type"] = .string("integer")
        case .double: s["type"] = .string("number")
        case .string: s["type"] = .string("string")
        case .array: s["type"] = .string("array")
        case .object: s["type"] = .string("object")
        case .null:
            let numbers: Set<String> = ["eta", "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise", "refiner_switch_at",
                                        "image_cfg_scale", "initial_noise_multiplier", "mask_blur"]
            let bools: Set<String> = ["restore_faces", "tiling"]
            s["type"] = .string(numbers.contains(key) ? "number" : bools.contains(key) ? "boolean" : key == "init_images" ? "array" : "string")
            s["nullable"] = .bool(true)
        }
        if value != .null { s["default"] = value }
        if key == "sampler_name" || key == "sampler_index" || key == "hr_sampler_name" {
            s["enum"] = .array(Txt2ImgRequest.a1111Samplers.map(JSONValue.string))
        }
        if key == "scheduler" || key == "hr_scheduler" {
            s["description"] = .string("one of " + Txt2ImgRequest.a1111Schedulers.joined(separator: ", ") + " (or its label)")
        }
        if key == "alwayson_scripts" {
            s["description"] = .string("extensions' arguments, and the EAS keys save_dir, sd_model_checkpoint, sd_vae, image_link, id_task, uid, controlnet")
        }
        return .object(s)
    }

    static func object(_ fields: [String: JSONValue]) -> JSONValue {
        .object(["type": .string("object"), "properties": .object(Dictionary(uniqueKeysWithValues: fields.map { ($0.key, schema($0.key, $0.value)) }))])
    }

    static func document(version: String = "1.10.1") -> JSONValue {
        var img2img = Txt2ImgRequest.defaults
        for k in ["enable_hr", "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x",
                  "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt"] {
            img2img.removeValue(forKey: k)
        }
        for (k, v) in Txt2ImgRequest.img2imgDefaults { img2img[k] = v }
        let extras: [String: JSONValue] = ["resize_mode": .int(0), "show_extras_results": .bool(true), "gfpgan_visibility": .double(0),
                                           "codeformer_visibility": .double(0), "codeformer_weight": .double(0), "upscaling_resize": .double(2),
                                           "upscaling_resize_w": .int(512), "upscaling_resize_h": .int(512), "upscaling_crop": .bool(true),
                                           "upscaler_1": .string("None"), "upscaler_2": .string("None"), "extras_upscaler_2_visibility": .double(0),
                                           "upscale_first": .bool(false)]
        var single = extras
        single["image"] = .string("")
        var batch = extras
        batch["imageList"] = .array([])
        var paths: [String: [String: JSONValue]] = [:]
        for r in routes {
            var op: [String: JSONValue] = ["summary": .string(r.summary),
                                           "responses": .object(["200": .object(["description": .string("Successful Response")]),
                                                                 "422": .object(["description": .string("Validation Error (FastAPI's shape: detail[].loc names the field)")])])]
            if let body = r.body {
                op["requestBody"] = .object(["required": .bool(true), "content": .object(["application/json": .object(["schema": .object(["$ref": .string("#/components/schemas/\(body)")])])])])
            }
            paths[r.path, default: [:]][r.method] = .object(op)
        }
        return .object([
            "openapi": .string("3.0.2"),
            "info": .object(["title": .string("Atelier (AUTOMATIC1111 API)"), "version": .string(version)]),
            "paths": .object(paths.mapValues { JSONValue.object($0) }),
            "components": .object([
                "schemas": .object([
                    "StableDiffusionTxt2ImgProcessingAPI": object(Txt2ImgRequest.defaults),
                    "StableDiffusionImg2ImgProcessingAPI": object(img2img),
                    "ExtrasSingleImageRequest": object(single),
                    "ExtrasBatchImagesRequest": object(batch),
                    "PNGInfoRequest": object(["image": .string("")]),
                    "Options": .object(["type": .string("object"), "additionalProperties": .bool(true)]),
                ]),
                "securitySchemes": .object(["token": .object(["type": .string("apiKey"), "in": .string("header"), "name": .string("Authorization")])]),
            ]),
            "security": .array([.object(["token": .array([])])]),
        ])
    }

    /// A self-contained page that lists the operations and their body fields (no CDN: the
    /// service may have no internet access).
    static let docsPage = """
    <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Atelier API</title>
    <style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}code{background:#eee;padding:0 .3em}
    h2{margin-top:1.5em}details{margin:.3em 0}table{border-collapse:collapse}td{border-bottom:1px solid #ddd;padding:2px 8px;vertical-align:top}</style></head>
    <body><h1>Atelier API</h1><p>The AUTOMATIC1111 1.10 API. Machine-readable: <a href="openapi.json">openapi.json</a>.
    With a token, send it as the <code>Authorization</code> header.</p><div id="ops">Loading…</div>
    <script>
    const headers = {}; const t = sessionStorage.getItem('atelier_token'); if (t) headers.Authorization = t;
    fetch('openapi.json', {headers, credentials: 'same-origin'}).then(r => r.ok ? r.json() : Promise.reject(r.status)).then(doc => {
      const out = [];
      for (const [path, ops] of Object.entries(doc.paths).sort()) for (const [m, op] of Object.entries(ops)) {
        let rows = '';
        const ref = op.requestBody && op.requestBody.content['application/json'].schema.$ref;
        if (ref) { const s = doc.components.schemas[ref.split('/').pop()];
          for (const [k, p] of Object.entries(s.properties || {}).sort()) rows += `<tr><td><code>${k}</code></td><td>${p.type}${p.nullable ? ' | null' : ''}</td><td>${p.default === undefined ? '' : JSON.stringify(p.default)}</td></tr>`; }
        out.push(`<details><summary><code>${m.toUpperCase()} ${path}</code> — ${op.summary}</summary>${rows ? '<table>' + rows + '</table>' : ''}</details>`);
      }
      document.getElementById('ops').innerHTML = out.join('');
    }).catch(s => { document.getElementById('ops').textContent = 'openapi.json answered ' + s + ' (a token is needed: log in through the WebUI first).'; });
    </script></body></html>
    """

    static func register(on router: Router<BasicRequestContext>) {
        let doc = document().data()
        router.get("openapi.json") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(data: doc)))
        }
        router.get("docs") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/html; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: docsPage)))
        }
    }
}
