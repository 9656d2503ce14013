import AtelierDiffusion
import AtelierImaging
import AtelierTensor
import Foundation
import Testing

/// The image side of inpainting against Pillow 13.0 and OpenCV 5.0, byte for byte, on the
/// committed outputs of tools/make_inpaint_fixtures.py (Tests/Fixtures/inpaint): OpenCV's
/// fixed-point Gaussian blur of masks, Pillow's box-blur Gaussian, premultiplied alpha, paste
/// through a mask, alpha compositing, resampling (incl. boxes and Pillow 13's pass order),
/// A1111's resize modes, `masking.fill`, and the whole mask preparation and final overlay.
@Suite struct InpaintImagingTests {
    struct Case: @unchecked Sendable, CustomStringConvertible {
        let json: [String: Any]
        var id: String { json["id"] as! String }
        var kind: String { json["kind"] as! String }
        var description: String { id }
        var inputs: [String: [String: Any]] { json["inputs"] as? [String: [String: Any]] ?? [:] }
        var outputs: [String: [String: Any]] { json["outputs"] as? [String: [String: Any]] ?? [:] }
    }

    static let dir = Fixtures.root.appendingPathComponent("inpaint")
    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("index.json")),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        return (json["cases"] as? [[String: Any]] ?? []).map(Case.init)
    }()

    /// A fixture image in its Pillow mode: L → 1 channel, RGB → 3, RGBA / RGBa (raw bytes) → 4.
    static func load(_ record: [String: Any]?) throws -> Image8 {
        let r = try #require(record)
        let img = try PNG.decode(Data(contentsOf: dir.appendingPathComponent(r["file"] as! String))).image
        switch r["mode"] as? String {
        case "L": return img.pillowL()
        case "RGB": return img.channels == 3 ? img : img.pillowRGB()
        default: return img.pillowRGBA()
        }
    }

    static func expectEqual(_ mine: Image8, _ ref: Image8, _ what: String) {
        #expect(mine.width == ref.width && mine.height == ref.height && mine.channels == ref.channels, "\(what): size/mode")
        guard mine.pixels.count == ref.pixels.count else { return }
        let diff = zip(mine.pixels, ref.pixels).filter { $0 != $1 }.count
        let worst = zip(mine.pixels, ref.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(diff == 0, "\(what): \(diff) bytes differ (max \(worst))")
    }

    static func a1111Blur(_ m: Image8, _ bx: Int, _ by: Int) -> Image8 {
        var m = m
        if bx > 0 { m = CVGaussianBlur.blur(m, kernelWidth: 2 * Int(2.5 * Double(bx) + 0.5) + 1, kernelHeight: 1, sigmaX: Double(bx)) }
        if by > 0 { m = CVGaussianBlur.blur(m, kernelWidth: 1, kernelHeight: 2 * Int(2.5 * Double(by) + 0.5) + 1, sigmaX: Double(by)) }
        return m
    }

    @Test func fixturesCoverEveryOperation() {
        let kinds = Set(Self.cases.map(\.kind))
        #expect(Self.cases.count >= 150)
        #expect(kinds.isSuperset(of: ["cv_blur", "cv_blur_x", "pil_gaussian", "pil_convert", "pil_paste_mask", "pil_alpha_composite",
                                      "fill", "resize", "resize_image", "prepare", "apply_overlay"]))
    }

    @Test(arguments: cases)
    func operationMatchesPillowAndOpenCVByteForByte(_ c: Case) throws {
        let j = c.json
        let out = c.outputs["out"]
        switch c.kind {
        case "cv_blur", "cv_blur_x":
            let mine = Self.a1111Blur(try Self.load(c.inputs["mask"]), j["blur_x"] as! Int, j["blur_y"] as! Int)
            Self.expectEqual(mine, try Self.load(out), c.id)
        case "pil_gaussian":
            let mine = try Self.load(c.inputs["image"]).pillowGaussianBlurred(radius: (j["radius"] as! NSNumber).doubleValue)
            Self.expectEqual(mine, try Self.load(out), c.id)
        case "pil_convert":
            let img = try Self.load(c.inputs["image"])
            let mine = (j["to"] as! String) == "RGBa" ? img.premultiplied() : img.unpremultiplied()
            Self.expectEqual(mine, try Self.load(out), c.id)
        case "pil_paste_mask":
            let img = try Self.load(c.inputs["image"]).premultiplied()
            var canvas = c.inputs["canvas"] != nil ? try Self.load(c.inputs["canvas"])
                : Image8(width: img.width, height: img.height, channels: 4, pixels: [UInt8](repeating: 0, count: img.pixels.count))
            canvas.paste(img, mask: try Self.load(c.inputs["mask"]))
            Self.expectEqual(img, try Self.load(c.outputs["premultiplied"]), c.id + " premultiplied")
            Self.expectEqual(canvas, try Self.load(out), c.id)
        case "pil_alpha_composite":
            let over = try Self.load(c.inputs["over"])
            var base = c.inputs["base"] != nil ? try Self.load(c.inputs["base"])
                : Image8(width: over.width, height: over.height, channels: 4, pixels: [UInt8](repeating: 0, count: over.pixels.count))
            base.alphaComposite(over)
            Self.expectEqual(base, try Self.load(out), c.id)
        case "fill":
            var mask = try Self.load(c.inputs["mask"])
            if let b = j["mask_blur"] as? [Int] {
                mask = Self.a1111Blur(mask, b[0], b[1])
                Self.expectEqual(mask, try Self.load(c.outputs["mask_blurred"]), c.id + " blurred mask")
            }
            Self.expectEqual(InpaintPreparation.fill(try Self.load(c.inputs["image"]), mask: mask), try Self.load(out), c.id)
        case "resize":
            let img = try Self.load(c.inputs["image"])
            let size = j["size"] as! [Int]
            let filter: PillowFilter = (j["resample"] as! String) == "LANCZOS" ? .lanczos : .bicubic
            let box = (j["box"] as? [NSNumber]).map { b in (b[0].doubleValue, b[1].doubleValue, b[2].doubleValue, b[3].doubleValue) }
            // Pillow resizes RGBA premultiplied
            let straight = (j["mode"] as? String) == "RGBA"
            let src = straight ? img.premultiplied() : img
            var mine = src.pillowResized(width: size[0], height: size[1], filter: filter, box: box)
            if straight { mine = mine.unpremultiplied() }
            Self.expectEqual(mine, try Self.load(out), c.id)
        case "resize_image":
            let size = j["size"] as! [Int]
            let mode = try #require(ImageResizeMode(rawValue: j["resize_mode"] as! Int))
            Self.expectEqual(try Self.load(c.inputs["image"]).a1111Resized(mode, width: size[0], height: size[1]), try Self.load(out), c.id)
        case "prepare":
            try checkPrepare(c)
        case "apply_overlay":
            let pasteTo = (j["paste_to"] as? [Int]).map { ($0[0], $0[1], $0[2], $0[3]) }
            let mine = InpaintPreparation.applyOverlay(try Self.load(c.inputs["result"]), overlay: try Self.load(c.inputs["overlay"]), pasteTo: pasteTo)
            Self.expectEqual(mine, try Self.load(out), c.id)
        default:
            Issue.record("unknown fixture kind \(c.kind)")
        }
    }

    func checkPrepare(_ c: Case) throws {
        let j = c.json, a = j["args"] as! [String: Any], result = j["result"] as! [String: Any]
        var o = InpaintOptions()
        o.blurX = a["blur_x"] as! Int
        o.blurY = a["blur_y"] as! Int
        o.round = a["mask_round"] as! Bool
        o.invert = a["invert"] as! Bool
        o.onlyMasked = a["full_res"] as! Bool
        o.padding = a["padding"] as! Int
        o.fill = try #require(InpaintOptions.MaskedContent(rawValue: a["inpainting_fill"] as! Int))
        let (w, h) = (j["width"] as! Int, j["height"] as! Int)
        let mask = try Self.load(c.inputs["mask"])
        let prep = InpaintPreparation(initImage: try Self.load(c.inputs["init"]), mask: mask, width: w, height: h, options: o)

        // the binarised, inverted, blurred mask
        var m = InpaintPreparation.binaryMask(mask, round: o.round)
        if o.invert { m = m.inverted() }
        Self.expectEqual(Self.a1111Blur(m, o.blurX, o.blurY), try Self.load(c.outputs["mask_prepared"]), c.id + " mask")
        Self.expectEqual(prep.image, try Self.load(c.outputs["image"]), c.id + " image")
        let crop = result["crop_region"] as? [Int]
        #expect(prep.cropRegion.map { [$0.x0, $0.y0, $0.x1, $0.y1] } == crop, "crop region")
        #expect(prep.pasteTo.map { [$0.x, $0.y, $0.width, $0.height] } == result["paste_to"] as? [Int], "paste_to")
        // infotext: A1111 skips None values ("Mask blur" when x ≠ y)
        let info = (result["info"] as? [String: Any] ?? [:]).compactMapValues { v -> String? in v is NSNull ? nil : "\(v)" }
        #expect(Dictionary(uniqueKeysWithValues: prep.infotext) == info, "infotext fields")
        if let ref = c.outputs["image_mask"] {
            let imageMask = try #require(prep.imageMask)
            Self.expectEqual(imageMask.pillowL(), try Self.load(ref).pillowL(), c.id + " image_mask")
            Self.expectEqual(try #require(prep.overlay), try Self.load(c.outputs["overlay"]), c.id + " overlay")
            let npy = try NPY.read(Self.dir.appendingPathComponent(c.outputs["latent_mask_array"]!["file"] as! String))
            let lm = try #require(prep.latentMask(width: w / 8, height: h / 8, round: o.round))
            #expect(lm == npy.floats, "latent mask")
        } else {
            #expect(prep.imageMask == nil && prep.overlay == nil, "a blank only-masked mask falls back to plain img2img")
        }
    }

    /// Properties that hold whatever the weights: with "original" and no blur the pixels outside
    /// the mask come back byte-identical and those inside change; inverting swaps the two;
    /// only masked generates at the mask's box plus padding.
    @Test func inpaintingKeepsPixelsOutsideTheMaskAndRepaintsInside() throws {
        let initImage = try PNG.decode(Data(contentsOf: Fixtures.root.appendingPathComponent("images/init-128.png"))).image
        let mask = try PNG.decode(Data(contentsOf: Fixtures.root.appendingPathComponent("images/mask-128.png"))).image.pillowL()
        func run(invert: Bool, onlyMasked: Bool = false) throws -> (image: GeneratedImage, prep: InitImage) {
            var o = InpaintOptions()
            o.blurX = 0; o.blurY = 0; o.invert = invert; o.onlyMasked = onlyMasked; o.padding = 8
            var r = GenerationRequest()
            r.prompt = "a red apple"
            r.seed = 3
            r.steps = 6
            r.width = 128
            r.height = 128
            r.denoisingStrength = 0.9
            r.initImage = InitImage.prepared(initImage, mask: mask, width: 128, height: 128, inpaint: o)
            return (try Fixtures.pipeline.txt2img(r)[0], r.initImage!)
        }
        let inside = (0..<(128 * 128)).filter { mask.pixels[$0] == 255 }, outside = (0..<(128 * 128)).filter { mask.pixels[$0] == 0 }
        func changed(_ img: GeneratedImage, _ px: [Int]) -> Int {
            px.filter { i in (0..<3).contains { img.rgb[i * 3 + $0] != initImage.pixels[i * 3 + $0] } }.count
        }
        let plain = try run(invert: false)
        #expect(changed(plain.image, outside) == 0, "pixels outside the mask must be the init image's")
        #expect(changed(plain.image, inside) > inside.count / 2, "pixels inside the mask must be repainted")
        let inverted = try run(invert: true)
        #expect(changed(inverted.image, inside) == 0, "inverted: pixels inside the mask are kept")
        #expect(changed(inverted.image, outside) > outside.count / 2, "inverted: pixels outside are repainted")
        #expect(inverted.prep.infotext.contains(InfotextField("Mask mode", "Inpaint not masked")))
        // only masked: the mask's box (46±32, 50±32 → 14…78, 18…82) plus 8 pixels, grown to 1:1
        let box = try #require(mask.nonZeroBox())
        let onlyMasked = try run(invert: false, onlyMasked: true)
        #expect(onlyMasked.prep.inpaint?.pasteTo == [box.x0 - 8, box.y0 - 8, box.x1 - box.x0 + 16, box.y1 - box.y0 + 16])
        #expect(onlyMasked.image.width == 128 && changed(onlyMasked.image, outside) == 0 && changed(onlyMasked.image, inside) > 0)
    }
}
