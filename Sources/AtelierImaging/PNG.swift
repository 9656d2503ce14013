import CSPNG
import CZlib
import Foundation

/// An 8-bit image in memory, row-major, interleaved channels (3 = RGB, 4 = RGBA).
public struct Image8: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "pixel buffer does not match \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

public struct ImageCodecError: Error, CustomStringConvertible {
    public let description: String
    init(_ s: String) { description = s }
}

/// PNG through libspng, with text chunks (A1111 keeps its infotext in `parameters`).
public enum PNG {
    /// Encodes an image with text chunks: Latin-1 text as `tEXt`, anything else as `iTXt`
    /// (UTF-8), as Pillow does.
    public static func encode(_ image: Image8, text: [(String, String)] = []) throws -> Data {
        guard let ctx = spng_ctx_new(Int32(SPNG_CTX_ENCODER.rawValue)) else { throw ImageCodecError("spng: no encoder context") }
        defer { spng_ctx_free(ctx) }
        spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1)
        var ihdr = spng_ihdr()
        ihdr.width = UInt32(image.width)
        ihdr.height = UInt32(image.height)
        ihdr.bit_depth = 8
        ihdr.color_type = UInt8(image.channels == 4 ? SPNG_COLOR_TYPE_TRUECOLOR_ALPHA.rawValue : SPNG_COLOR_TYPE_TRUECOLOR.rawValue)
        try check(spng_set_ihdr(ctx, &ihdr), "set header")

        var pixels = image.pixels
        try check(pixels.withUnsafeMutableBytes {
            spng_encode_image(ctx, $0.baseAddress, $0.count, Int32(SPNG_FMT_PNG.rawValue), Int32(SPNG_ENCODE_FINALIZE.rawValue))
        }, "encode")
        var len = 0
        var err: Int32 = 0
        guard let out = spng_get_png_buffer(ctx, &len, &err) else { throw ImageCodecError("spng: no output (\(err))") }
        defer { free(out) }
        return PNGText.insert(text, into: Data(bytes: out, count: len))
    }

    /// Decodes a PNG to 8-bit RGB or RGBA (RGBA when the file has alpha or transparency).
    public static func decode(_ data: Data) throws -> (image: Image8, text: [String: String]) {
        guard let ctx = spng_ctx_new(0) else { throw ImageCodecError("spng: no decoder context") }
        defer { spng_ctx_free(ctx) }
        let bytes = [UInt8](data)
        return try bytes.withUnsafeBytes { raw -> (Image8, [String: String]) in
            try check(spng_set_png_buffer(ctx, raw.baseAddress, raw.count), "read")
            var ihdr = spng_ihdr()
            try check(spng_get_ihdr(ctx, &ihdr), "header")
            let hasAlpha = ihdr.color_type == UInt8(SPNG_COLOR_TYPE_TRUECOLOR_ALPHA.rawValue)
                || ihdr.color_type == UInt8(SPNG_COLOR_TYPE_GRAYSCALE_ALPHA.rawValue)
            var trns = spng_trns()
            let hasTRNS = spng_get_trns(ctx, &trns) == 0
            let channels = hasAlpha || hasTRNS ? 4 : 3
            let fmt = Int32(channels == 4 ? SPNG_FMT_RGBA8.rawValue : SPNG_FMT_RGB8.rawValue)
            var size = 0
            try check(spng_decoded_image_size(ctx, fmt, &size), "size")
            var pixels = [UInt8](repeating: 0, count: size)
            try check(pixels.withUnsafeMutableBytes { spng_decode_image(ctx, $0.baseAddress, size, fmt, Int32(SPNG_DECODE_TRNS.rawValue)) }, "decode")
            let text = PNGText.read(data)
            let image = Image8(width: Int(ihdr.width), height: Int(ihdr.height), channels: channels, pixels: pixels)
            return (image, text)
        }
    }

    private static func check(_ rc: Int32, _ what: String) throws {
        if rc != 0 { throw ImageCodecError("PNG \(what) failed: \(String(cString: spng_strerror(rc)))") }
    }
}

/// PNG text chunks, written and read directly: `tEXt` for Latin-1 text, `iTXt` (UTF-8,
/// uncompressed) otherwise, as Pillow writes them; `zTXt` and compressed `iTXt` are read too.
public enum PNGText {
    static func chunk(_ type: String, _ body: [UInt8]) -> Data {
        var d = Data()
        let len = UInt32(body.count).bigEndian
        withUnsafeBytes(of: len) { d.append(contentsOf: $0) }
        let typed = Array(type.utf8) + body
        d.append(contentsOf: typed)
        let crc = UInt32(typed.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }).bigEndian
        withUnsafeBytes(of: crc) { d.append(contentsOf: $0) }
        return d
    }

    /// Inserts text chunks right after IHDR.
    public static func insert(_ text: [(String, String)], into png: Data) -> Data {
        guard !text.isEmpty, png.count > 33 else { return png }
        var chunks = Data()
        for (key, value) in text {
            let k = Array(key.utf8.prefix(79))
            if value.unicodeScalars.allSatisfy({ $0.value < 256 }) {
                chunks.append(chunk("tEXt", k + [0] + value.unicodeScalars.map { UInt8($0.value) }))
            } else {
                chunks.append(chunk("iTXt", k + [0, 0, 0, 0, 0] + Array(value.utf8)))
            }
        }
        var out = png.prefix(33)  // signature (8) + IHDR (25)
        out.append(chunks)
        out.append(png.dropFirst(33))
        return Data(out)
    }

    /// All text chunks of a PNG file.
    public static func read(_ png: Data) -> [String: String] {
        let b = [UInt8](png)
        var out: [String: String] = [:]
        var i = 8
        while i + 8 <= b.count {
            let len = Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
            let type = String(decoding: b[(i + 4)..<(i + 8)], as: UTF8.self)
            let start = i + 8, end = start + len
            guard len >= 0, end + 4 <= b.count else { break }
            let body = Array(b[start..<end])
            if let z = body.firstIndex(of: 0) {
                let key = String(decoding: body[..<z], as: UTF8.self)
                switch type {
                case "tEXt":
                    out[key] = String(body[(z + 1)...].map { Character(Unicode.Scalar($0)) })
                case "zTXt":
                    if z + 2 <= body.count, let t = inflate(Array(body[(z + 2)...])) {
                        out[key] = String(t.map { Character(Unicode.Scalar($0)) })
                    }
                case "iTXt":
                    guard z + 3 <= body.count else { break }
                    let compressed = body[z + 1] == 1
                    var j = z + 3
                    guard let lang = body[j...].firstIndex(of: 0) else { break }
                    j = lang + 1
                    guard let trans = body[j...].firstIndex(of: 0) else { break }
                    let raw = Array(body[(trans + 1)...])
                    if let t = compressed ? inflate(raw) : raw { out[key] = String(decoding: t, as: UTF8.self) }
                default: break
                }
            }
            if type == "IEND" { break }
            i = end + 4
        }
        return out
    }

    static func inflate(_ input: [UInt8]) -> [UInt8]? {
        var size = max(1024, input.count * 8)
        for _ in 0..<8 {
            var out = [UInt8](repeating: 0, count: size)
            var outLen = uLongf(size)
            let rc = uncompress(&out, &outLen, input, uLong(input.count))
            if rc == Z_OK { return Array(out.prefix(Int(outLen))) }
            if rc != Z_BUF_ERROR { return nil }
            size *= 4
        }
        return nil
    }
}
