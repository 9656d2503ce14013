import AtelierDiffusion
import AtelierImaging
import AtelierModels
import AtelierTensor
import Foundation
import Testing

/// ControlNet properties the oracle's goldens do not cover. Exact identities (weight 0 adds
/// zeros; 0.5·r + 0.5·r = r) hold bit for bit, also with other suites running beside this one
/// (no kernel's sums depend on the thread split): "the same picture" means the same bytes,
/// "changed" means under 35 dB PSNR.
@Suite(.serialized) struct ControlNetTests {
    static func request(_ units: [ControlUnit] = [], steps: Int = 4) -> GenerationRequest {
        var r = GenerationRequest()
        r.prompt = "a red ball on a table"
        r.negativePrompt = "blurry"
        r.seed = 3
        r.steps = steps
        r.width = 128
        r.height = 128
        r.sampler = .euler
        r.randnSource = .cpu
        r.controlUnits = units
        return r
    }

    static func unit(weight: Double = 1, mode: ControlMode = .balanced, model: ControlNetModel = Fixtures.controlNet) throws -> ControlUnit {
        let (img, _) = try PNG.decode(Data(contentsOf: Fixtures.root.appendingPathComponent("images/control-160x128.png")))
        let (_, map) = ControlPreprocessor.run(.canny, image: img, width: 128, height: 128, mode: .cropAndResize, pixelPerfect: true)
        return ControlUnit(model: model, hint: ControlUnit.hint(rgb: map.pixels, width: map.width, height: map.height), weight: weight, mode: mode)
    }

    static func pixels(_ r: GenerationRequest) throws -> [UInt8] { try Fixtures.pipeline.txt2img(r)[0].rgb }

    /// Bytes that differ between the two requests' pictures.
    static func differing(_ a: GenerationRequest, _ b: GenerationRequest) throws -> Int {
        zip(try pixels(a), try pixels(b)).filter { $0.0 != $0.1 }.count
    }

    @Test func weightZeroGivesThePlainPicture() throws {
        let n = try Self.differing(Self.request([Self.unit(weight: 0)]), Self.request())
        #expect(n == 0, "\(n) bytes differ")
    }

    @Test func aUnitChangesThePicture() throws {
        let p = psnr(try Self.pixels(Self.request([Self.unit()])), try Self.pixels(Self.request()))
        #expect(p < 35, "PSNR \(p) dB")
    }

    @Test func twoHalfUnitsSumToOneFullUnit() throws {
        // residuals are summed over units: 0.5·r + 0.5·r = r exactly in float32
        let half = try Self.unit(weight: 0.5)
        let n = try Self.differing(Self.request([half, half]), Self.request([Self.unit(weight: 1)]))
        #expect(n == 0, "\(n) bytes differ")
    }

    @Test func guidanceWindowOutsideTheStepsGivesThePlainPicture() throws {
        var late = try Self.unit()
        late.guidanceStart = 1  // sampling_step / steps never reaches 1 with 4 steps (last call sees 3/4)
        late.guidanceEnd = 1
        let n = try Self.differing(Self.request([late]), Self.request())
        #expect(n == 0, "\(n) bytes differ")
    }

    @Test func pickledPthFileHoldsTheSameControlNet() throws {
        let pth = try ControlNetModel(path: Fixtures.root.appendingPathComponent("controlnet/tiny-controlnet-canny-pth.pth").path,
                                      config: Fixtures.model.unet.config)
        let x = Tensor(shape: [2, 4, 16, 16], data: (0..<2048).map { Float(sin(Double($0))) })
        let ctx = Tensor(shape: [2, 77, Fixtures.model.unet.config.contextDim], data: (0..<(2 * 77 * Fixtures.model.unet.config.contextDim)).map { Float(cos(Double($0))) })
        let hint = Tensor(shape: [1, 3, 128, 128], data: (0..<(3 * 128 * 128)).map { Float(($0 * 7) % 13) / 12 })
        let a = Fixtures.controlNet.residuals(x, encodedHint: Fixtures.controlNet.encodeHint(hint), timesteps: [500, 500], context: ctx)
        let b = pth.residuals(x, encodedHint: pth.encodeHint(hint), timesteps: [500, 500], context: ctx)
        #expect(a.count == 13)
        for (r, q) in zip(a, b) {
            #expect(r.scalars == q.scalars, "same weights, so the same residuals bit for bit")
        }
    }

    @Test func forbiddenGlobalInAPthIsRefusedByName() {
        let path = Fixtures.root.appendingPathComponent("controlnet/evil-controlnet.pth").path
        #expect(throws: ModelFileError.self) { _ = try ControlNetModel(path: path, config: Fixtures.model.unet.config) }
        do { _ = try ControlNetModel(path: path, config: Fixtures.model.unet.config) } catch {
            #expect("\(error)".contains("posix/system") && "\(error)".contains("forbidden"), "\(error)")
        }
    }

    @Test func controlNetForAnotherBaseModelIsRefusedNamingTheTensor() {
        var sd15 = UNetConfig()  // full SD 1.5 sizes; the file is the tiny model's
        sd15.contextDim = 768
        do {
            _ = try ControlNetModel(path: Fixtures.controlNetPath, config: sd15)
            Issue.record("a tiny ControlNet loaded for SD 1.5 sizes")
        } catch {
            #expect("\(error)".contains("tiny-controlnet-canny.safetensors") && "\(error)".contains("control_model."), "\(error)")
        }
    }

    @Test func checkpointIsNotAControlNet() {
        do {
            _ = try ControlNetModel(path: Fixtures.checkpoint, config: Fixtures.model.unet.config)
            Issue.record("a checkpoint loaded as a ControlNet")
        } catch {
            #expect("\(error)".contains("not a ControlNet"), "\(error)")
        }
    }
}
