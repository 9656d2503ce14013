import AsyncHTTPClient
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Where an S3-compatible object store is and how to sign for it (from the controller's config
/// or the environment: `ATELIER_S3_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
public struct S3Configuration: Sendable, Codable, Equatable {
    /// `http(s)://host:port` of the store
    public var endpoint: String
    public var region: String
    public var accessKey: String
    public var secretKey: String
    /// `endpoint/bucket/key` (true, SeaweedFS, MinIO) or `bucket.endpoint/key`
    public var pathStyle: Bool

    public init(endpoint: String, region: String = "us-east-1", accessKey: String, secretKey: String, pathStyle: Bool = true) {
        self.endpoint = endpoint
        self.region = region
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.pathStyle = pathStyle
    }

    /// From the environment; nil when no endpoint is set.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> S3Configuration? {
        guard let endpoint = env["ATELIER_S3_ENDPOINT"], !endpoint.isEmpty else { return nil }
        return S3Configuration(endpoint: endpoint, region: env["AWS_REGION"] ?? "us-east-1",
                               accessKey: env["AWS_ACCESS_KEY_ID"] ?? "", secretKey: env["AWS_SECRET_ACCESS_KEY"] ?? "",
                               pathStyle: env["ATELIER_S3_PATH_STYLE"].map { $0 != "false" && $0 != "0" } ?? true)
    }

    public var environment: [String: String] {
        ["ATELIER_S3_ENDPOINT": endpoint, "AWS_REGION": region, "AWS_ACCESS_KEY_ID": accessKey,
         "AWS_SECRET_ACCESS_KEY": secretKey, "ATELIER_S3_PATH_STYLE": pathStyle ? "true" : "false"]
    }
}

/// `oss://bucket/prefix` (or `s3://…`): a bucket and a key prefix without leading or trailing `/`.
public struct BucketPath: Sendable, Equatable, CustomStringConvertible {
    public let bucket: String
    public let prefix: String

    public init(bucket: String, prefix: String) {
        self.bucket = bucket
        self.prefix = prefix.split(separator: "/").joined(separator: "/")
    }

    public init?(_ url: String) {
        guard let r = url.range(of: "://"), ["oss", "s3"].contains(url[..<r.lowerBound].lowercased()) else { return nil }
        let rest = url[r.upperBound...]
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let b = parts.first, !b.isEmpty,
              b.range(of: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", options: .regularExpression) != nil else { return nil }
        self.init(bucket: String(b), prefix: parts.count > 1 ? String(parts[1]) : "")
    }

    /// The key of a path relative to the prefix.
    public func key(_ relative: String) -> String {
        let r = relative.split(separator: "/").joined(separator: "/")
        return prefix.isEmpty ? r : r.isEmpty ? prefix : "\(prefix)/\(r)"
    }

    public var description: String { "oss://\(bucket)/\(prefix)" }
}

/// One object in a listing or a HEAD.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64
    /// without quotes
    public var etag: String
}

/// An S3 error answer (`<Error><Code>…`), or a transport failure, with what was asked.
public struct S3Error: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let code: String
    public let message: String
    public let operation: String
    public var description: String { "S3 \(operation): HTTP \(status) \(code)\(message.isEmpty ? "" : ": \(message)")" }
}

/// A small S3 client on async-http-client: GET (whole or ranged, or streamed to a file), PUT,
/// multipart upload, HEAD, DELETE, ListObjectsV2 with continuation; every request SigV4-signed.
public final class S3Client: Sendable {
    public let configuration: S3Configuration
    let signer: SigV4Signer
    let http: HTTPClient
    /// parts of a multipart upload (S3's minimum is 5 MiB except the last)
    public let partSize: Int
    /// files at least this big go up in parts
    public let multipartThreshold: Int

    public init(configuration: S3Configuration, http: HTTPClient = .shared, partSize: Int = 8 << 20, multipartThreshold: Int = 16 << 20) {
        self.configuration = configuration
        signer = SigV4Signer(accessKey: configuration.accessKey, secretKey: configuration.secretKey, region: configuration.region)
        self.http = http
        self.partSize = max(partSize, 5 << 20)
        self.multipartThreshold = multipartThreshold
    }

    struct Target {
        let url: String
        let host: String
        let path: String
    }

