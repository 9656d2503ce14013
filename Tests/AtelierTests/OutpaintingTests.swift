import AtelierImaging
import AtelierTensor
import Foundation
import Testing

/// "Outpainting mk2" on the image side against A1111 1.10.1's own script run by
/// tools/make_outpaint_fixtures.py, with the fixtures' fake generation (each init inverted),
/// byte for byte.
@Suite struct OutpaintingTests {
    static let dir = Fixtures.root.appendingPathComponent("outpaint")
    static let cases: [String: Any] = try! JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("cases.json"))) as! [String: Any]

    static func png(_ name: String) throws -> Image8 { try PNG.decode(Data(contentsOf: dir.appendingPathComponent(name))).image }

    @Test func numpyDefaultRNGZeroGivesNumpysWordsAndDoubles() throws {
        let rng = Self.cases["rng"] as! [String: Any]
        var g = NumpyPCG64()
        let words = (0..<16).map { _ in g.next64() }
        #expect(words.map { String(format: "0x%016llx", $0) } == rng["first16_hex"] as! [String])
        var d = NumpyPCG64()
        let doubles = (0..<16).map { _ in d.random() }
        #expect(doubles == (try NPY.read(Self.dir.appendingPathComponent("rng-first16.npy"))).values)
        var full = NumpyPCG64()
        let draw = (0..<(64 * 64 * 3)).map { _ in full.random() }
        #expect(draw == (try NPY.read(Self.dir.appendingPathComponent("rng-random-64x64x3.npy"))).values)
    }

    static func directions(_ v: Any) -> OutpaintingMk2.Directions {
        OutpaintingMk2.Directions(names: (v as? [String]) ?? [v as? String ?? ""])
    }

    @Test(arguments: (cases["cases"] as! [[String: Any]]).map { $0["id"] as! String })
    func scriptStepsAndResultsEqualA1111s(_ id: String) throws {
        let c = (Self.cases["cases"] as! [[String: Any]]).first { $0["id"] as! String == id }!
        let args = c["script_args"] as! [Any]
        let script = OutpaintingMk2(pixels: args[1] as! Int, maskBlur: (args[2] as! NSNumber).doubleValue, directions: Self.directions(args[3]),
                                    noiseQ: (args[4] as! NSNumber).doubleValue, colorVariation: (args[5] as! NSNumber).doubleValue)
        let derived = c["derived"] as! [String: Int]
        let e = script.expansion(w0: (c["init_size"] as! [Int])[0], h0: (c["init_size"] as! [Int])[1])
        let want: [Int] = ["left", "right", "up", "down"].map { derived[$0]! }
        let got: [Int] = [e.left, e.right, e.up, e.down]
        #expect(got == want)
        let steps = c["steps"] as! [[String: Any]]
        var stepIndex = 0
        let results = try script.run(initImage: try Self.png(c["init"] as! String), width: c["width"] as! Int, height: c["height"] as! Int,
                                     batchSize: c["batch_size"] as! Int, batchCount: c["n_iter"] as! Int) { step in
            let s = steps[stepIndex]
            stepIndex += 1
            let files = s["files"] as! [String: Any]
            func file(_ k: String, _ n: Int = 0) throws -> Image8 { try Self.png(((files[k] as! [[String: Any]])[n])["file"] as! String) }
            #expect(step.side.rawValue == s["direction"] as! String && step.expandPixels == s["expand_pixels"] as! Int)
            #expect(step.width == s["p_width"] as! Int && step.height == s["p_height"] as! Int, "\(id) step \(stepIndex - 1) size")
            for (n, img) in step.images.enumerated() {
                let want = try file("init", n)
                #expect(img == want, "\(id) step \(stepIndex - 1) noised crop \(n)")
            }
            let wantMask = try file("image_mask"), wantLatent = try file("latent_mask")
            #expect(step.imageMask == wantMask, "\(id) step \(stepIndex - 1) image mask")
            #expect(step.latentMask == wantLatent, "\(id) step \(stepIndex - 1) latent mask")
            // what img2img makes of the script's latent mask (A1111's processing side)
            let processing = files["processing"] as! [String: Any]
            let lmFile = (processing["latent_mask_array"] as! [String: Any])["file"] as! String
            let wantNmask = try NPY.read(Self.dir.appendingPathComponent(lmFile)).floats
            let gotNmask = InpaintPreparation.latentMask(of: step.latentMask, width: step.width / 8, height: step.height / 8, round: true)
            #expect(gotNmask == wantNmask, "\(id) step \(stepIndex - 1) latent mask array")
            let p = s["p"] as! [String: Any]
            #expect(step.maskBlurX == (p["mask_blur_x"] as! NSNumber).doubleValue && step.maskBlurY == (p["mask_blur_y"] as! NSNumber).doubleValue)
            return step.images.map { $0.inverted() }   // the fixtures' fake generation
        }
        #expect(stepIndex == steps.count)
        let result = c["result"] as! [String: Any]
        var expected = (result["images"] as! [[String: Any]]).map { $0["file"] as! String }
        if result["grid_first"] as! Bool {
            let grid = try Self.png(expected.removeFirst())
            #expect(Image8.a1111Grid(results, batchSize: 1) == grid, "\(id) grid")
        }
        #expect(results.count == expected.count)
        for (n, name) in expected.enumerated() where n < results.count {
            let want = try Self.png(name)
            #expect(results[n] == want, "\(id) result \(n)")
        }
    }
}
