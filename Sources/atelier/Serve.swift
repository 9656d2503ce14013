import ArgumentParser
import AtelierHTTP
import AtelierQueue
import AtelierService
import AtelierStorage
import AtelierTensor
import AtelierModels
import Foundation
import Logging

/// `atelier serve`: the standard edition — the AUTOMATIC1111 API over one instance, with the
/// `webui.sh` flags the cloud service passes.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the AUTOMATIC1111 API (standard edition).")

    @Flag(help: "Listen on all interfaces (default 127.0.0.1).") var listen = false
    @Option(help: "Port (0 picks a free one).") var port: Int = 7860
    @Flag(help: "Serve the API (always on; accepted for webui.sh compatibility).") var api = false
    @Flag(help: "Do not serve the WebUI.") var nowebui = false
    @Option(help: "Data dir (A1111 layout).") var dataDir: String = "data"
    @Option(help: "Checkpoint dir (default DATA/models/Stable-diffusion).") var ckptDir: String?
    @Option(help: "LoRA dir.") var loraDir: String?
    @Option(help: "VAE dir.") var vaeDir: String?
    @Option(help: "A VAE file used for every job instead of the checkpoints' own (A1111's --vae-path).") var vaePath: String?
    @Option(help: "Embeddings dir.") var embeddingsDir: String?
    @Option(help: "Hypernetwork dir.") var hypernetworkDir: String?
    @Option(help: "GFPGAN dir (no effect here).") var gfpganDir: String?
    @Option(help: "Further ControlNet model dir (searched after DATA/models/ControlNet).") var controlnetDir: String?
    @Flag(help: "Log request bodies (without image data).") var apiLog = false
    @Flag(help: "Log per-stage times.") var timeLog = false
    @Flag(help: "Enable the file browser.") var filebrowser = false
    @Option(help: "Tabs to hide in the WebUI, comma-separated.") var alwaysHideTabs: String?
    @Flag(help: "NSFW censor (no effect here).") var enableNsfwCensor = false
    @Option(help: "HTTP Basic credentials user:pass[,user2:pass2].") var apiAuth: String?
    @Option(help: "Compute threads (default: all cores).") var threads: Int?
    @Option(help: "How linear and conv weights stay in memory: auto (float16 where the file stores float16, widened per layer; half the memory, same numbers) or fp32.") var residentWeights: ResidentWeights = .auto
    @Option(help: "Service token (or ATELIER_TOKEN); required as the Authorization header.") var token: String?
    @Option(help: "Write the bound port to this file once listening.") var portFile: String?
    @Flag(help: "Skip sha256 hashing of checkpoints.") var noHashing = false
    @Option(help: "Directory of the WebUI's files (default: Web/ of the Atelier checkout).") var webDir: String?
    @Option(help: "Edition: standard (synchronous API) or api (adds the asynchronous EAS queue).") var edition: String = "standard"
    @Option(help: "API edition: the service name in /api/predict/NAME.") var serviceName: String = "atelier"
    @Option(help: "API edition: jobs taken at once (rpc.worker_threads).") var workerThreads: Int = 1
    @Option(help: "API edition: deliveries of a request before it fails (queue.max_delivery; 0 = unlimited).") var maxDelivery: Int = 5
    @Option(help: "API edition: entries per queue before puts get 429.") var queueMaxLength: Int = 10_000
    @Option(help: "API edition: bytes per queue message before puts get 413.") var queueMaxPayload: Int = 8 << 20
    @Option(help: "API edition: queue database (default DATA/queue.sqlite3).") var queueDb: String?
    @Option(help: "The path clients know the data dir by (a deployed instance's container mount path); image_url reports it.") var mountPath: String?
    @Option(help: "This instance's name, reported as info.hostname (set by the controller).") var instanceName: String?
    @Option(help: "The data dir is a copy of this bucket path (oss://bucket/prefix) on the S3 store of ATELIER_S3_ENDPOINT: models are synced from it, outputs put into it.") var ossPath: String?
    @Flag(help: "The bucket is mounted read-only: saving fails clearly.") var ossReadOnly = false
    @Option(help: "The data dir is storage mounted read-only (say which, for the error): saving fails clearly.") var readOnlyStorage: String?
    @Option(help: "Bound of the local model copy of --oss-path (MiB).") var ossCacheMb: Int = 20_480
    @Option(help: "Seconds between two refreshes of the local model copy of --oss-path.") var ossSyncSeconds: Double = 10
    @Argument(parsing: .allUnrecognized, help: "GPU-only and environment flags of webui.sh (accepted, no effect).") var ignored: [String] = []

    static let noEffectFlags: Set<String> = ["--xformers", "--blade", "--sd-dynamic-cache", "--min-ram-reserved", "--skip-version-check",
        "--no-download-sd-model", "--skip-prepare-environment", "--skip-torch-cuda-test", "--no-half", "--no-half-vae",
        "--medvram", "--lowvram", "--opt-sdp-attention", "--disable-safe-unpickle", "--enable-insecure-extension-access",
        "--skip-install", "--disable-nan-check", "--precision", "--upcast-sampling", "--share", "--theme", "--cors-allow-origins"]

    /// `Web/` beside the executable's checkout (`.build/release/atelier` → `../../Web`) or the cwd.
    static func defaultWebDir() -> String? {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        var candidates = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Web")]
        var dir = exe
        for _ in 0..<4 {
            candidates.append(dir.appendingPathComponent("Web"))
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("index.html").path) }?.path
    }

    func run() async throws {
        var logger = Logger(label: "atelier")
        logger.logLevel = .info
        for flag in ignored where flag.hasPrefix("--") {
            let name = String(flag.split(separator: "=")[0])
            guard Self.noEffectFlags.contains(name) else { throw ValidationError("unknown flag \(name)") }
            logger.notice("\(name) has no effect in Atelier (CPU engine); ignored")
        }
        ResidentWeights.current = residentWeights
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be positive") }
            Compute.setThreads(threads)
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        logger.info("compute: \(Compute.threads) threads, GEMM tiles \(GEMM.wide ? "AVX-512" : "AVX2")")
        let root = URL(fileURLWithPath: dataDir)
        func dir(_ s: String?) -> URL? { s.map { URL(fileURLWithPath: $0) } }
        var data = DataDirectory(root: root, checkpointDir: dir(ckptDir), loraDir: dir(loraDir), vaeDir: dir(vaeDir),
                                 embeddingsDir: dir(embeddingsDir), hypernetworkDir: dir(hypernetworkDir),
                                 controlNetDirs: controlnetDir.map { [URL(fileURLWithPath: $0)] } ?? [])
        // model files' sha256, kept across restarts as A1111's cache.json
        FileHashes.shared.persist(in: root.appendingPathComponent("cache/hashes.json"))
        if let vaePath {
            // checked now (operator flags are trusted but validated): a readable VAE file
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: vaePath, isDirectory: &isDir), !isDir.boolValue else {
                throw ValidationError("--vae-path \(vaePath): no such file")
            }
            guard VAELibrary.extensions.contains(URL(fileURLWithPath: vaePath).pathExtension.lowercased()) else {
                throw ValidationError("--vae-path \(vaePath): not a .safetensors, .pt or .ckpt file")
            }
            data.vaePath = URL(fileURLWithPath: vaePath)
        }
        if let controlnetDir {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: controlnetDir, isDirectory: &isDir), isDir.boolValue else {
                throw ValidationError("--controlnet-dir \(controlnetDir): not a directory")
            }
        }
        if let mountPath {
            guard mountPath.hasPrefix("/") else { throw ValidationError("--mount-path must be absolute") }
            data.mountPath = URL(fileURLWithPath: mountPath).standardizedFileURL.path
        }
        var storage: (any FileStorage)?
        if let ossPath {
            guard let bucket = BucketPath(ossPath) else { throw ValidationError("--oss-path \(ossPath): expected oss://bucket/prefix") }
            guard let s3 = S3Configuration.fromEnvironment() else { throw ValidationError("--oss-path needs ATELIER_S3_ENDPOINT (and AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)") }
            guard ossCacheMb > 0 else { throw ValidationError("--oss-cache-mb must be positive") }
            guard ossSyncSeconds >= 0.1 && ossSyncSeconds <= 86_400 else { throw ValidationError("--oss-sync-seconds must be 0.1…86400") }
            let client = S3Client(configuration: s3)
            let cache = ModelCache(root: data.root, client: client, bucket: bucket, maxBytes: Int64(ossCacheMb) << 20)
            let bound = ossCacheMb, cacheLogger = logger
            @Sendable func logSkipped(_ skipped: [String], before: Set<String>) {
                for rel in skipped where !before.contains(rel) {
                    cacheLogger.warning("oss cache: \(rel) left out: the local model copy is bounded to \(bound) MiB (--oss-cache-mb)")
                }
            }
            var skipped: Set<String>
            do {
                let report = try await cache.sync(logger: logger)
                logger.info("oss: \(bucket): \(report.downloaded.count) model file(s) downloaded, \(report.kept.count) kept, \(report.removed.count) removed")
                logSkipped(report.skipped, before: [])
                skipped = Set(report.skipped)
            } catch {
                throw ValidationError("--oss-path \(ossPath): cannot read the bucket: \(error)")
            }
            storage = BucketStorage(localRoot: data.root, client: client, bucket: bucket, readOnly: ossReadOnly)
            data.checkpointUploadHint = "oss://\(bucket.bucket)/\(bucket.key("models/Stable-diffusion"))/"
            // models uploaded later appear without a restart: the copy is refreshed every --oss-sync-seconds
            let every = ossSyncSeconds
            Task.detached { [skipped] in
                var before = skipped
                while true {
                    try? await Task.sleep(for: .seconds(every))
                    guard let report = try? await cache.sync(logger: cacheLogger) else { continue }
                    logSkipped(report.skipped, before: before)
                    before = Set(report.skipped)
                }
            }
        }
        if let readOnlyStorage, storage == nil { storage = ReadOnlyStorage(description: readOnlyStorage) }
        let instance = try Instance(data: data, hashing: !noHashing, storage: storage)
        var config = ServerConfiguration()
        config.host = listen ? "0.0.0.0" : "127.0.0.1"
        config.port = port
        config.token = token ?? ProcessInfo.processInfo.environment["ATELIER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let apiAuth {
            config.apiAuth = try apiAuth.split(separator: ",").map { pair in
                guard let c = pair.firstIndex(of: ":") else { throw ValidationError("--api-auth: expected user:pass") }
                return (String(pair[..<c]), String(pair[pair.index(after: c)...]))
            }
        }
        config.apiLog = apiLog
        config.instanceName = instanceName
        config.fileBrowser = filebrowser
        if !nowebui {
            guard let web = webDir ?? Self.defaultWebDir() else {
                throw ValidationError("cannot find the WebUI files (Web/); pass --web-dir or --nowebui")
            }
            guard FileManager.default.fileExists(atPath: web + "/index.html") else { throw ValidationError("--web-dir \(web): no index.html") }
            config.webDir = web
        }
        config.cmdFlags = [
            "data_dir": .string(data.root.path), "models_dir": .string(data.root.appendingPathComponent("models").path),
            "ckpt_dir": .string(data.checkpointDir.path), "lora_dir": .string(data.loraDir.path), "vae_dir": .string(data.vaeDir.path),
            "embeddings_dir": .string(data.embeddingsDir.path), "hypernetwork_dir": .string(data.hypernetworkDir.path),
            "controlnet_dir": controlnetDir.map(JSONValue.string) ?? .null,
            "api": .bool(true), "nowebui": .bool(nowebui), "listen": .bool(listen), "port": .int(port), "api_auth": .null,
            "api_log": .bool(apiLog), "no_hashing": .bool(noHashing), "xformers": .bool(false), "filebrowser": .bool(filebrowser),
            "threads": .int(Compute.threads), "resident_weights": .string(residentWeights.rawValue),
            "always_hide_tabs": alwaysHideTabs.map(JSONValue.string) ?? .null,
        ]
        var queue: QueueSetup?
        switch edition {
        case "standard": break
        case "api":
            guard serviceName.range(of: "^[A-Za-z0-9_-]{1,128}$", options: .regularExpression) != nil else {
                throw ValidationError("--service-name: letters, digits, _ and - only (1–128 characters)")
            }
            guard workerThreads >= 1 && workerThreads <= 64 else { throw ValidationError("--worker-threads must be 1…64") }
            guard maxDelivery >= 0 else { throw ValidationError("--max-delivery must be ≥ 0 (0 = unlimited)") }
            guard queueMaxLength >= 1 else { throw ValidationError("--queue-max-length must be ≥ 1") }
            guard queueMaxPayload >= 1024 else { throw ValidationError("--queue-max-payload must be ≥ 1024 bytes") }
            var qc = QueueConfiguration()
            qc.maxDelivery = maxDelivery
            qc.maxLength = queueMaxLength
            qc.maxPayloadBytes = queueMaxPayload
            let dbPath = queueDb ?? data.root.appendingPathComponent("queue.sqlite3").path
            let store: any QueueStore
            let backend: String
            if dbPath.hasPrefix("postgres://") || dbPath.hasPrefix("postgresql://") {
                do { store = try await PostgresQueueStore(url: dbPath) } catch { throw ValidationError("--queue-db: \(error)") }
                backend = "postgres"
            } else {
                do { store = try SQLiteQueueStore(path: dbPath) } catch { throw ValidationError("--queue-db: \(error)") }
                backend = "sqlite"
            }
            let service = QueueService(name: serviceName, store: store, configuration: qc) { entry, reason in
                QueueWorkers.failureBody(request: entry.frame.data, message: "delivered \(entry.deliveries) time(s) without success: \(reason)")
            }
            queue = QueueSetup(service: service, workerThreads: workerThreads, backend: backend)
            logger.info("API edition: queue \(serviceName) and \(serviceName)/sink in \(backend == "postgres" ? "PostgreSQL" : dbPath), \(workerThreads) worker thread(s), max_delivery \(maxDelivery)")
        default: throw ValidationError("--edition must be standard or api")
        }
        config.cmdFlags["edition"] = .string(edition)
        if instance.library.list(computeHashes: false).isEmpty { logger.warning("\(instance.noCheckpointHelp)") }
        let server = AtelierServer(instance: instance, configuration: config, queue: queue, logger: logger)
        let portFile = self.portFile
        let host = config.host
        try await server.run { bound in
            print("Atelier listening on http://\(host):\(bound)")
            fflush(stdout)
            if let portFile { try? String(bound).write(toFile: portFile, atomically: true, encoding: .utf8) }
        }
    }
}
