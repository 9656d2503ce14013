import AtelierDiffusion
import AtelierModels
import AtelierService
import AtelierTensor
import Foundation
import Testing

/// Separate VAE files (Tests/Fixtures/vae, tools/make_vae_fixtures.py): loaded as A1111 loads
/// them into the checkpoint's first stage, refused with the tensor's name when they do not fit,
/// chosen as A1111's `resolve_vae` chooses, and named in the infotext.
@Suite struct VAEFileTests {
    static let dir = Fixtures.root.appendingPathComponent("vae")
    static let safetensors = dir.appendingPathComponent("tiny-vae-ft.safetensors").path
    static let config = Fixtures.model.vaeDecoder.config

    @Test func pickledVAEWithLossAndEMAKeysHoldsItsSafetensorsTwinsWeightsBitForBit() throws {
        let a = try VAEFile(path: Self.safetensors, config: Self.config)
        let b = try VAEFile(path: Self.dir.appendingPathComponent("tiny-vae-ft.pt").path, config: Self.config)
        let z = Tensor(shape: [1, 4, 8, 8], data: (0..<256).map { Float(sin(Double($0) * 0.37)) })
        // the same weights, bit for bit, under the same names (the .pt's extra keys are loss.* and
        // the EMA counters, which the loader drops); compared as tensors, not through a decode whose
        // BLAS summation order varies when suites run in parallel
        let st = try SafeTensorsFile(path: Self.safetensors), pt = try PickledTensors(path: Self.dir.appendingPathComponent("tiny-vae-ft.pt").path)
        let ptWeights = WeightStore(file: pt).canonicalNames.filter { !$0.hasPrefix("loss.") && !$0.hasPrefix("model_ema.") }
        #expect(Set(ptWeights) == Set(st.names) && !st.names.isEmpty)
        for k in st.names { #expect(try st.tensor(k).scalars == (try pt.tensor("state_dict." + k)).scalars, "tensor \(k)") }
        #expect(relativeL2(Fixtures.model.vaeDecoder(z).scalars, a.decoder(z).scalars.map(Double.init)) > 0.1,
                "the file must replace the checkpoint's VAE")
        #expect(b.sha256 != a.sha256)
        #expect(a.name == "tiny-vae-ft.safetensors" && a.shortHash == "45f0710e87")
    }

    @Test func vaeOfAnotherShapeIsRefusedNamingTheTensor() {
        #expect {
            _ = try VAEFile(path: Self.dir.appendingPathComponent("tiny-vae-wrong-size.safetensors").path, config: Self.config)
        } throws: { e in
            let d = "\(e)"
            return d.contains("tiny-vae-wrong-size.safetensors") && d.contains("decoder.conv_in.weight") && d.contains("[67, 4, 3, 3]")
        }
        #expect {
            _ = try VAEFile(path: Fixtures.checkpoint, config: Self.config)
        } throws: { e in "\(e)".contains("not a VAE") }
    }

    @Test func infotextNamesTheVAEFileAfterTheModel() throws {
        var r = GenerationRequest()
        r.prompt = "a cat"
        r.seed = 1
        r.steps = 2
        r.width = 64
        r.height = 64
        r.vae = try VAEFile(path: Self.safetensors, config: Self.config)
        let text = Fixtures.pipeline.infotext(r, seed: 1)
        #expect(text.contains("Model: tiny-sd15, VAE hash: 45f0710e87, VAE: tiny-vae-ft.safetensors,"))
        r.vae = nil
        #expect(!Fixtures.pipeline.infotext(r, seed: 1).contains("VAE"))
    }

    @Test func settingPicksTheSidecarForAutomaticTheNamedFileOrNone() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("atelier-vae-\(UUID().uuidString)")
        let vaeDir = tmp.appendingPathComponent("VAE"), ckptDir = tmp.appendingPathComponent("Stable-diffusion")
        for d in [vaeDir, ckptDir] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.copyItem(atPath: Self.safetensors, toPath: vaeDir.appendingPathComponent("ft.safetensors").path)
        let ckpt = ckptDir.appendingPathComponent("model.safetensors").path
        let lib = VAELibrary(directories: [vaeDir], checkpointDirectory: ckptDir)
        #expect(try lib.resolve(setting: "Automatic", checkpointPath: ckpt, field: "sd_vae") == nil)
        try FileManager.default.copyItem(atPath: Self.safetensors, toPath: ckptDir.appendingPathComponent("model.vae.safetensors").path)
        #expect(try lib.resolve(setting: "Automatic", checkpointPath: ckpt, field: "sd_vae")?.name == "model.vae.safetensors")
        #expect(try lib.resolve(setting: "ft.safetensors", checkpointPath: ckpt, field: "sd_vae")?.name == "ft.safetensors")
        #expect(try lib.resolve(setting: "None", checkpointPath: ckpt, field: "sd_vae") == nil)
        #expect(Set(lib.list().map(\.name)) == ["ft.safetensors", "model.vae.safetensors"])
        #expect {
            _ = try lib.resolve(setting: "missing.safetensors", checkpointPath: ckpt, field: "override_settings.sd_vae")
        } throws: { e in (e as? ServiceError)?.status == 422 && (e as? ServiceError)?.field == "override_settings.sd_vae" }
        let forced = VAELibrary(directories: [vaeDir], checkpointDirectory: ckptDir, forced: vaeDir.appendingPathComponent("ft.safetensors"))
        #expect(try forced.resolve(setting: "None", checkpointPath: ckpt, field: "sd_vae")?.name == "ft.safetensors")
    }
}
