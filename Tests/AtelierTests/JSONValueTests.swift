import AtelierService
import Foundation
import Testing

@Suite struct JSONValueTests {
    /// Foundation's text for the same value (what `data()` used to return).
    func foundation(_ v: JSONValue) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: v.any, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }

    @Test func directSerializationWritesFoundationsTextForTheAPIsValues() {
        let samples: [JSONValue] = [
            .object(["cfg_scale": .double(7), "denoising_strength": .double(0.75), "eta": .double(0.1), "seed": .int(-1),
                     "s_noise": .double(1.0), "tiny": .double(1e-5), "third": .double(1.0 / 3), "big": .double(123456.5)]),
            .string("quote \" backslash \\ slash / newline \n tab \t cr \r bell \u{07} 中文 🐱 é"),
            .array([.null, .bool(true), .bool(false), .int(0), .int(Int.max), .int(Int.min), .array([]), .object([:])]),
            .object(["z": .object(["b": .int(1), "a": .string("")]), "a": .array([.double(-2.5), .double(-0.0)])]),
        ]
        for v in samples {
            #expect(String(decoding: v.data(), as: UTF8.self) == foundation(v))
        }
    }

    @Test func serializedTextParsesBackToTheSameValue() throws {
        let v: JSONValue = .object(["infotext": .string("a (cat:1.2)\nSteps: 20, Sampler: Euler a"), "all_seeds": .array([.int(1), .int(2)]),
                                    "w": .double(0.015625), "n": .null])
        #expect(JSONValue(any: try JSONSerialization.jsonObject(with: v.data())) == v)
    }

    @Test func nonFiniteNumbersBecomeNull() {
        #expect(String(decoding: JSONValue.array([.double(.nan), .double(.infinity)]).data(), as: UTF8.self) == "[null,null]")
    }
}
