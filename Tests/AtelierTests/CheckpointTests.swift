import AtelierDiffusion
import AtelierModels
import AtelierTensor
import Foundation
import Testing

/// Bad files and bad requests give clear errors naming the file or field.
struct CheckpointTests {
    let tmp: URL = {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("atelier-tests-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }()

    /// Writes a safetensors file with the given (name, shape) f32 tensors of zeros.
    func safetensors(_ name: String, _ tensors: [(String, [Int])], headerPatch: ((String) -> String)? = nil) throws -> String {
        var offset = 0
        var entries: [String] = []
        for (k, shape) in tensors {
            let n = shape.reduce(1, *) * 4
            entries.append("\"\(k)\":{\"dtype\":\"F32\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + n)]}")
            offset += n
        }
        var header = "{" + entries.joined(separator: ",") + "}"
        if let headerPatch { header = headerPatch(header) }
        var data = Data()
        var len = UInt64(header.utf8.count).littleEndian
        data.append(Data(bytes: &len, count: 8))
        data.append(header.data(using: .utf8)!)
        data.append(Data(count: offset))
        let path = tmp.appendingPathComponent(name).path
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    func loadError(_ path: String) -> ModelFileError? {
        do { _ = try StableDiffusionModel(path: path); return nil } catch let e as ModelFileError { return e } catch { return nil }
    }

    @Test func truncatedFileIsAnErrorNamingTheFile() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.checkpoint))
        let path = tmp.appendingPathComponent("cut.safetensors").path
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        let e = try #require(loadError(path))
        #expect(e.file == "cut.safetensors")
        #expect(e.problem.contains("exceed"))
    }

    @Test func headerThatLiesAboutSizesIsRejected() throws {
        let path = try safetensors("liar.safetensors", [("a", [4, 4])]) { $0.replacingOccurrences(of: "[4,4]", with: "[40,4]") }
        let e = try #require(loadError(path))
        #expect(e.file == "liar.safetensors")
        #expect(e.problem.contains("shape [40, 4]"))
        let tiny = tmp.appendingPathComponent("short.safetensors")
        try Data([200, 0, 0, 0, 0, 0, 0, 0, 123]).write(to: tiny)
        #expect(loadError(tiny.path)?.problem.contains("header length") == true)
    }

    @Test func recognisedButUnsupportedArchitecturesAreNamed() throws {
        let xl = try safetensors("xl.safetensors", [("conditioner.embedders.1.model.ln_final.weight", [4]), ("model.diffusion_model.input_blocks.0.0.weight", [4, 4, 3, 3])])
        #expect(loadError(xl)?.problem.contains("Stable Diffusion XL") == true)
        // an inpainting UNet is loaded (here it fails later, on its first missing tensor)
        let inpaint = try safetensors("inp.safetensors", [("model.diffusion_model.input_blocks.0.0.weight", [320, 9, 3, 3])])
        #expect(loadError(inpaint)?.problem.contains("missing tensor") == true)
        let lora = try safetensors("lora.safetensors", [("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", [4, 320])])
        #expect(loadError(lora)?.problem.contains("models/Lora") == true)
        let vae = try safetensors("vae.safetensors", [("decoder.conv_in.weight", [4, 4, 3, 3]), ("encoder.conv_in.weight", [4, 4, 3, 3])])
        #expect(loadError(vae)?.problem.contains("models/VAE") == true)
    }

    @Test func missingWeightIsNamedWithItsKey() throws {
        let path = try safetensors("partial.safetensors", [("model.diffusion_model.input_blocks.0.0.weight", [320, 4, 3, 3])])
        let e = try #require(loadError(path))
        #expect(e.problem.contains("missing tensor"))
    }

