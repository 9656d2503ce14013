import AtelierTensor
import Foundation

/// A VAE on its own (`models/VAE/*.safetensors|.pt|.ckpt`, e.g. `vae-ft-mse-840000-ema-pruned`),
/// used instead of a checkpoint's built-in one. As A1111 loads it into the checkpoint's
/// `first_stage_model`: LDM key names without a prefix, `loss.*` and the EMA counters ignored,
/// and the sizes must be the checkpoint's VAE sizes (a file that does not fit names the tensor).
public final class VAEFile: @unchecked Sendable {
    public let path: String
    /// the file name with its extension, as A1111's infotext "VAE" field writes it
    public let name: String
    public let sha256: String
    /// A1111's "VAE hash": the first 10 hex digits of the file's sha256
    public var shortHash: String { String(sha256.prefix(10)) }
    public let decoder: VAEDecoder
    public let encoder: VAEEncoder

    /// Loads `path` for a checkpoint whose VAE has `config` (sizes and scale factor).
    public init(path: String, config: VAEConfig) throws {
        self.path = path
        name = (path as NSString).lastPathComponent
        guard let file = try openTensorFile(path) else {
            throw ModelFileError(file: name, "not a VAE file (.safetensors, .pt or .ckpt)")
        }
        let store = WeightStore(file: file)
        let arch = Architecture.detect(store)
        guard arch == .vae else {
            throw ModelFileError(file: name, "this is \(arch.label), not a VAE\(arch.belongsIn.map { "; put it in \($0)" } ?? "")")
        }
        // some VAE files keep the checkpoint's prefix; A1111's own ones have none
        let prefix = store.has("first_stage_model.decoder.conv_in.weight") ? "first_stage_model." : ""
        do {
            decoder = try VAEDecoder(store, config: config, prefix: prefix)
            encoder = try VAEEncoder(store, config: config, prefix: prefix)
        } catch let e as ModelFileError {
            throw ModelFileError(file: name, "does not fit the checkpoint's VAE: \(e.problem)")
        }
        for k in store.canonicalNames where k.hasPrefix("loss.") || k.hasPrefix("model_ema.") { store.markUsed(k) }
        try store.checkAllUsed(prefixes: [""])
        sha256 = try StableDiffusionModel.fileSHA256(path)
    }
}

extension VAEFile: Equatable {
    public static func == (a: VAEFile, b: VAEFile) -> Bool { a === b || (a.path == b.path && a.sha256 == b.sha256) }
}
