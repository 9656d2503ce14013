import AtelierModels
import Foundation

/// One VAE file as A1111 lists it: named by its file name (extension included).
public struct VAEInfo: Sendable, Equatable {
    public let name: String
    public let path: String
}

/// The VAE files of `models/VAE` (and `--vae-dir`) searched recursively, plus `*.vae.*` files
/// beside the checkpoints (A1111's `refresh_vae_list`); rescanned on every look-up, so new files
/// are found without a restart. The two most recently used are kept loaded.
public final class VAELibrary: @unchecked Sendable {
    public let directories: [URL]
    public let checkpointDirectory: URL
    /// `--vae-path`: the operator's VAE for every job (A1111's command-line override)
    public let forced: URL?
    private let cache = LoadedModelCache<VAEFile>(capacity: 2)
    public static let extensions: Set<String> = ["safetensors", "pt", "ckpt"]

    public init(directories: [URL], checkpointDirectory: URL, forced: URL? = nil) {
        self.directories = directories
        self.checkpointDirectory = checkpointDirectory
        self.forced = forced
    }

    /// Every VAE file, by name (natural order, as A1111 sorts them).
    public func list() -> [VAEInfo] {
        var out: [VAEInfo] = []
        func walk(_ dir: URL, nearCheckpoints: Bool) {
            guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else { return }
            for case let url as URL in e where Self.extensions.contains(url.pathExtension.lowercased()) {
                let stem = url.deletingPathExtension().lastPathComponent
                if nearCheckpoints && !stem.lowercased().hasSuffix(".vae") { continue }
                out.append(VAEInfo(name: url.lastPathComponent, path: url.path))
            }
        }
        for d in directories { walk(d, nearCheckpoints: false) }
        walk(checkpointDirectory, nearCheckpoints: true)
        return out.sorted { $0.name.localizedStandardCompare($1.name) == .orderedAscending }
    }

    /// A1111's `resolve_vae` for a checkpoint and the SD VAE setting: `--vae-path`; then, with
    /// "Automatic", a `<checkpoint>.vae.{pt,ckpt,safetensors}` beside it; then the named file;
    /// "Automatic" and "None" otherwise mean the checkpoint's own VAE (nil). An unknown name is an
    /// error naming `field` (A1111 falls back to the built-in VAE with a console message only).
    public func resolve(setting: String, checkpointPath: String, field: String) throws -> VAEInfo? {
        if let forced { return VAEInfo(name: forced.lastPathComponent, path: forced.path) }
        let s = setting.trimmingCharacters(in: .whitespaces)
        if s.isEmpty || s.lowercased() == "automatic" {
            let stem = (checkpointPath as NSString).deletingPathExtension
            for ext in [".vae.pt", ".vae.ckpt", ".vae.safetensors"] where FileManager.default.fileExists(atPath: stem + ext) {
                return VAEInfo(name: ((stem + ext) as NSString).lastPathComponent, path: stem + ext)
            }
            return nil
        }
        if s.lowercased() == "none" { return nil }
        return try named(s, field: field)
    }

    /// Checks an SD VAE setting before a job uses it: Automatic, None (or empty) or a listed file.
    public func validate(setting: String, field: String) throws {
        let s = setting.trimmingCharacters(in: .whitespaces)
        if ["", "automatic", "none"].contains(s.lowercased()) { return }
        _ = try named(s, field: field)
    }

    /// The VAE file called `name`; an unknown name is a 422 naming `field` and the choices.
    func named(_ name: String, field: String) throws -> VAEInfo {
        let all = list()
        guard let hit = all.first(where: { $0.name == name }) else {
            let names = all.map(\.name)
            throw ServiceError(422, field: field, "\(field): VAE '\(name)' not found; use Automatic, None\(names.isEmpty ? "" : " or one of " + names.joined(separator: ", ")) (files in \(directories.first?.path ?? "models/VAE"))")
        }
        return hit
    }

    /// The loaded VAE for a checkpoint whose VAE has `config` (cached per file, size, date, layout).
    public func load(_ info: VAEInfo, config: VAEConfig, field: String) throws -> VAEFile {
        try cache.model(path: info.path, layout: "\(config.ch)|\(config.chMult)") {
            do { return try VAEFile(path: info.path, config: config) } catch let e as ModelFileError {
                throw ServiceError(422, field: field, "\(field): cannot use VAE \(info.name): \(e.description)")
            }
        }
    }
}
