import AtelierStorage
import Foundation

/// The controller's own settings (`<controller dir>/config.json`, optional; the environment
/// fills in the S3 store): where NAS servers are on this machine, which S3-compatible store
/// plays OSS, which container paths may be mounted, and the model cache bound.
public struct ControllerConfig: Sendable, Codable {
    /// NAS server address → local directory (`storage[].nfs.path` is read inside it)
    public var nas: [String: String] = [:]
    public var s3: S3Configuration?
    /// container paths under which `storage[].mount_path` may lie
    public var mountRoots: [String] = [ServiceSpec.webuiRoot]
    /// per service, the local model cache of an OSS data dir (MiB)
    public var ossCacheMB: Int = 20_480
    /// an instance's log is rotated (to `<log>.1`) past this size
    public var logRotateBytes: Int = 8 << 20
    /// seconds between two refreshes of an OSS data dir's model copy
    public var ossSyncSeconds: Double = 10

    enum CodingKeys: String, CodingKey {
        case nas, s3, mountRoots = "mount_roots", ossCacheMB = "oss_cache_mb", logRotateBytes = "log_rotate_bytes", ossSyncSeconds = "oss_sync_seconds"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nas = try c.decodeIfPresent([String: String].self, forKey: .nas) ?? [:]
        s3 = try c.decodeIfPresent(S3Configuration.self, forKey: .s3)
        mountRoots = try c.decodeIfPresent([String].self, forKey: .mountRoots) ?? [ServiceSpec.webuiRoot]
        ossCacheMB = try c.decodeIfPresent(Int.self, forKey: .ossCacheMB) ?? 20_480
        logRotateBytes = try c.decodeIfPresent(Int.self, forKey: .logRotateBytes) ?? (8 << 20)
        ossSyncSeconds = try c.decodeIfPresent(Double.self, forKey: .ossSyncSeconds) ?? 10
    }

    /// Reads `file` (absent = defaults) and takes the S3 store from the environment when the file has none.
    public static func load(_ file: URL) throws -> ControllerConfig {
        var config = ControllerConfig()
        if FileManager.default.fileExists(atPath: file.path) {
            do { config = try JSONDecoder().decode(ControllerConfig.self, from: Data(contentsOf: file)) } catch {
                throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: file.path, message: "\(error)")])
            }
        }
        if config.s3 == nil { config.s3 = S3Configuration.fromEnvironment() }
        guard config.logRotateBytes >= 1024, config.ossCacheMB >= 1, config.ossSyncSeconds >= 0.1, config.ossSyncSeconds <= 86_400 else {
            throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "\(file.path): log_rotate_bytes / oss_cache_mb / oss_sync_seconds",
                                                         message: "log_rotate_bytes must be ≥ 1024, oss_cache_mb ≥ 1 and oss_sync_seconds 0.1…86400")])
        }
        for (server, dir) in config.nas {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "\(file.path): nas.\(server)", message: "\(dir) is not a directory")])
            }
        }
        return config
    }
}

/// Where one service's data dir lives on this machine, decided from its spec and the config.
public struct ResolvedStorage: Sendable, Equatable, Codable {
    /// the local data dir the instances run on (the NAS directory, or the OSS mount's local copy)
    public var dataDir: String
    /// the bucket path of the data dir, for an OSS mount
    public var oss: String?
    public var readOnly: Bool
    /// what `describe` shows
    public var summary: String

    /// Maps the spec's data mount; errors name the spec field.
    public static func resolve(_ spec: ServiceSpec, config: ControllerConfig, serviceDir: URL) throws -> ResolvedStorage {
        guard let (mount, sub) = spec.dataMount else {
            let dir = serviceDir.appendingPathComponent("data").path
            return ResolvedStorage(dataDir: dir, oss: nil, readOnly: false, summary: "local directory \(dir) (no storage mount holds --data-dir)")
        }
        let p = "storage[\(mount.index)]"
        switch mount.source {
        case .nfs(let server, let path):
            guard let root = config.nas[server] else {
                throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "\(p).nfs.server",
                    message: "no local directory is configured for NAS server \(server) (controller config: \"nas\": {\"\(server)\": \"/some/dir\"})")])
            }
            let base = URL(fileURLWithPath: root).appendingPathComponent(path).standardizedFileURL
            let dir = sub.isEmpty ? base : base.appendingPathComponent(sub).standardizedFileURL
            let rootPath = URL(fileURLWithPath: root).standardizedFileURL.path
            guard dir.path == rootPath || dir.path.hasPrefix(rootPath + "/") else {
                throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "\(p).nfs.path", message: "leads outside the NAS directory")])
            }
            return ResolvedStorage(dataDir: dir.path, oss: nil, readOnly: mount.readOnly,
                                   summary: "NAS \(server):\(path) = \(dir.path)\(mount.readOnly ? " (read-only)" : "")")
        case .oss(let bucket, let prefix):
            guard config.s3 != nil else {
                throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "\(p).oss.path",
                    message: "no S3-compatible store is configured (controller config \"s3\" or ATELIER_S3_ENDPOINT)")])
            }
            let key = BucketPath(bucket: bucket, prefix: prefix).key(sub)
            let url = "oss://\(bucket)/\(key)"
            let dir = serviceDir.appendingPathComponent("oss-cache").path
            return ResolvedStorage(dataDir: dir, oss: url, readOnly: mount.readOnly,
                                   summary: "OSS \(url) (local copy \(dir))\(mount.readOnly ? " (read-only)" : "")")
        }
    }
}
