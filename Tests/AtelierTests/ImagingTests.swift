import AtelierImaging
import AtelierTensor
import Foundation
import Testing

/// Init images arrive as PNG, JPEG or WebP.
struct ImagingTests {
    func load(_ name: String) throws -> Data { try Data(contentsOf: Fixtures.root.appendingPathComponent("images/" + name)) }

    @Test func jpegDecodesLikePillow() throws {
        let img = try ImageDecoder.decode(load("init-128.jpg"))
        #expect(img.width == 128 && img.height == 128 && img.channels == 3)
        let ref = try NPY.read(Fixtures.root.appendingPathComponent("images/init-128.jpg.pillow.npy")).values
        // both use libjpeg-turbo's default (islow) IDCT and fancy upsampling: at most ±1 apart
        let maxDiff = zip(img.pixels, ref).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(maxDiff <= 1)
    }

    @Test func losslessWebPDecodesToThePNGsPixels() throws {
        let png = try PNG.decode(load("init-128.png")).image
        let webp = try ImageDecoder.decode(load("init-128.webp"))
        #expect(webp.channels == 3 && webp.pixels == png.flattenedRGB())
    }

    @Test func alphaIsFlattenedOntoWhite() throws {
        let webp = try ImageDecoder.decode(load("half-alpha-128.webp"))
        #expect(webp.channels == 4)
        let rgb = webp.flattenedRGB()
        let png = try PNG.decode(load("init-128.png")).image.flattenedRGB()
        // opaque right half unchanged; left half (alpha 128) moved halfway to white
        #expect(rgb[(10 * 128 + 100) * 3] == png[(10 * 128 + 100) * 3])
        let v = Int(png[(10 * 128 + 5) * 3]), w = Int(rgb[(10 * 128 + 5) * 3])
        #expect(abs(w - (v * 128 + 255 * 127) / 255) <= 1)
    }

    @Test func unknownBytesAreANamedError() {
        #expect(throws: ImageCodecError.self) { try ImageDecoder.decode(Data("GIF89a".utf8)) }
        #expect(throws: ImageCodecError.self) { try ImageDecoder.decode(Data([0xFF, 0xD8, 0xFF, 0x00, 0x01])) }
    }
}

/// Init images of another size are fitted as A1111 does (Pillow's LANCZOS), bit for bit.
struct ResampleTests {
    @Test(arguments: [(96, 80), (200, 152)])
    func lanczosResizeMatchesPillow(_ w: Int, _ h: Int) throws {
        let img = try PNG.decode(Data(contentsOf: Fixtures.root.appendingPathComponent("images/init-128.png"))).image
        let ref = try NPY.read(Fixtures.root.appendingPathComponent("images/init-128-lanczos-\(w)x\(h).pillow.npy"))
        let out = Image8(width: img.width, height: img.height, channels: 3, pixels: img.flattenedRGB()).resizedLanczos(width: w, height: h)
        #expect(ref.shape == [h, w, 3])
        #expect(out.pixels.map(Double.init) == ref.values)
    }
}
