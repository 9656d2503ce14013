import AtelierDiffusion
import Testing

/// A1111's prompt editing, alternation and AND (prompt_parser.py semantics).
struct PromptScheduleTests {
    func s(_ p: String, _ steps: Int) -> [PromptSchedule.Entry] { PromptSchedule.schedule(p, steps: steps) }

    @Test func editsSwitchAfterTheirStepOrFraction() {
        #expect(s("a [cat:dog:5] photo", 10) == [.init(5, "a cat photo"), .init(10, "a dog photo")])
        #expect(s("[cat:dog:0.3]", 10) == [.init(3, "cat"), .init(10, "dog")])
        #expect(s("[a::3] b", 10) == [.init(3, "a b"), .init(10, " b")])
        #expect(s("[:b:2] c", 10) == [.init(2, " c"), .init(10, "b c")])
        #expect(s("[cat:dog:50]", 10) == [.init(10, "cat")], "a step past the end is clamped: never switches")
        #expect(s("[cat:dog:0]", 10) == [.init(10, "dog")])
    }

    @Test func alternationCyclesEveryStepAndNests() {
        #expect(s("[a|b] x", 4) == [.init(1, "a x"), .init(2, "b x"), .init(3, "a x"), .init(4, "b x")])
        #expect(s("[[a|b]:c:2]", 3) == [.init(1, "a"), .init(2, "b"), .init(3, "c")])
    }

    @Test func editsInsideEmphasisKeepTheEmphasisForTheWeightParser() {
        #expect(s("(a [b:c:2]:1.2)", 10) == [.init(2, "(a b:1.2)"), .init(10, "(a c:1.2)")])
        #expect(s("[x] (y)", 10) == [.init(10, "[x] (y)")])
    }

    @Test func textTheGrammarCannotPlaceIsKeptAndABarOutsideBracketsDisablesScheduling() {
        #expect(s("[a:b]", 10) == [.init(10, "[a:b]")])
        #expect(s("a | [b:c:2]", 10) == [.init(10, "a | [b:c:2]")])
        #expect(s("(unclosed [cat:dog:2]", 10) == [.init(2, "(unclosed cat"), .init(10, "(unclosed dog")])
    }

    @Test func theDenoiserPicksTheFirstEntryNotEndedBeforeItsCallCounter() {
        let sched = s("[cat:dog:5]", 20)
        #expect(PromptSchedule.pick(sched, at: 0) == "cat")
        #expect(PromptSchedule.pick(sched, at: 5) == "cat")
        #expect(PromptSchedule.pick(sched, at: 6) == "dog")
        #expect(PromptSchedule.pick(sched, at: 40) == "cat", "past the last entry A1111 falls back to the first")
    }

    @Test func andSplitsIntoWeightedParts() {
        let parts = PromptSchedule.splitAND("x AND y :0.5 AND z:2")
        #expect(parts.map(\.text) == ["x", " y", " z"])
        #expect(parts.map(\.weight) == [1, 0.5, 2])
        #expect(PromptSchedule.splitAND("a cat:1.5").map(\.weight) == [1.5], "a trailing weight counts without AND too")
        #expect(PromptSchedule.splitAND("ANDROID and more").map(\.text) == ["ANDROID and more"])
    }

    @Test func extraNetworkTagsAreRemovedAndCollected() {
        let (text, tags) = ExtraNetworkTags.parse("a <lora:tiny_lora:0.8> cat <hypernet:h:1>")
        #expect(text == "a  cat ")
        #expect(tags == [.init(kind: "lora", arguments: ["tiny_lora", "0.8"]), .init(kind: "hypernet", arguments: ["h", "1"])])
    }
}