    func target(bucket: String, key: String?, query: [(String, String)]) throws -> Target {
        guard let base = URL(string: configuration.endpoint), let scheme = base.scheme, var host = base.host else {
            throw S3Error(status: 0, code: "BadEndpoint", message: "endpoint \(configuration.endpoint) is not a URL", operation: "connect")
        }
        if let port = base.port { host += ":\(port)" }
        var path: String
        if configuration.pathStyle {
            path = "/\(bucket)" + (key.map { "/\($0)" } ?? "/")
        } else {
            host = "\(bucket).\(host)"
            path = "/" + (key ?? "")
        }
        if key == nil && configuration.pathStyle { path = "/\(bucket)" }
        let q = SigV4Signer.canonicalQuery(query)
        let url = "\(scheme)://\(host)\(SigV4Signer.canonicalPath(path))" + (q.isEmpty ? "" : "?\(q)")
        return Target(url: url, host: host, path: path)
    }

    /// Sends one signed request; a non-2xx answer becomes an `S3Error` (404 included; callers that
    /// expect absence catch it).
    func send(_ method: HTTPMethod, bucket: String, key: String?, query: [(String, String)] = [], headers: [String: String] = [:],
              body: Data? = nil, operation: String, timeout: TimeAmount = .seconds(300)) async throws -> HTTPClientResponse {
        let t = try target(bucket: bucket, key: key, query: query)
        var toSign = headers
        toSign["host"] = t.host
        let payload = body.map(SigV4Signer.payloadHash) ?? SigV4Signer.emptyPayloadHash
        let auth = signer.sign(method: method.rawValue, path: t.path, query: query, headers: toSign, payloadHash: payload, date: Date())
        var request = HTTPClientRequest(url: t.url)
        request.method = method
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        for (k, v) in auth { request.headers.add(name: k, value: v) }
        if let body {
            request.body = .bytes(ByteBuffer(data: body))
            request.headers.replaceOrAdd(name: "content-length", value: String(body.count))
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: timeout)
        } catch {
            throw S3Error(status: 0, code: "Unreachable", message: "\(configuration.endpoint): \(error)", operation: operation)
        }
        guard (200..<300).contains(Int(response.status.code)) else {
            let data = (try? await response.body.collect(upTo: 1 << 20)).map { Data(buffer: $0) } ?? Data()
            let xml = XMLFields(data)
            throw S3Error(status: Int(response.status.code), code: xml.first("Code") ?? response.status.reasonPhrase,
                          message: xml.first("Message") ?? "", operation: operation)
        }
        return response
    }

    static func etag(_ response: HTTPClientResponse) -> String {
        (response.headers.first(name: "etag") ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    // MARK: objects

    /// Puts one object; returns its ETag.
    @discardableResult
    public func put(bucket: String, key: String, data: Data, contentType: String = "application/octet-stream") async throws -> String {
        let r = try await send(.PUT, bucket: bucket, key: key, headers: ["content-type": contentType], body: data, operation: "PUT \(bucket)/\(key)")
        return Self.etag(r)
    }

    /// Gets an object (or `range` of it, inclusive byte offsets).
    public func get(bucket: String, key: String, range: ClosedRange<Int64>? = nil, maxBytes: Int = 64 << 20) async throws -> Data {
        var headers: [String: String] = [:]
        if let range { headers["range"] = "bytes=\(range.lowerBound)-\(range.upperBound)" }
        let r = try await send(.GET, bucket: bucket, key: key, headers: headers, operation: "GET \(bucket)/\(key)")
        return Data(buffer: try await r.body.collect(upTo: maxBytes))
    }

    /// Streams an object into a file (written beside it, then renamed); returns its ETag.
    @discardableResult
    public func download(bucket: String, key: String, to file: URL) async throws -> String {
        let r = try await send(.GET, bucket: bucket, key: key, operation: "GET \(bucket)/\(key)", timeout: .hours(2))
        let fm = FileManager.default
        try fm.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        let partial = file.deletingLastPathComponent().appendingPathComponent(".\(file.lastPathComponent).part")
        fm.createFile(atPath: partial.path, contents: nil)
        let handle = try FileHandle(forWritingTo: partial)
        do {
            for try await chunk in r.body { try handle.write(contentsOf: Data(buffer: chunk)) }
            try handle.close()
        } catch {
            try? handle.close()
            try? fm.removeItem(at: partial)
            throw error
        }
        if fm.fileExists(atPath: file.path) { try fm.removeItem(at: file) }
        try fm.moveItem(at: partial, to: file)
        return Self.etag(r)
    }

    /// Size and ETag, or nil when there is no such object.
    public func head(bucket: String, key: String) async throws -> ObjectInfo? {
        do {
            let r = try await send(.HEAD, bucket: bucket, key: key, operation: "HEAD \(bucket)/\(key)")
            return ObjectInfo(key: key, size: Int64(r.headers.first(name: "content-length") ?? "") ?? 0, etag: Self.etag(r))
        } catch let e as S3Error where e.status == 404 {
            return nil
        }
    }

    public func delete(bucket: String, key: String) async throws {
        _ = try await send(.DELETE, bucket: bucket, key: key, operation: "DELETE \(bucket)/\(key)")
    }

    /// Every object under `prefix` (ListObjectsV2, following continuation tokens).
    public func list(bucket: String, prefix: String, pageSize: Int = 1000) async throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix), ("max-keys", String(pageSize))]
            if let token { query.append(("continuation-token", token)) }
            let r = try await send(.GET, bucket: bucket, key: nil, query: query, operation: "LIST \(bucket)/\(prefix)")
            let xml = XMLFields(Data(buffer: try await r.body.collect(upTo: 64 << 20)))
            out += xml.contents.map { ObjectInfo(key: $0["Key"] ?? "", size: Int64($0["Size"] ?? "") ?? 0,
                                                 etag: ($0["ETag"] ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "\""))) }
            token = xml.first("IsTruncated") == "true" ? xml.first("NextContinuationToken") : nil
        } while token != nil
        return out
    }

    /// Creates a bucket (the tests' and the operator's convenience; 409 "already yours" is fine).
    public func createBucket(_ bucket: String) async throws {
        do {
            _ = try await send(.PUT, bucket: bucket, key: nil, operation: "CREATE BUCKET \(bucket)")
        } catch let e as S3Error where e.code == "BucketAlreadyOwnedByYou" || e.code == "BucketAlreadyExists" {}
    }

    /// Uploads a file: one PUT when small, else a multipart upload (aborted on failure).
    @discardableResult
    public func upload(bucket: String, key: String, file: URL, contentType: String = "application/octet-stream") async throws -> String {
        let size = (try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)?.intValue ?? 0
        guard size >= multipartThreshold else {
            return try await put(bucket: bucket, key: key, data: try Data(contentsOf: file), contentType: contentType)
        }
        let op = "MULTIPART \(bucket)/\(key)"
        let created = try await send(.POST, bucket: bucket, key: key, query: [("uploads", "")], headers: ["content-type": contentType], operation: op)
        guard let uploadID = XMLFields(Data(buffer: try await created.body.collect(upTo: 1 << 20))).first("UploadId") else {
            throw S3Error(status: 0, code: "NoUploadId", message: "CreateMultipartUpload answered without UploadId", operation: op)
        }
        do {
            let handle = try FileHandle(forReadingFrom: file)
            defer { try? handle.close() }
            var parts: [(Int, String)] = []
            var number = 1
            while let chunk = try handle.read(upToCount: partSize), !chunk.isEmpty {
                let r = try await send(.PUT, bucket: bucket, key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)],
                                       body: chunk, operation: "\(op) part \(number)")
                parts.append((number, Self.etag(r)))
                number += 1
            }
            let xml = "<CompleteMultipartUpload>" + parts.map { "<Part><PartNumber>\($0.0)</PartNumber><ETag>\"\($0.1)\"</ETag></Part>" }.joined()
                + "</CompleteMultipartUpload>"
            let done = try await send(.POST, bucket: bucket, key: key, query: [("uploadId", uploadID)],
                                      headers: ["content-type": "application/xml"], body: Data(xml.utf8), operation: "\(op) complete")
            let answer = XMLFields(Data(buffer: try await done.body.collect(upTo: 1 << 20)))
            if let code = answer.first("Code") {  // S3 may answer 200 with an error document
                throw S3Error(status: 200, code: code, message: answer.first("Message") ?? "", operation: "\(op) complete")
            }
            return (answer.first("ETag") ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        } catch {
            _ = try? await send(.DELETE, bucket: bucket, key: key, query: [("uploadId", uploadID)], operation: "\(op) abort")
            throw error
        }
    }
}

/// The few XML answers S3 gives, read flat: the first text of an element, and each `<Contents>`
/// of a listing as a dictionary.
struct XMLFields {
    private(set) var values: [String: [String]] = [:]
    private(set) var contents: [[String: String]] = []

    init(_ data: Data) {
        let reader = Reader()
        let parser = XMLParser(data: data)
        parser.delegate = reader
        _ = parser.parse()
        values = reader.values
        contents = reader.contents
    }

    func first(_ name: String) -> String? { values[name]?.first }

    final class Reader: NSObject, XMLParserDelegate {
        var values: [String: [String]] = [:]
        var contents: [[String: String]] = []
        var current: [String: String]?
        var text = ""

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            if name == "Contents" { current = [:] }
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if name == "Contents", let c = current {
                contents.append(c)
                current = nil
            } else if current != nil {
                current?[name] = text
            } else {
                values[name, default: []].append(text)
            }
            text = ""
        }
    }
}
