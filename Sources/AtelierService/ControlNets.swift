import AtelierDiffusion
import AtelierImaging
import AtelierModels
import Crypto
import Foundation

/// One ControlNet file, named as sd-webui-controlnet names it: `stem [hash]`.
public struct ControlNetInfo: Sendable, Equatable {
    public let path: String
    /// file name without extension
    public let stem: String
    /// the extension's hash: webui's old `model_hash` (sha256 of 64 KiB at offset 1 MiB, 8 hex digits)
    public let hash: String
    public var title: String { "\(stem) [\(hash)]" }
}

/// The ControlNet files of `models/ControlNet` (and `--controlnet-dir`), rescanned on every
/// look-up so new files are found without a restart, with the two most recently used models
/// kept loaded (the extension's `control_net_model_cache_size` default).
public final class ControlNetLibrary: @unchecked Sendable {
    public let directories: [URL]
    private let cache = LoadedModelCache<ControlNetModel>(capacity: ControlNetLibrary.cacheSize)
    static let extensions: Set<String> = ["safetensors", "pth", "pt", "ckpt"]
    static let cacheSize = 2

    public init(directories: [URL]) {
        self.directories = directories
    }

    /// Every ControlNet file, per directory sorted by name.
    public func list() -> [ControlNetInfo] {
        var out: [ControlNetInfo] = []
        for dir in directories {
            guard let files = try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil) else { continue }
            for url in files.sorted(by: { $0.lastPathComponent < $1.lastPathComponent })
            where Self.extensions.contains(url.pathExtension.lowercased()) {
                out.append(ControlNetInfo(path: url.path, stem: url.deletingPathExtension().lastPathComponent, hash: Self.oldHash(url)))
            }
        }
        return out
    }

    /// webui's `model_hash`: sha256 of the 64 KiB at 1 MiB (an empty read for small files).
    static func oldHash(_ url: URL) -> String {
        guard let h = try? FileHandle(forReadingFrom: url) else { return "NOFILE" }
        defer { try? h.close() }
        var data = Data()
        if (try? h.seek(toOffset: 0x100000)) != nil { data = (try? h.read(upToCount: 0x10000)) ?? Data() }
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined().prefix(8).description
    }

    /// The extension's look-up (`find_closest_lora_model_name`): the exact `stem [hash]`, the
    /// stem (any case), then the shortest stem containing the query. "None" / "" find nothing.
    public func resolve(_ query: String) -> ControlNetInfo? {
        let q = query.trimmingCharacters(in: .whitespaces)
        guard !q.isEmpty, q != "None" else { return nil }
        let all = list()
        if let exact = all.first(where: { $0.title == q }) { return exact }
        if q.range(of: #"\s\[[0-9a-f]{8}\]$"#, options: .regularExpression) != nil { return nil }  // a wrong hash
        let lower = q.lowercased()
        if let byStem = all.first(where: { $0.stem.lowercased() == lower }) { return byStem }
        return all.filter { $0.stem.lowercased().contains(lower) }.min { $0.stem.count < $1.stem.count }
    }

    /// The loaded model for `info`, built for a base UNet of `config` (cached per file and layout).
    public func model(_ info: ControlNetInfo, for config: UNetConfig, field: String) throws -> ControlNetModel {
        try cache.model(path: info.path, layout: "\(config.modelChannels)|\(config.contextDim)") {
            do { return try ControlNetModel(path: info.path, config: config) } catch let e as ModelFileError {
                throw ServiceError(422, field: field, "\(field): cannot load ControlNet \(info.title) for the loaded checkpoint: \(e.problem)")
            }
        }
    }
}

/// One enabled ControlNet unit of a request, checked but not yet bound to the loaded model:
/// its input image, preprocessor and settings.
public struct ControlUnitRequest: Sendable {
    public var model: ControlNetInfo
    public var module: ControlModule
    public var image: Image8
    public var resizeMode: ControlResizeMode = .cropAndResize
    public var processorRes: Double = -1
    public var thresholdA: Double = -1
    public var thresholdB: Double = -1
    public var pixelPerfect = false
    public var weight: Double = 1
    public var guidanceStart: Double = 0
    public var guidanceEnd: Double = 1
    public var controlMode: ControlMode = .balanced
    /// the unit's place in `alwayson_scripts.controlnet.args` (for error fields and the infotext)
    public var index = 0
    /// the model name as the request gave it (the infotext shows it)
    public var requestedModel = ""

    public init(model: ControlNetInfo, module: ControlModule, image: Image8) {
        self.model = model
        self.module = module
        self.image = image
    }

    /// The extension's infotext value (`ControlNet N: "Module: …, Model: …, …"`).
    public var infotext: String {
        func num(_ v: Double) -> String { Infotext.pythonFloat(v) }
        return "Module: \(module.rawValue), Model: \(requestedModel), Weight: \(num(weight)), Resize Mode: \(resizeMode.rawValue), "
            + "Processor Res: \(processorRes < 0 ? "512" : String(Int(processorRes))), Threshold A: \(thresholdA < 0 ? "100" : num(thresholdA)), "
            + "Threshold B: \(thresholdB < 0 ? "200" : num(thresholdB)), Guidance Start: \(num(guidanceStart)), "
            + "Guidance End: \(num(guidanceEnd)), Pixel Perfect: \(pixelPerfect ? "True" : "False"), Control Mode: \(controlMode.rawValue)"
    }
}
