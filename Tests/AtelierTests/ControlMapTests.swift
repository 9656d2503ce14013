import AtelierImaging
import Foundation
import Testing

/// The ControlNet preprocessing against OpenCV 5.0 and sd-webui-controlnet 1.1.455, pixel for
/// pixel, on the committed maps of tools/make_canny_fixtures.py (Tests/Fixtures/canny).
/// Where opencv-python's Intel IPP changes 8-bit INTER_CUBIC (`*.noipp.png` exists), Atelier
/// must equal OpenCV's own code exactly and the IPP result within ±1 per channel (IPP is closed
/// source and rounds differently at fractional scales).
@Suite struct ControlMapTests {
    struct Output { let name: String, file: String, ipp: String?, stage: String? }
    struct Case: @unchecked Sendable, CustomStringConvertible {
        let id: String, op: String, source: String
        let params: [String: Any]
        let outputs: [(name: String, file: String, ipp: String?, stage: String?)]
        var description: String { id }
        init(_ c: [String: Any]) {
            id = c["id"] as! String
            op = c["op"] as! String
            source = String((c["source"] as? String ?? "").split(separator: " ").first ?? "")
            params = c["params"] as? [String: Any] ?? [:]
            outputs = (c["outputs"] as? [[String: Any]] ?? []).map { o in
                let ipp: String? = (o["cv2_ipp"] as? Bool).map { $0 ? "on" : "off" } ?? (o["cv2_ipp"] as? String)
                return ((o["name"] as? String) ?? (o["file"] as! String), o["file"] as! String, ipp, o["stage"] as? String)
            }
        }
    }

    static let dir = Fixtures.root.appendingPathComponent("canny")
    static let index: [[String: Any]] = {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("index.json")),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        return json["cases"] as? [[String: Any]] ?? []
    }()
    static let cases: [Case] = index.map(Case.init).filter { $0.op != "source" }
    /// every output's own name → the file holding its pixels (identical outputs are stored once)
    static let files: [String: String] = {
        var out: [String: String] = [:]
        for c in index.map(Case.init) { for o in c.outputs { out[o.name] = o.file } }
        return out
    }()

    static func load(_ name: String) throws -> Image8 {
        let file = files[name] ?? name
        return try PNG.decode(Data(contentsOf: dir.appendingPathComponent(file))).image
    }

    /// A gray PNG as 3 equal channels (the extension's HWC3 of a canny map).
    static func rgb(_ img: Image8) -> Image8 { ControlPreprocessor.hwc3(img) }

    /// The expected output of one stage: OpenCV without IPP exactly, and with IPP (as shipped) within ±1.
    static func expect(_ output: Image8, _ c: Case, stage: String? = nil, threeChannels: Bool = false) throws {
        var mine = output
        let outs = c.outputs.filter { $0.stage == stage }
        #expect(!outs.isEmpty, "\(c.id): no reference for stage \(stage ?? "-")")
        for o in outs {
            var ref = try load(o.name)
            // one-channel maps compare as 3 equal channels (the PNG decoder may expand gray)
            if ref.channels != mine.channels { ref = rgb(ref); mine = rgb(mine) }
            #expect(mine.width == ref.width && mine.height == ref.height && mine.channels == ref.channels,
                    "\(c.id) \(o.name): \(mine.width)x\(mine.height)x\(mine.channels) vs \(ref.width)x\(ref.height)x\(ref.channels)")
            guard mine.pixels.count == ref.pixels.count else { continue }
            let diffs = zip(mine.pixels, ref.pixels).filter { $0 != $1 }
            if o.ipp == "on" {
                let worst = diffs.map { abs(Int($0) - Int($1)) }.max() ?? 0
                // IPP's cubic: ±1 on some values; a canny / thinned map may move an edge pixel
                let binary = ref.pixels.allSatisfy { $0 == 0 || $0 == 255 }
                #expect(binary ? diffs.count * 50 <= ref.pixels.count : worst <= 1,
                        "\(c.id) \(o.name) (IPP): \(diffs.count) values differ, worst \(worst)")
            } else {
                #expect(diffs.isEmpty, "\(c.id) \(o.name): \(diffs.count) of \(ref.pixels.count) values differ from OpenCV")
            }
        }
    }

    @Test func fixturesArePresent() {
        #expect(Self.cases.count >= 100)
    }

    @Test(arguments: cases)
    func preprocessingEqualsOpenCVAndTheExtension(_ c: Case) throws {
        var source = try Self.load(c.source)
        switch c.op {
        case "cv2.Canny":
            if c.id.contains("rgba") { source = ControlPreprocessor.hwc3(source) }
            let edges = Canny.edges(source, low: c.params["threshold1"] as! Double, high: c.params["threshold2"] as! Double)
            try Self.expect(edges, c)
        case "preprocessor_canny":
            let res = c.params["processor_res"] as! Int
            let (padded, h, w) = ControlPreprocessor.resizeWithPad(source, resolution: res)
            if let resizedHW = c.params["resized_hw"] as? [Int] { #expect([h, w] == resizedHW) }
            let staged = c.outputs.contains { $0.stage != nil }  // hq-input keeps only the final map
            if staged { try Self.expect(padded, c, stage: "padded") }
            try Self.expect(ControlPreprocessor.canny(source, resolution: res, low: c.params["low"] as! Double,
                                                      high: c.params["high"] as! Double), c, stage: staged ? "canny" : nil, threeChannels: true)
        case "cv2.resize":
            let wh = c.params["dsize_wh"] as! [Int]
            if let hw = c.params["source_hw"] as? [Int], hw != [source.height, source.width] {  // a cropped source
                let cn = source.channels
                let rows = (0..<hw[0]).flatMap { y in source.pixels[(y * source.width * cn)..<((y * source.width + hw[1]) * cn)] }
                source = Image8(width: hw[1], height: hw[0], channels: cn, pixels: Array(rows))
            }
            let interpolation: CVInterpolation = switch c.params["interpolation"] as! String {
            case "INTER_AREA": .area
            case "INTER_CUBIC": .cubic
            default: .nearest
            }
            try Self.expect(source.cvResized(width: wh[0], height: wh[1], interpolation), c)
        case "high_quality_resize":
            guard let wh = c.params["size_wh"] as? [Int] else { return }  // hq-input: the source map itself
            let out = ControlPreprocessor.highQualityResize(Self.rgb(source), width: wh[0], height: wh[1])
            try Self.expect(out, c, stage: "final (3 equal channels)", threeChannels: true)
        case "detectmap_proc":
            let mode = try #require(ControlResizeMode(api: c.params["resize_mode"] as! String))
            let out = ControlPreprocessor.detectMap(Self.rgb(source), mode: mode, height: c.params["h"] as! Int, width: c.params["w"] as! Int)
            try Self.expect(out, c, threeChannels: true)
        default:
            Issue.record("unknown fixture op \(c.op)")
        }
    }
}
