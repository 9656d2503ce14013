import AtelierDiffusion
import AtelierModels
import Foundation
import Testing

/// CLIP tokenization as A1111 1.10 does it (transformers 4.30's slow tokenizer with ftfy),
/// against ids made by that tokenizer (tools/make_tokenizer_cases.py).
struct TokenizerTests {
    struct Case: Sendable, CustomStringConvertible {
        let text: String, normalized: String, ids: [Int]
        var description: String { String(text.debugDescription.prefix(40)) }
    }

    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: Fixtures.root.appendingPathComponent("tokenizer/cases.json")),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let cases = json["cases"] as? [[String: Any]] else { return [] }
        return cases.map { Case(text: $0["text"] as! String, normalized: $0["normalized"] as? String ?? "", ids: $0["ids"] as! [Int]) }
    }()

    @Test func knownIdsOfACommonPrompt() {
        #expect(CLIPTokenizer.shared.encode("a photo of a cat") == [320, 1125, 539, 320, 2368])
    }

    @Test(arguments: cases)
    func tokenIdsMatchA1111(_ c: Case) {
        #expect(CLIPTokenizer.shared.encode(c.text) == c.ids, "clean-up gave \(CLIPTokenizer.clean(c.text).debugDescription), A1111: \(c.normalized.debugDescription)")
    }

    @Test func fullWidthPunctuationAndCurlyQuotesAreFoldedLikeFtfy() {
        #expect(CLIPTokenizer.clean("猫，可爱！（高清）") == "猫,可爱!(高清)")
        #expect(CLIPTokenizer.clean("it’s “cat”") == "it's \"cat\"")
        #expect(CLIPTokenizer.clean("cafÃ©  &amp;\tTea") == "café & tea")
    }
}

/// A1111's emphasis syntax and chunking.
struct PromptTests {
    typealias F = PromptParser.Fragment

    @Test func emphasisWeightsFollowA1111() {
        let p = PromptParser.parseEmphasis("a (b) ((c)) [d] (e:1.5) \\(f\\) g")
        #expect(p.map(\.text) == ["a ", "b", " ", "c", " ", "d", " ", "e", " (f) g"])
        let w = p.map(\.weight)
        #expect(abs(w[1] - 1.1) < 1e-12 && abs(w[3] - 1.21) < 1e-12 && abs(w[5] - 1 / 1.1) < 1e-12 && w[7] == 1.5)
    }

    @Test func unbalancedBracketsApplyToTheRestAndStrayClosersAreText() {
        #expect(PromptParser.parseEmphasis("a (b c") == [F("a ", 1), F("b c", 1.1)])
        #expect(PromptParser.parseEmphasis("a) b") == [F("a) b", 1)])
    }

    @Test func breakClosesTheChunk() {
        let chunks = PromptParser.chunks("a cat BREAK a dog", tokenizer: .shared)
        #expect(chunks.count == 2)
        #expect(chunks.allSatisfy { $0.tokens.count == 77 && $0.tokens.first == 49406 && $0.tokens.last == 49407 })
        #expect(Array(chunks[1].tokens[1...3]) == [320, 1929, 49407])
    }

    @Test func emptyPromptIsOnePaddedChunk() {
        let chunks = PromptParser.chunks("", tokenizer: .shared)
        #expect(chunks.count == 1)
        #expect(chunks[0].tokens == [49406] + Array(repeating: 49407, count: 76))
    }

    @Test func longPromptsMoveTheTextAfterTheLastCommaToTheNextChunk() {
        let prompt = Array(repeating: "cat", count: 70).joined(separator: " ") + ", dog dog dog dog dog dog dog"
        let chunks = PromptParser.chunks(prompt, tokenizer: .shared)
        #expect(chunks.count == 2)
        // 70 cats and the comma stay; the seven dogs start chunk 2
        #expect(chunks[0].tokens[71] == 267 && chunks[0].tokens[72] == 49407)
        #expect(Array(chunks[1].tokens[1...7]) == Array(repeating: 1929, count: 7))
    }
}
