import AtelierModels
import Foundation

/// Model-side files found by name (file name without extension) in some directories,
/// recursively, the first found winning; and each file's loaded value kept while the file is
/// unchanged (same modification date and size). Shared by LoRA and embedding look-ups.
final class NamedFiles<Value>: @unchecked Sendable {
    let directories: [URL]
    let extensions: Set<String>
    private let lock = NSLock()
    private var cache: [String: (modified: Date, size: Int, value: Value)] = [:]

    init(directories: [URL], extensions: Set<String>) {
        self.directories = directories
        self.extensions = extensions
    }

    /// The files on disk, in directory order, one per name.
    func files() -> [(name: String, url: URL)] {
        var out: [(name: String, url: URL)] = [], seen = Set<String>()
        for dir in directories {
            guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else { continue }
            for case let url as URL in e where extensions.contains(url.pathExtension.lowercased()) {
                let name = url.deletingPathExtension().lastPathComponent
                if seen.insert(name).inserted { out.append((name, url)) }
            }
        }
        return out
    }

    /// The file's value, loaded again only when the file changed; a failed load is not kept.
    func value(at url: URL, load: (URL) throws -> Value) throws -> Value {
        let attrs = try? FileManager.default.attributesOfItem(atPath: url.path)
        let modified = attrs?[.modificationDate] as? Date ?? .distantPast, size = attrs?[.size] as? Int ?? 0
        if let c = lock.withLock({ cache[url.path] }), c.modified == modified, c.size == size { return c.value }
        let v = try load(url)
        lock.withLock { cache[url.path] = (modified, size, v) }
        return v
    }
}

/// Finds the network files a prompt's `<lora:…>` / `<lyco:…>` tags name, in the Lora
/// directories (recursively, by file name without extension), and reads their multipliers as
/// A1111 does: `<lora:name[:te[:unet]]>`, `te=` / `unet=` named forms, te default 1, unet
/// default te. Files are cached while unchanged on disk.
public final class NetworkResolver: @unchecked Sendable {
    private let files: NamedFiles<NetworkFile>
    public var directories: [URL] { files.directories }

    public init(directories: [URL]) { files = NamedFiles(directories: directories, extensions: ["safetensors", "pt", "ckpt"]) }

    /// The network files on disk, by name (the first found wins).
    public func available() -> [String: URL] {
        Dictionary(files.files().map { ($0.name, $0.url) }, uniquingKeysWith: { first, _ in first })
    }

    func file(_ url: URL) throws -> NetworkFile { try files.value(at: url) { try NetworkFile(path: $0.path) } }

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
    /// a file that cannot be read is kept as nil (listed as skipped) until it changes
    private let files: NamedFiles<TextualInversion?>
    public var directories: [URL] { files.directories }

    public init(directories: [URL]) { files = NamedFiles(directories: directories, extensions: ["safetensors", "pt", "bin"]) }

    /// Every embedding on disk whose width is `width` (unreadable files are skipped and named).
    public func embeddings(width: Int?) -> (loaded: [TextualInversion], skipped: [String]) {
        var loaded: [TextualInversion] = [], skipped: [String] = []
        for (name, url) in files.files() {
            let emb = (try? files.value(at: url) { try? TextualInversion(path: $0.path) }) ?? nil
            if let emb, width == nil || emb.vectors.shape[1] == width { loaded.append(emb) } else { skipped.append(name) }
        }
        return (loaded, skipped)
    }
}
