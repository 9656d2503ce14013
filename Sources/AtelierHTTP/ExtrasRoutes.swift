import AtelierDiffusion
import AtelierImaging
import AtelierService
import Foundation

/// A1111's Extras API (`/sdapi/v1/extra-single-image`, `/extra-batch-images`) with its built-in
/// pixel upscalers (Lanczos, Nearest): A1111's `run_extras` → the Upscale postprocessing script;
/// the output PNG keeps the input's text chunks and adds `postprocessing`, as A1111 saves it.
enum ExtrasRequest {
    /// The upscale settings of an extras body (A1111's field names and ranges, 422s naming them).
    static func decode(_ body: [String: JSONValue]) throws -> ExtrasUpscale {
        var f = Fields(body)
        var u = ExtrasUpscale()
        u.mode = f.int("resize_mode", 0)
        u.scale = f.double("upscaling_resize", 2)
        if case .int(let i)? = body["upscaling_resize"] { u.scaleText = String(i) } else { u.scaleText = pythonFloatText(u.scale) }
        u.width = f.int("upscaling_resize_w", 512)
        u.height = f.int("upscaling_resize_h", 512)
        u.crop = f.bool("upscaling_crop", true)
        let name1 = f.string("upscaler_1", "None"), name2 = f.string("upscaler_2", "None")
        u.upscaler2Visibility = f.double("extras_upscaler_2_visibility", 0)
        let gfpgan = f.double("gfpgan_visibility", 0), codeformer = f.double("codeformer_visibility", 0)
        _ = f.double("codeformer_weight", 0)
        _ = f.bool("upscale_first", false)
        _ = f.bool("show_extras_results", true)
        f.check("upscaling_resize", u.scale, min: 1, max: 8)
        f.check("upscaling_resize_w", u.width, min: 1, max: 8192)
        f.check("upscaling_resize_h", u.height, min: 1, max: 8192)
        for (k, v) in [("extras_upscaler_2_visibility", u.upscaler2Visibility), ("gfpgan_visibility", gfpgan), ("codeformer_visibility", codeformer)] {
            f.check(k, v, min: 0, max: 1)
        }
        guard f.problems.isEmpty else { throw ValidationFailure(problems: f.problems) }
        guard (0...1).contains(u.mode) else { throw ServiceError(422, field: "resize_mode", "resize_mode: 0 (scale by) or 1 (scale to)") }
        func upscaler(_ name: String, _ field: String) throws -> PixelUpscaler? {
            if name == "None" || name.isEmpty { return nil }
            if let u = PixelUpscaler(rawValue: name) { return u }
            throw ServiceError(422, field: field, "\(field): upscaler '\(name)' not found; Atelier has None, Lanczos and Nearest (model upscalers such as ESRGAN are not available yet)")
        }
        u.upscaler1 = try upscaler(name1, "upscaler_1")
        u.upscaler2 = try upscaler(name2, "upscaler_2")
        if gfpgan > 0 || codeformer > 0 {
            let field = gfpgan > 0 ? "gfpgan_visibility" : "codeformer_visibility"
            throw ServiceError(422, field: field, "\(field): face restoration (GFPGAN, CodeFormer) is not available in Atelier yet; set it to 0")
        }
        return u
    }

    static func pythonFloatText(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : String(d)
    }

    /// One picture through the upscaler: the PNG (base64) and the infotext.
    static func process(_ text: String, field: String, _ u: ExtrasUpscale) throws -> (png: String, info: String) {
        let image = try decodeImage(text, field: field)
        var chunks: [(String, String)] = []
        if let data = base64Payload(text), ImageDecoder.format(of: data) == .png {
            chunks = PNGText.read(data).sorted { $0.key == "parameters" && $1.key != "parameters" }.map { ($0.key, $0.value) }
        }
        let limit = 8192 * 8192
        let target = u.mode == 1 ? u.width * u.height : Int(Double(image.width) * u.scale) * Int(Double(image.height) * u.scale)
        if u.upscaler1 != nil && target > limit {
            throw ServiceError(422, field: u.mode == 1 ? "upscaling_resize_w" : "upscaling_resize", "the upscaled picture would exceed 8192 × 8192 pixels")
        }
        let (out, fields) = u.run(image)
        let info = fields.map { k, v in k == v ? k : "\(k): \(Infotext.quote(v))" }.joined(separator: ", ")
        chunks.removeAll { $0.0 == "postprocessing" }
        if !info.isEmpty { chunks.append(("postprocessing", info)) }
        return (try PNG.encode(out, text: chunks).base64EncodedString(), info)
    }

    /// A1111's `plaintext_to_html`.
    static func html(_ text: String) -> String {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
                .replacingOccurrences(of: "'", with: "&#x27;")
        }
        return "<p>" + text.split(separator: "\n", omittingEmptySubsequences: false).map { escape(String($0)) }.joined(separator: "<br>\n") + "</p>"
    }

    static func single(_ body: [String: JSONValue]) throws -> JSONValue {
        let u = try decode(body)
        guard let image = body["image"]?.string, !image.isEmpty else {
            throw ValidationFailure(problems: [FieldProblem(loc: [.string("body"), .string("image")], msg: "field required", type: "value_error.missing")])
        }
        let (png, info) = try process(image, field: "image", u)
        return .object(["html_info": .string(html(info)), "image": .string(png)])
    }

    static func batch(_ body: [String: JSONValue]) throws -> JSONValue {
        let u = try decode(body)
        guard case .array(let list)? = body["imageList"] else {
            throw ValidationFailure(problems: [FieldProblem(loc: [.string("body"), .string("imageList")], msg: "field required", type: "value_error.missing")])
        }
        var images: [JSONValue] = [], info = ""
        for (i, item) in list.enumerated() {
            guard case .object(let o) = item, let data = o["data"]?.string else {
                throw ServiceError(422, field: "imageList[\(i)].data", "imageList[\(i)].data: a base64 image")
            }
            let r = try process(data, field: "imageList[\(i)].data", u)
            images.append(.string(r.png))
            info = r.info
        }
        return .object(["html_info": .string(html(info)), "images": .array(images)])
    }
}
