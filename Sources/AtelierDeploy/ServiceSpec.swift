import AtelierService
import Foundation

/// A problem in a service spec, located by its JSON path (`storage[1].nfs.server`).
public struct SpecDiagnostic: Sendable, Equatable, CustomStringConvertible, Codable {
    public enum Severity: String, Sendable, Codable { case error, warning }
    public let severity: Severity
    public let path: String
    public let message: String
    public var description: String { "\(severity == .error ? "error" : "warning"): \(path): \(message)" }
}

/// The spec had errors; nothing was created.
public struct SpecError: Error, CustomStringConvertible, Sendable {
    public let diagnostics: [SpecDiagnostic]
    public var description: String { diagnostics.filter { $0.severity == .error }.map(\.description).joined(separator: "\n") }
}

/// Which of the cloud service's editions a spec asks for.
public enum Edition: String, Sendable, Codable { case standard, api, cluster, serverless }

/// One `storage[]` entry: where the service's `mount_path` comes from.
public struct StorageMount: Sendable, Equatable, Codable {
    public enum Source: Sendable, Equatable, Codable {
        /// `oss://bucket/prefix` on the S3-compatible store
        case oss(bucket: String, prefix: String)
        /// a NAS server and the path inside it (mapped to a local directory by the controller's config)
        case nfs(server: String, path: String)
    }
    public let source: Source
    public let mountPath: String
    public let readOnly: Bool
    /// its index in `storage[]`, for messages
    public let index: Int
}

/// A deploy spec as the cloud console takes it (eas-service.md §3.3–3.4): the JSON exactly as
/// given (so it re-encodes without loss) and the fields Atelier acts on, each checked with its
/// JSON path. Decoding and validation are one step, but warnings do not stop a deploy.
public struct ServiceSpec: Sendable {
    /// the document as given
    public let raw: JSONValue
    public let name: String
    public let edition: Edition
    public let instances: Int
    public let enableWebservice: Bool
    public let async: Bool
    /// `metadata["rpc.worker_threads"]`: jobs one instance takes at once
    public let workerThreads: Int
    public let image: String
    public let script: WebUIScript
    public let port: Int?
    /// `queue.max_delivery` (0 = unlimited; the API edition's default 5 as `atelier serve`)
    public let maxDelivery: Int
    /// the mounts in use (the first entry per mount path; later ones at the same path are alternatives)
    public let mounts: [StorageMount]
    public let diagnostics: [SpecDiagnostic]

    /// The WebUI root inside the cloud's container; `--data-dir` and mount paths are read against it.
    public static let webuiRoot = "/code/stable-diffusion-webui"

