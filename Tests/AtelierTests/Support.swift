import AtelierDiffusion
import AtelierModels
import AtelierTensor
import Foundation

/// Paths of the committed fixtures (the tests never read anything outside the repository).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let checkpoint = root.appendingPathComponent("models/tiny-sd15.safetensors").path
    /// sha256 of the committed tiny checkpoint the goldens were made from (tools/make_goldens.py)
    static let checkpointSHA256 = "a7caa29fe88432bbcf4de833985faded804ab9f60baf7121ce011b8540e8ff0a"
    static let golden = root.appendingPathComponent("golden")

    /// The tiny model, loaded once for all tests.
    static let model: StableDiffusionModel = {
        do { return try StableDiffusionModel(path: checkpoint) } catch { fatalError("cannot load \(checkpoint): \(error)") }
    }()
    static let pipeline = Pipeline(model: model)
    /// A second copy of the model for generations with extra networks, which patch weights in
    /// place: the suites that run beside them keep the unpatched `pipeline`.
    /// the tiny ControlNet made from the tiny checkpoint (Tests/Fixtures/controlnet/README.md)
    static let controlNetPath = root.appendingPathComponent("controlnet/tiny-controlnet-canny.safetensors").path
    static let controlNet: ControlNetModel = try! ControlNetModel(path: controlNetPath, config: model.unet.config)
    static let networkPipeline = Pipeline(model: try! StableDiffusionModel(path: checkpoint))
}

/// Keeps dumped intermediates in memory.
final class MemoryDump: DumpSink {
    var arrays: [String: (shape: [Int], values: [Float])] = [:]
    func write(_ name: String, shape: [Int], values: [Float]) { arrays[name] = (shape, values) }
}

/// ‖a − b‖ / ‖b‖ in double.
func relativeL2(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var num = 0.0, den = 0.0
    for i in a.indices {
        let d = Double(a[i]) - b[i]
        num += d * d
        den += b[i] * b[i]
    }
    return (num / max(den, 1e-300)).squareRoot()
}

func psnr(_ a: [UInt8], _ b: [UInt8]) -> Double {
    var mse = 0.0
    for i in a.indices { let d = Double(a[i]) - Double(b[i]); mse += d * d }
    mse /= Double(a.count)
    return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
}
