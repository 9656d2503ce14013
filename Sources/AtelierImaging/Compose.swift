/// Pixel operations on 8-bit images.
public extension Image8 {
    /// An img2img picture as A1111 takes it (`images.flatten`, then RGB): RGBA composited onto
    /// white, grey expanded to RGB.
    func flattened() -> Image8 {
        channels == 4 ? Image8(width: width, height: height, channels: 3, pixels: flattenedRGB()) : pillowRGB()
    }

    /// RGB bytes, compositing RGBA onto `background` as PIL's `paste(img, mask=img)` does
    /// (A1111's `images.flatten` with the img2img background colour, white by default).
    func flattenedRGB(background: (UInt8, UInt8, UInt8) = (255, 255, 255)) -> [UInt8] {
        guard channels == 4 else { return pixels }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let bg = [background.0, background.1, background.2]
        for i in 0..<(width * height) {
            let a = Int(pixels[i * 4 + 3])
            for c in 0..<3 {
                // PIL BLEND: (in1 * (255 − a) + in2 * a + 128) / 255 with its integer rounding
                let v = Int(bg[c]) * (255 - a) + Int(pixels[i * 4 + c]) * a + 128
                out[i * 3 + c] = UInt8((v + (v >> 8)) >> 8)
            }
        }
        return out
    }
}
