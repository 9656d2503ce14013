import AtelierService
import Foundation
import Logging

/// Runs async work to completion from synchronous code that is not on the concurrency pool
/// (the instance's job thread): the S3 client runs on NIO's event loops, so waiting is safe.
func blocking<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await work()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }

/// Outputs of an instance whose data dir is an OSS mount: each file is written into the local
/// copy of the data dir (its path is what `image_url` reports) and put into the bucket before
/// the write returns, so the object exists before the response or the sink result is sent.
/// A `readOnly` mount refuses every write.
public struct BucketStorage: FileStorage {
    public let local: LocalStorage
    public let client: S3Client
    public let bucket: BucketPath
    public let readOnly: Bool

    public init(localRoot: URL, client: S3Client, bucket: BucketPath, readOnly: Bool) {
        local = LocalStorage(root: localRoot)
        self.client = client
        self.bucket = bucket
        self.readOnly = readOnly
    }

    public func write(_ data: Data, to relativePath: String) throws -> String {
        guard !readOnly else {
            throw ServiceError(403, field: "save_images", "cannot save \(relativePath): the data dir's storage \(bucket) is mounted read-only (readOnly: true)")
        }
        let path = try local.write(data, to: relativePath)
        let key = bucket.key(relativePath), client = client, name = bucket.bucket
        do {
            try blocking { _ = try await client.put(bucket: name, key: key, data: data, contentType: "image/png") }
        } catch {
            throw ServiceError(502, field: "save_dir", "saved \(relativePath) locally but could not put it into \(bucket): \(error)")
        }
        return path
    }
}

/// The local copy of an OSS data dir's models: objects under `<prefix>/models/` and
/// `<prefix>/embeddings/` are downloaded into the same relative paths when missing or when their
/// ETag changed, newest first, up to `maxBytes` (older ones beyond the bound are left out and
/// evicted, with a log line); files whose object is gone are removed. Which file came with which
/// ETag is kept in `.atelier-oss-cache.json`; a lock file keeps two instances of one service from
/// syncing the same directory at once.
public struct ModelCache: Sendable {
    public let root: URL
    public let client: S3Client
    public let bucket: BucketPath
    public let maxBytes: Int64
    public static let folders = ["models", "embeddings"]

    public init(root: URL, client: S3Client, bucket: BucketPath, maxBytes: Int64) {
        self.root = root
        self.client = client
        self.bucket = bucket
        self.maxBytes = maxBytes
    }

    struct Entry: Codable { var etag: String; var size: Int64 }

    public struct Report: Sendable, Equatable {
        public var downloaded: [String] = []
        public var kept: [String] = []
        public var removed: [String] = []
        public var skipped: [String] = []
    }

    var indexFile: URL { root.appendingPathComponent(".atelier-oss-cache.json") }

    /// One pass: list, download what changed, evict what is gone or over the bound.
    @discardableResult
    public func sync(logger: Logger? = nil) async throws -> Report {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let lockFD = open(root.appendingPathComponent(".atelier-oss-cache.lock").path, O_CREAT | O_RDWR, 0o644)
        guard lockFD >= 0 else { throw ServiceError(500, "cannot open the cache lock in \(root.path)") }
        defer { close(lockFD) }
        while flock(lockFD, LOCK_EX | LOCK_NB) != 0 { try await Task.sleep(for: .milliseconds(100)) }
        defer { flock(lockFD, LOCK_UN) }

        var index = (try? JSONDecoder().decode([String: Entry].self, from: Data(contentsOf: indexFile))) ?? [:]
        var objects: [(rel: String, info: ObjectInfo)] = []
        let base = bucket.prefix.isEmpty ? "" : bucket.prefix + "/"
        for folder in Self.folders {
            for o in try await client.list(bucket: bucket.bucket, prefix: base + folder + "/") where !o.key.hasSuffix("/") {
                let rel = String(o.key.dropFirst(base.count))
                // a key that would leave the data dir is not a file of it
                guard !rel.split(separator: "/").contains(".."), !rel.hasPrefix("/") else { continue }
                objects.append((rel, o))
            }
        }
        var report = Report()
        var budget = maxBytes
        var wanted = Set<String>()
        // newest first is unknown from a listing; keep what is already cached first, then by name
        let ordered = objects.sorted { (index[$0.rel] != nil ? 0 : 1, $0.rel) < (index[$1.rel] != nil ? 0 : 1, $1.rel) }
        for (rel, info) in ordered {
            guard info.size <= budget else {
                report.skipped.append(rel)  // the caller logs it (once, not at every pass)
                continue
            }
            budget -= info.size
            wanted.insert(rel)
            let file = root.appendingPathComponent(rel)
            if let e = index[rel], e.etag == info.etag, FileManager.default.fileExists(atPath: file.path) {
                report.kept.append(rel)
                continue
            }
            let etag = try await client.download(bucket: bucket.bucket, key: info.key, to: file)
            index[rel] = Entry(etag: etag.isEmpty ? info.etag : etag, size: info.size)
            report.downloaded.append(rel)
            logger?.info("oss cache: downloaded \(bucket.key(rel)) (\(info.size) bytes)")
        }
        for rel in index.keys.sorted() where !wanted.contains(rel) {
            try? FileManager.default.removeItem(at: root.appendingPathComponent(rel))
            index.removeValue(forKey: rel)
            report.removed.append(rel)
        }
        try JSONEncoder().encode(index).write(to: indexFile, options: .atomic)
        return report
    }
}