    @Test func widthNotAMultipleOf8IsARequestErrorNamingTheField() {
        var r = GenerationRequest()
        r.width = 500
        #expect(throws: RequestError(field: "width", "width must be a multiple of 8")) { try r.validate() }
        r.width = 512
        r.height = 0
        #expect((try? r.validate()) == nil)
        r.height = 512
        r.steps = 0
        #expect(throws: RequestError.self) { try r.validate() }
    }

    @Test func samplerNamesAliasesAndLegacyCombinedNamesResolve() {
        #expect(Sampler.resolve("euler a")?.0 == .eulerA)
        #expect(Sampler.resolve("k_dpmpp_2m")?.0 == .dpmpp2m)
        #expect(Sampler.resolve("DPM++ 2M Karras")! == (.dpmpp2m, .automatic))
        #expect(Sampler.resolve("Euler Karras")! == (.euler, .karras))
        #expect(Sampler.resolve("Nope") == nil)
        #expect(Scheduler(label: "karras") == .karras)
    }
}

/// Key layouts A1111 accepts load to the same model.
@Suite(.serialized) struct CheckpointKeyLayoutTests {
    /// Copies the tiny checkpoint with every key passed through `rename` (and extra tensors added).
    func rewrite(_ name: String, rename: (String) -> String, extra: [String: Any] = [:]) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.checkpoint))
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        var renamed: [String: Any] = [:]
        for (k, v) in header where k != "__metadata__" { renamed[rename(k)] = v }
        var body = data.subdata(in: (8 + n)..<data.count)
        for (k, v) in extra {  // 0-d float32 tensors appended at the end
            var value = (v as! Float).bitPattern.littleEndian
            renamed[k] = ["dtype": "F32", "shape": [Int](), "data_offsets": [body.count, body.count + 4]]
            body.append(Data(bytes: &value, count: 4))
        }
        header = renamed
        let h = try JSONSerialization.data(withJSONObject: header)
        var out = Data()
        var len = UInt64(h.count).littleEndian
        out.append(Data(bytes: &len, count: 8))
        out.append(h)
        out.append(body)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atelier-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent(name + ".safetensors").path
        try out.write(to: URL(fileURLWithPath: path))
        // the yaml / json sidecars travel with the checkpoint, as A1111 expects
        for ext in ["yaml", "json"] {
            try FileManager.default.copyItem(atPath: Fixtures.checkpoint.replacingOccurrences(of: ".safetensors", with: ".\(ext)"),
                                             toPath: dir.appendingPathComponent(name + ".\(ext)").path)
        }
        return path
    }

    func conditioning(_ path: String) throws -> [Float] {
        let p = Pipeline(model: try StableDiffusionModel(path: path))
        return p.encode("a photo of a (cat:1.2)", clipSkip: 1).0.scalars
    }

    @Test func stateDictWrapperTextModelLessKeysAndEMAWeightsLoadToTheSameModel() throws {
        let reference = try conditioning(Fixtures.checkpoint)
        // same weights ⇒ the same conditioning, bit for bit
        func same(_ a: [Float]) -> Bool { a == reference }
        let wrapped = try rewrite("wrapped", rename: { "state_dict." + $0 })
        #expect(same(try conditioning(wrapped)))
        let flat = try rewrite("flat", rename: { $0.replacingOccurrences(of: "cond_stage_model.transformer.text_model.", with: "cond_stage_model.transformer.") },
                               extra: ["model_ema.diffusion_modelinput_blocks00weight": Float(1)])
        #expect(same(try conditioning(flat)))
    }

    @Test func anUnexpectedTensorIsAnErrorNamingItsKeyAndShape() throws {
        let odd = try rewrite("odd", rename: { $0 }, extra: ["model.diffusion_model.extra_thing.weight": Float(1)])
        do {
            _ = try StableDiffusionModel(path: odd)
            Issue.record("loading should fail")
        } catch let e as ModelFileError {
            #expect(e.file == "odd.safetensors")
            #expect(e.problem.contains("model.diffusion_model.extra_thing.weight") && e.problem.contains("[]"))
        }
    }
}
