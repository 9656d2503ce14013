import AtelierDiffusion
import Foundation
import Testing

/// UniPC's continuous time grid and the float timesteps its UNet calls get, against the oracle's
/// port of A1111's `uni_pc` module (params.json["unipc"] of the UniPC goldens), bit for bit.
struct UniPCTests {
    @Test(arguments: ["unipc", "unipc-20", "i2i-unipc"])
    func timeGridAndModelInputTimesEqualA1111s(_ name: String) throws {
        let params = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.golden.appendingPathComponent("\(name)/params.json"))) as! [String: Any]
        let u = try #require(params["unipc"] as? [String: Any])
        let timesteps = try #require(u["timesteps_in"] as? [Int])
        let isImg2img = try #require(u["is_img2img"] as? Bool)
        let t = UniPCSampler.times(steps: timesteps.count, lastTimestep: isImg2img ? timesteps.last : nil)
        #expect(t == (u["t"] as! [Double]).map(Float.init))
        #expect(t.dropLast().map(UniPCSampler.modelInputTime) == (u["model_input_t"] as! [Double]).map(Float.init))
    }
}
