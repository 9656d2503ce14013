import CSPNG
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

        if !text.isEmpty {
            var chunks = [spng_text](repeating: spng_text(), count: text.count)
            var buffers: [UnsafeMutablePointer<CChar>] = []
            defer { buffers.forEach { free($0) } }
            for (i, (key, value)) in text.enumerated() {
                withUnsafeMutableBytes(of: &chunks[i].keyword) { kw in
                    let k = Array(key.utf8.prefix(79))
                    for (j, b) in k.enumerated() { kw[j] = b }
                }
                let latin1 = value.unicodeScalars.allSatisfy { $0.value < 256 }
                let bytes: [UInt8] = latin1 ? value.unicodeScalars.map { UInt8($0.value) } : Array(value.utf8)
                let buf = malloc(bytes.count + 1)!.assumingMemoryBound(to: CChar.self)
                bytes.withUnsafeBufferPointer { if let b = $0.baseAddress { memcpy(buf, b, bytes.count) } }
                buf[bytes.count] = 0
                buffers.append(buf)
                chunks[i].type = Int32(latin1 ? SPNG_TEXT.rawValue : SPNG_ITXT.rawValue)
                chunks[i].length = bytes.count
                chunks[i].text = buf
                chunks[i].compression_flag = 0
                chunks[i].language_tag = latin1 ? nil : UnsafeMutablePointer(mutating: emptyCString)
                chunks[i].translated_keyword = latin1 ? nil : UnsafeMutablePointer(mutating: emptyCString)
            }
            try check(spng_set_text(ctx, &chunks, UInt32(chunks.count)), "set text")
        }
        var pixels = image.pixels
        try check(pixels.withUnsafeMutableBytes {
            spng_encode_image(ctx, $0.baseAddress, $0.count, Int32(SPNG_FMT_PNG.rawValue), Int32(SPNG_ENCODE_FINALIZE.rawValue))
        }, "encode")
        var len = 0
        var err: Int32 = 0
        guard let out = spng_get_png_buffer(ctx, &len, &err) else { throw ImageCodecError("spng: no output (\(err))") }
        defer { free(out) }
        return Data(bytes: out, count: len)
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
            var text: [String: String] = [:]
            var n: UInt32 = 0
            if spng_get_text(ctx, nil, &n) == 0 && n > 0 {
                var chunks = [spng_text](repeating: spng_text(), count: Int(n))
                if spng_get_text(ctx, &chunks, &n) == 0 {
                    for c in chunks {
                        let key = withUnsafeBytes(of: c.keyword) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                        let raw = UnsafeRawBufferPointer(start: c.text, count: c.length)
                        let value = c.type == Int32(SPNG_ITXT.rawValue)
                            ? String(decoding: raw, as: UTF8.self)
                            : String(raw.map { Character(Unicode.Scalar($0)) })
                        text[key] = value
                    }
                }
            }
            let image = Image8(width: Int(ihdr.width), height: Int(ihdr.height), channels: channels, pixels: pixels)
            return (image, text)
        }
    }

    private static func check(_ rc: Int32, _ what: String) throws {
        if rc != 0 { throw ImageCodecError("PNG \(what) failed: \(String(cString: spng_strerror(rc)))") }
    }
}

private let emptyCString: UnsafePointer<CChar> = {
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    p[0] = 0
    return UnsafePointer(p)
}()
