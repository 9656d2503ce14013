import AtelierDiffusion
import AtelierModels
import Foundation
import Testing

/// `.pt` files through the restricted unpickler (A1111's safe.py allow-list).
struct PickleTests {
    @Test func aTorchSavedEmbeddingReadsAsTorchLoadsIt() throws {
        let e = try TextualInversion(path: Fixtures.root.appendingPathComponent("networks/embeddings/tinyemb3.pt").path)
        #expect(e.name == "tinyemb3" && e.vectors.shape == [3, 32])
        // values printed by torch.load of the same file
        let v = e.vectors.scalars
        #expect(Array(v.prefix(4)) == [-0.010444163344800472, 0.01656974107027054, -0.02723178081214428, -0.027892541140317917].map { Float($0) })
        #expect(abs(v.reduce(0, +) - -0.21763667464256287) < 1e-5)
    }

    @Test(arguments: [("evil-os-system.pt", "posix/system"), ("evil-eval.pt", "builtins/eval")])
    func aPickleCallingAnythingOutsideTheAllowListIsRefusedByNameAndNeverRun(file: String, global: String) {
        let marker = "/tmp/atelier-pwned"
        try? FileManager.default.removeItem(atPath: marker)
        let path = Fixtures.root.appendingPathComponent("pickle/" + file).path
        do {
            _ = try TorchFile.load(path: path)
            Issue.record("\(file) loaded")
        } catch let e as ModelFileError {
            #expect(e.description.contains("global '\(global)' is forbidden"), "\(e)")
            #expect(e.description.contains(file))
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test func aTruncatedOrForeignFileNamesTheFileAndTheProblem() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pickle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let junk = dir.appendingPathComponent("junk.pt")
        try Data("not a zip at all".utf8).write(to: junk)
        #expect(throws: ModelFileError.self) { try TorchFile.load(path: junk.path) }
        let good = try Data(contentsOf: Fixtures.root.appendingPathComponent("networks/embeddings/tinyemb3.pt"))
        let cut = dir.appendingPathComponent("cut.pt")
        try good.prefix(good.count / 2).write(to: cut)
        #expect(throws: ModelFileError.self) { try TorchFile.load(path: cut.path) }
    }
}

extension PickleTests {
    /// The same weights as a pickled `.ckpt` (tools/make_ckpt_fixture.py) give the same picture.
    @Test func aCkptCheckpointLoadsAndGeneratesTheSafetensorsPicture() throws {
        let ckpt = try StableDiffusionModel(path: Fixtures.root.appendingPathComponent("models/tiny-sd15.ckpt").path)
        var r = GenerationRequest()
        r.prompt = "a photo of a cat"
        r.seed = 1
        r.steps = 3
        r.width = 64
        r.height = 64
        r.randnSource = .cpu
        let safetensors = try StableDiffusionModel(path: Fixtures.checkpoint)
        // the same weights, bit for bit (UNet and text encoder; the VAE through the picture)
        #expect(ckpt.parameters.count == safetensors.parameters.count)
        #expect(ckpt.parameters.mapValues(\.scalars) == safetensors.parameters.mapValues(\.scalars))
        let fromCkpt = try Pipeline(model: ckpt).txt2img(r)
        let fromSafetensors = try Pipeline(model: safetensors).txt2img(r)
        #expect(fromCkpt[0].rgb == fromSafetensors[0].rgb, "the same weights make the same picture, byte for byte")
        #expect(ckpt.name == "tiny-sd15")
    }
}
