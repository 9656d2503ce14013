import Crypto
import Foundation

/// AWS Signature Version 4 for S3 (header form): the canonical request, the string to sign and
/// the derived signing key, as in AWS's "Signature Calculations for the Authorization Header".
/// Pure: the caller gives the time, so the published examples are tests.
public struct SigV4Signer: Sendable {
    public let accessKey: String
    public let secretKey: String
    public let region: String
    public let service: String

    public init(accessKey: String, secretKey: String, region: String, service: String = "s3") {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.region = region
        self.service = service
    }

    /// `x-amz-content-sha256` for a body.
    public static func payloadHash(_ body: Data) -> String { hex(SHA256.hash(data: body)) }
    public static let emptyPayloadHash = payloadHash(Data())
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    /// The headers to add to a request: `x-amz-date`, `x-amz-content-sha256` and `Authorization`.
    /// `headers` are the other headers to sign (`host` must be among them).
    public func sign(method: String, path: String, query: [(String, String)], headers: [String: String],
                     payloadHash: String, date: Date) -> [String: String] {
        let amzDate = Self.format(date, "yyyyMMdd'T'HHmmss'Z'")
        let day = String(amzDate.prefix(8))
        var all: [String: String] = [:]
        for (k, v) in headers { all[k.lowercased()] = v }
        all["x-amz-date"] = amzDate
        all["x-amz-content-sha256"] = payloadHash
        let names = all.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(Self.trim(all[$0]!))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let canonicalRequest = [method, Self.canonicalPath(path), Self.canonicalQuery(query), canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")
        var key = SymmetricKey(data: Data(("AWS4" + secretKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        return [
            "x-amz-date": amzDate, "x-amz-content-sha256": payloadHash,
            "Authorization": "AWS4-HMAC-SHA256 Credential=\(accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)",
        ]
    }

    /// RFC 3986 encoding of everything but the unreserved characters (`/` kept in paths).
    public static func uriEncode(_ s: String, keepSlash: Bool) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(UnicodeScalar(b))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    static func canonicalPath(_ path: String) -> String { uriEncode(path.isEmpty ? "/" : path, keepSlash: true) }

    static func canonicalQuery(_ query: [(String, String)]) -> String {
        var pairs: [(String, String)] = query.map { pair in (uriEncode(pair.0, keepSlash: false), uriEncode(pair.1, keepSlash: false)) }
        pairs.sort { a, b in a.0 == b.0 ? a.1 < b.1 : a.0 < b.0 }
        return pairs.map { pair in pair.0 + "=" + pair.1 }.joined(separator: "&")
    }

    static func trim(_ v: String) -> String {
        v.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    static func format(_ d: Date, _ pattern: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = pattern
        return f.string(from: d)
    }
}
