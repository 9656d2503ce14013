import AtelierTensor
import Foundation
import Testing

/// The hires fix's latent upscalers against `torch.nn.functional.interpolate` (float32, CPU), on
/// the committed fixtures of tools/make_interpolate_fixtures.py: every A1111 mode, up and down.
/// Tolerance 1e-6 relative L2 (PyTorch's channels-last kernel sums in another order; the
/// coordinates and weights must be the same).
@Suite struct InterpolateTests {
    struct Case: Sendable, CustomStringConvertible {
        let input: String, output: String, mode: String, antialias: Bool, size: [Int]
        var description: String { output }
    }

    static let dir = Fixtures.root.appendingPathComponent("interpolate")
    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("index.json")),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let cases = json["cases"] as? [[String: Any]] else { return [] }
        return cases.map { Case(input: $0["input"] as! String, output: $0["output"] as! String, mode: $0["mode"] as! String,
                                antialias: $0["antialias"] as! Bool, size: $0["size"] as! [Int]) }
    }()

    @Test func fixturesArePresent() { #expect(Self.cases.count >= 60) }

    @Test(arguments: cases)
    func interpolateMatchesPyTorch(_ c: Case) throws {
        let input = try NPY.read(Self.dir.appendingPathComponent(c.input))
        let ref = try NPY.read(Self.dir.appendingPathComponent(c.output))
        let x = Tensor(shape: input.shape, data: input.floats)
        let mode = try #require(InterpolationMode(rawValue: c.mode))
        let out = Ops.interpolate(x, height: c.size[0], width: c.size[1], mode: mode, antialias: c.antialias)
        #expect(out.shape == ref.shape)
        let d = relativeL2(out.scalars, ref.values)
        #expect(d <= 1e-6, "relative L2 \(d)")
    }
}
