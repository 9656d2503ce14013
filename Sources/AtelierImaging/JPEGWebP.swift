import CTurboJPEG
import CWebP
import Foundation

/// JPEG (libjpeg-turbo's TurboJPEG API) and WebP (libwebp) decoding, for init images and
/// PNG Info of pictures users bring.
public enum ImageDecoder {
    public enum Format: String { case png = "PNG", jpeg = "JPEG", webp = "WebP" }

    public static func format(of data: Data) -> Format? {
        if data.starts(with: [0x89, 0x50, 0x4E, 0x47]) { return .png }
        if data.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if data.count >= 12, data.starts(with: Array("RIFF".utf8)), data.dropFirst(8).starts(with: Array("WEBP".utf8)) { return .webp }
        return nil
    }

    /// Decodes PNG, JPEG or WebP to 8-bit RGB (RGBA when the picture has alpha).
    public static func decode(_ data: Data) throws -> Image8 {
        switch format(of: data) {
        case .png: return try PNG.decode(data).image
        case .jpeg: return try decodeJPEG(data)
        case .webp: return try decodeWebP(data)
        case nil: throw ImageCodecError("not a PNG, JPEG or WebP image")
        }
    }

    static func decodeJPEG(_ data: Data) throws -> Image8 {
        guard let handle = tjInitDecompress() else { throw ImageCodecError("JPEG: cannot start the decoder") }
        defer { tjDestroy(handle) }
        var bytes = [UInt8](data)
        var w: Int32 = 0, h: Int32 = 0, sub: Int32 = 0, space: Int32 = 0
        guard tjDecompressHeader3(handle, &bytes, UInt(bytes.count), &w, &h, &sub, &space) == 0, w > 0, h > 0,
              Int(w) * Int(h) <= 8192 * 8192 else {
            throw ImageCodecError("JPEG: invalid header (\(String(cString: tjGetErrorStr2(handle))))")
        }
        var pixels = [UInt8](repeating: 0, count: Int(w) * Int(h) * 3)
        let rc = tjDecompress2(handle, &bytes, UInt(bytes.count), &pixels, w, 0, h, Int32(TJPF_RGB.rawValue), 0)
        if rc != 0 && tjGetErrorCode(handle) == Int32(TJERR_FATAL.rawValue) {
            throw ImageCodecError("JPEG: \(String(cString: tjGetErrorStr2(handle)))")
        }
        return Image8(width: Int(w), height: Int(h), channels: 3, pixels: pixels)
    }

    static func decodeWebP(_ data: Data) throws -> Image8 {
        let bytes = [UInt8](data)
        var features = WebPBitstreamFeatures()
        guard WebPGetFeaturesInternal(bytes, bytes.count, &features, WEBP_DECODER_ABI_VERSION) == VP8_STATUS_OK,
              features.width > 0, features.height > 0, Int(features.width) * Int(features.height) <= 8192 * 8192 else {
            throw ImageCodecError("WebP: invalid header")
        }
        let (w, h) = (Int(features.width), Int(features.height))
        let channels = features.has_alpha != 0 ? 4 : 3
        var pixels = [UInt8](repeating: 0, count: w * h * channels)
        let ok = pixels.withUnsafeMutableBufferPointer { out -> Bool in
            channels == 4
                ? WebPDecodeRGBAInto(bytes, bytes.count, out.baseAddress, out.count, Int32(w * 4)) != nil
                : WebPDecodeRGBInto(bytes, bytes.count, out.baseAddress, out.count, Int32(w * 3)) != nil
        }
        guard ok else { throw ImageCodecError("WebP: cannot decode") }
        return Image8(width: w, height: h, channels: channels, pixels: pixels)
    }
}
