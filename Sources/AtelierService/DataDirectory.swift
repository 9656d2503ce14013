import Foundation

/// A client's mistake detected by the service, with the HTTP status it deserves.
public struct ServiceError: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let field: String?
    public let detail: String
    public init(_ status: Int, field: String? = nil, _ detail: String) {
        self.status = status
        self.field = field
        self.detail = detail
    }
    public var description: String { detail }
}

/// An instance's data dir in A1111's layout (`models/Stable-diffusion`, `models/Lora`, …,
/// `outputs/…`, `config.json`). Paths given by clients are resolved only inside it.
public struct DataDirectory: Sendable {
    public let root: URL
    public var checkpointDir: URL
    public var loraDir: URL
    public var vaeDir: URL
    public var embeddingsDir: URL
    public var hypernetworkDir: URL
    /// `models/ControlNet`
    public var controlNetDir: URL
    /// further ControlNet dirs (`--controlnet-dir`), searched after `controlNetDir`
    public var extraControlNetDirs: [URL] = []
    /// `--vae-path`: one VAE file for every job, whatever the SD VAE setting (operator flag)
    public var vaePath: URL?
    /// The path clients know the data dir by (a deployed instance's container mount path, e.g.
    /// `/code/stable-diffusion-webui/data`): `image_url` reports paths under it.
    public var mountPath: String?
    /// Where a user adds checkpoints when that is not the checkpoint dir itself (the bucket
    /// path an OSS data dir is copied from), for the "no checkpoint" help.
    public var checkpointUploadHint: String?

    public init(root: URL, checkpointDir: URL? = nil, loraDir: URL? = nil, vaeDir: URL? = nil,
                embeddingsDir: URL? = nil, hypernetworkDir: URL? = nil, controlNetDirs: [URL] = []) {
        self.root = root.standardizedFileURL
        let models = self.root.appendingPathComponent("models")
        self.checkpointDir = checkpointDir ?? models.appendingPathComponent("Stable-diffusion")
        self.loraDir = loraDir ?? models.appendingPathComponent("Lora")
        self.vaeDir = vaeDir ?? models.appendingPathComponent("VAE")
        self.embeddingsDir = embeddingsDir ?? self.root.appendingPathComponent("embeddings")
        self.hypernetworkDir = hypernetworkDir ?? models.appendingPathComponent("hypernetworks")
        controlNetDir = models.appendingPathComponent("ControlNet")
        extraControlNetDirs = controlNetDirs
    }

    /// Creates the layout (idempotent).
    public func create() throws {
        let fm = FileManager.default
        for d in [checkpointDir, loraDir, vaeDir, embeddingsDir, hypernetworkDir,
                  controlNetDir, root.appendingPathComponent("outputs")] {
            try fm.createDirectory(at: d, withIntermediateDirectories: true)
        }
    }

    public var configFile: URL { root.appendingPathComponent("config.json") }

    /// Resolves a client-given relative path inside the data dir; `..`, absolute paths and
    /// symlinks leading out are refused (`field` names the request field).
    public func resolveInside(_ relative: String, field: String) throws -> URL {
        guard !relative.hasPrefix("/"), !relative.split(separator: "/").contains("..") else {
            throw ServiceError(400, field: field, "\(field): path must stay inside the data dir")
        }
        let url = root.appendingPathComponent(relative).standardizedFileURL
        var existing = url
        while !FileManager.default.fileExists(atPath: existing.path) && existing.path != "/" {
            existing = existing.deletingLastPathComponent()
        }
        let real = existing.resolvingSymlinksInPath().path
        let rootReal = root.resolvingSymlinksInPath().path
        guard real == rootReal || real.hasPrefix(rootReal + "/") else {
            throw ServiceError(400, field: field, "\(field): path leads outside the data dir")
        }
        return url
    }
}
