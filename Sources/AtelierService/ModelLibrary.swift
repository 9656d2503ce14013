import AtelierModels
import Foundation

/// One checkpoint file in the checkpoint dir, named as A1111 names it.
public struct CheckpointInfo: Sendable, Equatable {
    /// path relative to the checkpoint dir, e.g. `sub/model.safetensors`
    public let name: String
    /// `name` with `/` → `_` and the extension removed
    public let modelName: String
    public let filename: String
    public let sha256: String?
    public var shortHash: String? { sha256.map { String($0.prefix(10)) } }
    /// `name [shorthash]`, or `name` while the hash is unknown
    public var title: String { shortHash.map { "\(name) [\($0)]" } ?? name }
}

/// The checkpoints in the checkpoint dir. Every look-up rescans the directory (a listing is
/// cheap), so files added while the service runs are found without a restart; sha256 hashes
/// are kept by `FileHashes` (path, size and modification time).
public final class ModelLibrary: @unchecked Sendable {
    public let directory: URL
    private let hashing: Bool

    public init(directory: URL, hashing: Bool = true) {
        self.directory = directory
        self.hashing = hashing
    }

    static let extensions: Set<String> = ["safetensors", "ckpt"]

    /// All checkpoints, sorted by name.
    public func list(computeHashes: Bool = true) -> [CheckpointInfo] {
        let fm = FileManager.default
        guard let e = fm.enumerator(at: directory, includingPropertiesForKeys: [.fileSizeKey, .contentModificationDateKey, .isRegularFileKey]) else { return [] }
        var out: [CheckpointInfo] = []
        let base = directory.resolvingSymlinksInPath().path
        for case let url as URL in e {
            guard Self.extensions.contains(url.pathExtension.lowercased()) else { continue }
            let path = url.resolvingSymlinksInPath().path
            let rel = path.hasPrefix(base + "/") ? String(path.dropFirst(base.count + 1)) : url.lastPathComponent
            let stem = (rel as NSString).deletingPathExtension.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "\\", with: "_")
            out.append(CheckpointInfo(name: rel, modelName: stem, filename: url.path,
                                      sha256: computeHashes && hashing ? hash(url) : cachedHash(url)))
        }
        return out.sorted { $0.name.localizedStandardCompare($1.name) == .orderedAscending }
    }

    func cachedHash(_ url: URL) -> String? { FileHashes.shared.known(url.path) }

    /// sha256 of the file, computed once per (size, mtime).
    public func hash(_ url: URL) -> String? { try? StableDiffusionModel.fileSHA256(url.path) }

    /// Finds a checkpoint by any name A1111 accepts: title, name, name without extension,
    /// model_name, short hash, sha256, or the file name alone.
    public func resolve(_ query: String) -> CheckpointInfo? {
        let q = query.trimmingCharacters(in: .whitespaces)
        let all = list()
        let stripped = q.replacingOccurrences(of: #"\s*\[[0-9a-f]{8,64}\]$"#, with: "", options: .regularExpression)
        return all.first { $0.title == q }
            ?? all.first { $0.name == q || $0.name == stripped }
            ?? all.first { ($0.name as NSString).deletingPathExtension == stripped || $0.modelName == stripped }
            ?? all.first { $0.shortHash == q || $0.sha256 == q }
            ?? all.first { ($0.name as NSString).lastPathComponent == stripped }
    }
}