    /// Decodes and validates; throws `SpecError` listing every error (warnings ride along in `diagnostics`).
    public init(json data: Data, allowedMountRoots: [String] = [ServiceSpec.webuiRoot]) throws {
        let any: Any
        do {
            any = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "$", message: "invalid JSON: \(Self.jsonErrorText(error))")])
        }
        var r = SpecReader(root: JSONValue(any: any))
        raw = r.root
        guard case .object = raw else {
            throw SpecError(diagnostics: [SpecDiagnostic(severity: .error, path: "$", message: "expected a JSON object")])
        }
        r.known("", ["metadata", "containers", "cloud", "storage", "queue", "features", "name"])
        // metadata
        r.known("metadata", ["name", "instance", "enable_webservice", "type", "rpc.worker_threads", "edition", "cpu", "memory", "gpu",
                             "region", "workspace_id", "resource", "resource_burstable", "rpc.keepalive", "rpc.max_queue_size"])
        let name = r.string("metadata.name", required: true) ?? ""
        if !name.isEmpty && name.range(of: "^[A-Za-z][A-Za-z0-9_]{0,62}$", options: .regularExpression) == nil {
            r.error("metadata.name", "must start with a letter and hold only letters, digits and _ (at most 63 characters)")
        }
        self.name = name
        let instances = r.int("metadata.instance") ?? 1
        if instances < 1 { r.error("metadata.instance", "must be at least 1 (got \(instances))") }
        self.instances = instances
        enableWebservice = r.bool("metadata.enable_webservice") ?? false
        let type = r.string("metadata.type")
        if let type, type != "Async" { r.error("metadata.type", "the only service type is \"Async\" (got \"\(type)\")") }
        async = type == "Async"
        let threads = r.int("metadata.rpc.worker_threads", flat: true) ?? 1
        if threads < 1 || threads > 64 { r.error("metadata.rpc.worker_threads", "must be 1…64 (got \(threads))") }
        workerThreads = threads

        // containers
        var image = "", script = WebUIScript(program: "", flags: []), port: Int?
        switch r.value("containers") {
        case .array(let list) where !list.isEmpty:
            if list.count > 1 { r.warning("containers", "only the first container runs the WebUI; \(list.count - 1) more are recorded") }
            r.known("containers[0]", ["image", "script", "port", "command", "env", "resources", "prepare"])
            image = r.string("containers[0].image", required: true) ?? ""
            let text = r.string("containers[0].script", required: true) ?? ""
            if !text.isEmpty {
                do { script = try WebUIScript(parsing: text) } catch { r.error("containers[0].script", "\(error)") }
            }
            port = r.int("containers[0].port")
            if let p = port, !(1...65535).contains(p) { r.error("containers[0].port", "must be 1…65535 (got \(p))") }
        case .array: r.error("containers", "must hold one container")
        case nil, .null?: r.error("containers", "missing")
        default: r.error("containers", "expected an array")
        }
        self.image = image
        self.script = script
        self.port = port
        if let p = port, let flag = script.value("--port"), Int(flag) != p {
            r.error("containers[0].port", "\(p) differs from --port \(flag) in containers[0].script")
        }

        // edition: metadata.edition, else the image tag's suffix, else Async → api
        var edition: Edition = async ? .api : .standard
        let tag = image.split(separator: "/").last.flatMap { $0.split(separator: ":").dropFirst().first }.map(String.init) ?? ""
        if tag.hasSuffix("-cluster-webui") { edition = .cluster } else if tag.hasSuffix("-api") { edition = .api } else if tag.hasSuffix("-standard") { edition = .standard }
        if let e = r.string("metadata.edition") {
            if let v = Edition(rawValue: e) { edition = v } else { r.error("metadata.edition", "must be standard, api, cluster or serverless (got \"\(e)\")") }
        }
        self.edition = edition
        switch edition {
        case .standard:
            if instances != 1 { r.error("metadata.instance", "the standard edition runs exactly one instance (got \(instances)); several instances belong to the API edition (metadata.type \"Async\")") }
            if async { r.error("metadata.type", "\"Async\" makes an API-edition service, but the image tag says standard") }
        case .api:
            if !async { r.error("metadata.type", "the API edition needs \"Async\" (its queue)") }
            if enableWebservice { r.warning("metadata.enable_webservice", "the API edition serves no WebUI; the seed says to remove it") }
            if script.has("--filebrowser") { r.warning("containers[0].script", "--filebrowser slows the API edition's start; the seed says to remove it") }
        case .cluster, .serverless:
            r.error(r.has("metadata.edition") ? "metadata.edition" : "containers[0].image", "the \(edition.rawValue) edition is not deployable yet (standard and api are)")
        }

        // queue
        r.known("queue", ["cpu", "memory", "max_delivery", "resource", "max_length", "max_payload_size"])
        let maxDelivery = r.int("queue.max_delivery") ?? 5
        if maxDelivery < 0 { r.error("queue.max_delivery", "must be ≥ 0 (0 = unlimited)") }
        self.maxDelivery = maxDelivery
        for key in ["queue.cpu", "queue.memory"] { if let v = r.int(key), v < 1 { r.error(key, "must be positive") } }
        _ = r.string("queue.resource")
        if r.has("queue") && !async { r.warning("queue", "a queue is made only for metadata.type \"Async\"; ignored") }

        // storage
        var mounts: [StorageMount] = []
        var hasNFS = false
        switch r.value("storage") {
        case .array(let list):
            for i in list.indices {
                let p = "storage[\(i)]"
                guard case .object = list[i] else { r.error(p, "expected an object"); continue }
                r.known(p, ["oss", "nfs", "mount_path", "properties", "git", "pai_model", "empty_dir"])
                let mountPath = r.string("\(p).mount_path", required: true) ?? ""
                if !mountPath.isEmpty {
                    let clean = URL(fileURLWithPath: mountPath).standardizedFileURL.path
                    if !mountPath.hasPrefix("/") {
                        r.error("\(p).mount_path", "must be an absolute container path")
                    } else if !allowedMountRoots.contains(where: { clean == $0 || clean.hasPrefix($0 + "/") }) {
                        r.error("\(p).mount_path", "\(mountPath) is outside the allowed roots (\(allowedMountRoots.joined(separator: ", ")))")
                    }
                }
                var source: StorageMount.Source?
                var readOnly = false
                let kinds = ["oss", "nfs", "git", "pai_model", "empty_dir"].filter { r.has("\(p).\($0)") }
                if kinds.count > 1 { r.error(p, "give one of oss or nfs (found \(kinds.joined(separator: " and ")))") }
                if r.has("\(p).oss") {
                    r.known("\(p).oss", ["path", "readOnly", "endpoint"])
                    if let path = r.string("\(p).oss.path", required: true) {
                        if let b = BucketPathSyntax(path) { source = .oss(bucket: b.bucket, prefix: b.prefix) } else {
                            r.error("\(p).oss.path", "expected oss://bucket/prefix (got \"\(path)\")")
                        }
                    }
                    readOnly = r.bool("\(p).oss.readOnly") ?? false
                    _ = r.string("\(p).oss.endpoint")
                } else if r.has("\(p).nfs") {
                    hasNFS = true
                    r.known("\(p).nfs", ["server", "path", "readOnly"])
                    let server = r.string("\(p).nfs.server", required: true) ?? ""
                    let path = r.string("\(p).nfs.path") ?? "/"
                    if !path.hasPrefix("/") || path.split(separator: "/").contains("..") { r.error("\(p).nfs.path", "must be an absolute path without ..") }
                    readOnly = r.bool("\(p).nfs.readOnly") ?? false
                    if !server.isEmpty { source = .nfs(server: server, path: path) }
                } else if kinds.isEmpty {
                    r.error(p, "missing: give oss or nfs")
                } else {
                    r.warning("\(p).\(kinds[0])", "\(kinds[0]) mounts are recorded but not mounted by Atelier")
                }
                if let source, !mountPath.isEmpty {
                    if let first = mounts.first(where: { $0.mountPath == mountPath }) {
                        r.warning("\(p).mount_path", "\(mountPath) is also storage[\(first.index)]'s mount path; storage[\(first.index)] is used (the seed shows OSS and NAS as alternatives)")
                    } else {
                        mounts.append(StorageMount(source: source, mountPath: mountPath, readOnly: readOnly, index: i))
                    }
                }
            }
        case nil, .null?: break
        default: r.error("storage", "expected an array")
        }
        self.mounts = mounts
        if hasNFS {
            for key in ["vpc_id", "vswitch_id", "security_group_id"] where r.string("cloud.networking.\(key)") == nil {
                r.warning("cloud.networking.\(key)", "missing; the cloud service needs it for a NAS mount (no effect locally)")
            }
        }
        // cloud: recorded, no local effect
        r.known("cloud", ["computing", "networking", "logging"])
        r.known("cloud.computing", ["instance_type", "instances", "instance_types", "spot"])
        _ = r.string("cloud.computing.instance_type")
        if let v = r.value("cloud.computing.instances"), v != .null, r.array("cloud.computing.instances") == nil {
            r.error("cloud.computing.instances", "expected null or an array")
        }
        if case .object(let f)? = r.value("features") {
            for (k, v) in f where v.string == nil { r.error("features.\(k)", "expected a string") }
        } else if let f = r.value("features"), f != .null { r.error("features", "expected an object of strings") }

        // the script's data dir must be inside a mount (else the instance's own disk)
        if let dataDir = script.value("--data-dir") {
            let abs = Self.containerPath(dataDir)
            if !mounts.isEmpty && !mounts.contains(where: { abs == $0.mountPath || abs.hasPrefix($0.mountPath + "/") }) {
                r.warning("containers[0].script", "--data-dir \(dataDir) is not under a storage mount_path: the instance's data stay on local disk")
            }
        } else if !mounts.isEmpty {
            r.warning("containers[0].script", "no --data-dir: the mounted storage is not used (add --data-dir=\(mounts[0].mountPath))")
        }
        for flag in script.flags where !WebUIScript.knownFlags.keys.contains(flag.name) {
            r.warning("containers[0].script", "unknown flag \(flag.name): ignored")
        }
        diagnostics = r.diagnostics
        if diagnostics.contains(where: { $0.severity == .error }) { throw SpecError(diagnostics: diagnostics) }
    }

    /// A container path read against the WebUI root (`data` → `/code/stable-diffusion-webui/data`).
    public static func containerPath(_ p: String) -> String {
        URL(fileURLWithPath: p.hasPrefix("/") ? p : webuiRoot + "/" + p).standardizedFileURL.path
    }

    static func jsonErrorText(_ error: Error) -> String {
        let ns = error as NSError
        return (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
    }

    /// The instance's data dir inside the container (`--data-dir`, else the WebUI root's `data`).
    public var containerDataDir: String { Self.containerPath(script.value("--data-dir") ?? "data") }

    /// The mount that holds the data dir, and the data dir's path inside it.
    public var dataMount: (mount: StorageMount, subpath: String)? {
        let d = containerDataDir
        for m in mounts.sorted(by: { $0.mountPath.count > $1.mountPath.count }) where d == m.mountPath || d.hasPrefix(m.mountPath + "/") {
            return (m, String(d.dropFirst(m.mountPath.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/")))
        }
        return nil
    }
}

/// `oss://bucket/prefix` syntax (the storage layer has the client; the spec only checks the shape).
struct BucketPathSyntax {
    let bucket: String
    let prefix: String
    init?(_ url: String) {
        guard url.hasPrefix("oss://") || url.hasPrefix("s3://") else { return nil }
        let rest = url.drop(while: { $0 != "/" }).dropFirst(2)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let b = parts.first, b.range(of: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", options: .regularExpression) != nil else { return nil }
        bucket = String(b)
        prefix = parts.count > 1 ? parts[1].split(separator: "/").joined(separator: "/") : ""
    }
}

/// Walks a JSON document by dotted paths (`storage[1].nfs.server`), collecting diagnostics.
struct SpecReader {
    let root: JSONValue
    var diagnostics: [SpecDiagnostic] = []

    init(root: JSONValue) { self.root = root }

    mutating func error(_ path: String, _ message: String) { diagnostics.append(.init(severity: .error, path: path, message: message)) }
    mutating func warning(_ path: String, _ message: String) { diagnostics.append(.init(severity: .warning, path: path, message: message)) }

    /// `flat`: the last component is one key containing a dot (`metadata["rpc.worker_threads"]`).
    func value(_ path: String, flat: Bool = false) -> JSONValue? {
        var parts: [String] = []
        if flat, let dot = path.firstIndex(of: ".") {
            parts = [String(path[..<dot]), String(path[path.index(after: dot)...])]
        } else {
            parts = path.isEmpty ? [] : path.split(separator: ".").map(String.init)
        }
        var v: JSONValue? = root
        for part in parts {
            var key = Substring(part)
            var indexes: [Int] = []
            while key.hasSuffix("]"), let open = key.lastIndex(of: "[") {
                indexes.insert(Int(key[key.index(after: open)..<key.index(before: key.endIndex)]) ?? -1, at: 0)
                key = key[..<open]
            }
            if case .object(let o)? = v { v = o[String(key)] } else { return nil }
            for i in indexes {
                if case .array(let a)? = v, a.indices.contains(i) { v = a[i] } else { return nil }
            }
        }
        return v
    }

    func has(_ path: String) -> Bool {
        if let v = value(path), v != .null { return true }
        return false
    }

    mutating func string(_ path: String, required: Bool = false) -> String? {
        switch value(path) {
        case .string(let s)?:
            if required && s.trimmingCharacters(in: .whitespaces).isEmpty { error(path, "must not be empty"); return nil }
            return s
        case nil, .null?: if required { error(path, "missing") }; return nil
        case let v?: error(path, "expected a string, got \(Self.kind(v))"); return nil
        }
    }

    mutating func int(_ path: String, flat: Bool = false) -> Int? {
        switch value(path, flat: flat) {
        case .int(let i)?: return i
        case .double(let d)? where d == d.rounded() && abs(d) < 1e15: return Int(d)
        case nil, .null?: return nil
        case let v?: error(path, "expected an integer, got \(Self.kind(v))"); return nil
        }
    }

    mutating func bool(_ path: String) -> Bool? {
        switch value(path) {
        case .bool(let b)?: return b
        case nil, .null?: return nil
        case let v?: error(path, "expected true or false, got \(Self.kind(v))"); return nil
        }
    }

    func array(_ path: String) -> [JSONValue]? { if case .array(let a)? = value(path) { return a } else { return nil } }

    /// Warns about keys of the object at `path` that Atelier does not know (kept, not acted on).
    mutating func known(_ path: String, _ keys: Set<String>) {
        guard case .object(let o)? = value(path) else {
            if let v = value(path), v != .null, !path.isEmpty { error(path, "expected an object, got \(Self.kind(v))") }
            return
        }
        for k in o.keys.sorted() where !keys.contains(k) {
            warning(path.isEmpty ? k : "\(path).\(k)", "unknown field; kept but not acted on")
        }
    }

    static func kind(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
