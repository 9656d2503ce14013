import ArgumentParser
import AtelierStorage
import Foundation

/// `atelier oss …`: the bucket side of an OSS data dir from the command line (what the seed does
/// with ossutil): upload a model (multipart when large), list, download, delete. The store comes
/// from `ATELIER_S3_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.
struct OSS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "oss", abstract: "Upload, list, download and delete objects of an OSS path on the S3 store.",
                                                    subcommands: [Put.self, List.self, Get.self, Remove.self])

    static func client(partMB: Int = 8, thresholdMB: Int = 16) throws -> S3Client {
        guard let c = S3Configuration.fromEnvironment() else { throw ValidationError("set ATELIER_S3_ENDPOINT (and AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)") }
        guard partMB >= 5 else { throw ValidationError("--part-mb must be at least 5 (S3's minimum part size)") }
        guard thresholdMB >= 1 else { throw ValidationError("--multipart-threshold-mb must be positive") }
        return S3Client(configuration: c, partSize: partMB << 20, multipartThreshold: thresholdMB << 20)
    }

    static func path(_ s: String) throws -> BucketPath {
        guard let p = BucketPath(s) else { throw ValidationError("\(s): expected oss://bucket/key") }
        return p
    }

    struct Put: AsyncParsableCommand {
        @Argument(help: "Local file.") var file: String
        @Argument(help: "oss://bucket/key, or oss://bucket/prefix/ to keep the file's name.") var destination: String
        @Option(help: "Part size of a multipart upload (MiB, ≥ 5).") var partMb = 8
        @Option(help: "Files at least this big go up in parts (MiB).") var multipartThresholdMb = 16
        func run() async throws {
            let c = try OSS.client(partMB: partMb, thresholdMB: multipartThresholdMb)
            var to = try OSS.path(destination)
            if destination.hasSuffix("/") { to = BucketPath(bucket: to.bucket, prefix: to.key(URL(fileURLWithPath: file).lastPathComponent)) }
            guard FileManager.default.isReadableFile(atPath: file) else { throw ValidationError("\(file): cannot read") }
            let etag = try await c.upload(bucket: to.bucket, key: to.prefix, file: URL(fileURLWithPath: file))
            print("\(to) etag \(etag)")
        }
    }

    struct List: AsyncParsableCommand {
        @Argument(help: "oss://bucket/prefix") var path: String
        @Option(help: "Keys per ListObjectsV2 page.") var pageSize = 1000
        func run() async throws {
            guard (1...1000).contains(pageSize) else { throw ValidationError("--page-size must be 1…1000") }
            let p = try OSS.path(path)
            for o in try await OSS.client().list(bucket: p.bucket, prefix: p.prefix, pageSize: pageSize) {
                print("\(o.size)\t\(o.etag)\toss://\(p.bucket)/\(o.key)")
            }
        }
    }

    struct Get: AsyncParsableCommand {
        @Argument(help: "oss://bucket/key") var source: String
        @Argument(help: "Local file (- for stdout).") var file: String
        @Option(help: "Only bytes FROM-TO (inclusive).") var range: String?
        func run() async throws {
            let p = try OSS.path(source)
            let c = try OSS.client()
            if let range {
                let parts = range.split(separator: "-").compactMap { Int64($0) }
                guard parts.count == 2, parts[0] <= parts[1], parts[0] >= 0 else { throw ValidationError("--range: FROM-TO, e.g. 0-99") }
                let data = try await c.get(bucket: p.bucket, key: p.prefix, range: parts[0]...parts[1])
                if file == "-" { FileHandle.standardOutput.write(data) } else { try data.write(to: URL(fileURLWithPath: file)) }
            } else if file == "-" {
                FileHandle.standardOutput.write(try await c.get(bucket: p.bucket, key: p.prefix, maxBytes: 1 << 30))
            } else {
                try await c.download(bucket: p.bucket, key: p.prefix, to: URL(fileURLWithPath: file))
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm")
        @Argument(help: "oss://bucket/key") var path: String
        func run() async throws {
            let p = try OSS.path(path)
            let c = try OSS.client()
            guard try await c.head(bucket: p.bucket, key: p.prefix) != nil else { throw ValidationError("\(path): no such object") }
            try await c.delete(bucket: p.bucket, key: p.prefix)
        }
    }
}
