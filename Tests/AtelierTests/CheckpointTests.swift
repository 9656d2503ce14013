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
        let inpaint = try safetensors("inp.safetensors", [("model.diffusion_model.input_blocks.0.0.weight", [320, 9, 3, 3])])
        #expect(loadError(inpaint)?.problem.contains("inpainting") == true)
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
