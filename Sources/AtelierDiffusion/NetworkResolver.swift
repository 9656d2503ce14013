import AtelierModels
import Foundation

/// Finds the network files a prompt's `<lora:…>` / `<lyco:…>` tags name, in the Lora
/// directories (recursively, by file name without extension), and reads their multipliers as
/// A1111 does: `<lora:name[:te[:unet]]>`, `te=` / `unet=` named forms, te default 1, unet
/// default te. Files are cached while unchanged on disk.
public final class NetworkResolver: @unchecked Sendable {
    public let directories: [URL]
    private let lock = NSLock()
    private var cache: [String: (modified: Date, size: Int, file: NetworkFile)] = [:]

    public init(directories: [URL]) { self.directories = directories }

    /// The network files on disk, by name (the first found wins).
    public func available() -> [String: URL] {
        var out: [String: URL] = [:]
        for dir in directories {
            guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else { continue }
            for case let url as URL in e where ["safetensors", "pt", "ckpt"].contains(url.pathExtension.lowercased()) {
                let name = url.deletingPathExtension().lastPathComponent
                if out[name] == nil { out[name] = url }
            }
        }
        return out
    }

    func file(_ url: URL) throws -> NetworkFile {
        let attrs = try FileManager.default.attributesOfItem(atPath: url.path)
        let modified = attrs[.modificationDate] as? Date ?? .distantPast, size = attrs[.size] as? Int ?? 0
        if let c = lock.withLock({ cache[url.path] }), c.modified == modified, c.size == size { return c.file }
        let f = try NetworkFile(path: url.path)
        lock.withLock { cache[url.path] = (modified, size, f) }
        return f
    }

    /// The networks a prompt uses, in prompt order, and the names that matched no file.
    public func uses(in prompt: String) throws -> (uses: [NetworkUse], missing: [String]) {
        let tags = ExtraNetworkTags.parse(prompt).tags.filter { $0.kind == "lora" || $0.kind == "lyco" }
        guard !tags.isEmpty else { return ([], []) }
        let files = available()
        var uses: [NetworkUse] = [], missing: [String] = []
        for tag in tags {
            var positional: [String] = [], named: [String: String] = [:]
            for item in tag.arguments {
                let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2 { named[String(parts[0])] = String(parts[1]) } else { positional.append(item) }
            }
            guard let name = positional.first else { continue }
            func number(_ s: String, _ what: String) throws -> Float {
                guard let v = Float(s.trimmingCharacters(in: .whitespaces)) else {
                    throw RequestError(field: "prompt", "<\(tag.kind):\(tag.arguments.joined(separator: ":"))>: \(what) '\(s)' is not a number")
                }
                return v
            }
            var te: Float = positional.count > 1 ? try number(positional[1], "weight") : 1
            if let v = named["te"] { te = try number(v, "te") }
            var unet = positional.count > 2 ? try number(positional[2], "unet weight") : te
            if let v = named["unet"] { unet = try number(v, "unet") }
            guard let url = files[name] else { missing.append(name); continue }
            uses.append(NetworkUse(file: try file(url), te: te, unet: unet))
        }
        return (uses, missing)
    }
}

/// The textual-inversion embeddings of the embeddings directories, loaded once per file version;
/// names are matched in prompts by their CLIP tokens (longest first), as A1111's
/// `EmbeddingDatabase` does. Files of another width than the model's are skipped.
public final class EmbeddingLibrary: @unchecked Sendable {
    public let directories: [URL]
    private let lock = NSLock()
    private var cache: [String: (modified: Date, size: Int, embedding: TextualInversion?)] = [:]

    public init(directories: [URL]) { self.directories = directories }

    /// Every embedding on disk whose width is `width` (unreadable files are skipped and named).
    public func embeddings(width: Int?) -> (loaded: [TextualInversion], skipped: [String]) {
        var loaded: [TextualInversion] = [], skipped: [String] = [], seen = Set<String>()
        for dir in directories {
            guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else { continue }
            for case let url as URL in e where ["safetensors", "pt", "bin"].contains(url.pathExtension.lowercased()) {
                let name = url.deletingPathExtension().lastPathComponent
                guard seen.insert(name).inserted else { continue }
                let attrs = try? FileManager.default.attributesOfItem(atPath: url.path)
                let modified = attrs?[.modificationDate] as? Date ?? .distantPast, size = attrs?[.size] as? Int ?? 0
                var emb: TextualInversion?
                if let c = lock.withLock({ cache[url.path] }), c.modified == modified, c.size == size {
                    emb = c.embedding
                } else {
                    emb = try? TextualInversion(path: url.path)
                    lock.withLock { cache[url.path] = (modified, size, emb) }
                }
                if let emb, width == nil || emb.vectors.shape[1] == width { loaded.append(emb) } else { skipped.append(name) }
            }
        }
        return (loaded, skipped)
    }
}
