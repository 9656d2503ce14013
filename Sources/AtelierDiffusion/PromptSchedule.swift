import Foundation

/// A1111's prompt editing and alternation (`prompt_parser.get_learned_conditioning_prompt_schedules`,
/// the default non-"old" scheduling) and `AND` (composable diffusion).
///
/// - `[from:to:N]` is `from` up to step N and `to` after it; `[to:N]` adds, `[from::N]` removes.
///   N with a `.` is a fraction of the steps (`int(N·steps)`), else a step number; clamped to steps.
/// - `[a|b|c]`: step k (1-based) uses option `(k−1) mod count`.
/// - `(x)`, `(x:1.2)`, `[x]` are kept for the emphasis parser and may contain the above.
/// Text the grammar cannot place (a stray `[`, `:`) stays as it is; a `|` outside brackets makes
/// A1111's parser fail, and the whole prompt is then used unchanged at every step.
public enum PromptSchedule {
    /// One scheduled text: used while the denoiser's call counter is ≤ `endAt`.
    public struct Entry: Equatable, Sendable {
        public var endAt: Int
        public var text: String
        public init(_ endAt: Int, _ text: String) {
            self.endAt = endAt
            self.text = text
        }
    }

    indirect enum Node {
        case text(String)
        case emphasis(open: Character, inner: [Node], weight: [Node]?, close: Character)
        case edit(id: Int, before: [Node]?, after: [Node], number: String)
        case alternation([[Node]])
    }

    struct Failure: Error {}

    /// Recursive descent over the grammar of A1111's lark parser.
    struct Parser {
        let s: [Character]
        var i = 0
        var nextID = 0

        init(_ text: String) { s = Array(text) }

        var peek: Character? { i < s.count ? s[i] : nil }

        mutating func plain() -> String {
            var j = i
            while j < s.count {
                if s[j] == "\\" && j + 1 < s.count { j += 2; continue }
                if "[]():|".contains(s[j]) { break }
                j += 1
            }
            defer { i = j }
            return String(s[i..<j])
        }

        mutating func sequence(until stops: String) throws -> [Node] {
            var items: [Node] = []
            while let c = peek, !stops.contains(c) {
                switch c {
                case "(": items.append(try round())
                case "[": items.append(try square())
                case "]", ")", ":", "|": throw Failure()
                default:
                    let p = plain()
                    if p.isEmpty { throw Failure() }
                    items.append(.text(p))
                }
            }
            return items
        }

        mutating func expect(_ c: Character) throws {
            guard peek == c else { throw Failure() }
            i += 1
        }

        mutating func round() throws -> Node {
            try expect("(")
            let a = try sequence(until: ":)")
            var b: [Node]?
            if peek == ":" {
                i += 1
                b = try sequence(until: ":)")
            }
            try expect(")")
            return .emphasis(open: "(", inner: a, weight: b, close: ")")
        }

        /// `\s*NUMBER\s*]` (a signed decimal with optional exponent), consumed on success.
        mutating func numberAndClose() -> String? {
            var j = i
            while j < s.count, s[j].isWhitespace { j += 1 }
            let start = j
            if j < s.count, s[j] == "+" || s[j] == "-" { j += 1 }
            var digits = 0
            while j < s.count, s[j].isASCII, s[j].isNumber { j += 1; digits += 1 }
            if j < s.count, s[j] == "." {
                j += 1
                while j < s.count, s[j].isASCII, s[j].isNumber { j += 1; digits += 1 }
            }
            guard digits > 0 else { return nil }
            if j < s.count, s[j] == "e" || s[j] == "E" {
                var k = j + 1
                if k < s.count, s[k] == "+" || s[k] == "-" { k += 1 }
                var expDigits = 0
                while k < s.count, s[k].isASCII, s[k].isNumber { k += 1; expDigits += 1 }
                if expDigits > 0 { j = k }
            }
            let number = String(s[start..<j])
            while j < s.count, s[j].isWhitespace { j += 1 }
            guard j < s.count, s[j] == "]" else { return nil }
            i = j + 1
            return number
        }

        mutating func square() throws -> Node {
            try expect("[")
            let a = try sequence(until: ":|]")
            if peek == "]" {
                i += 1
                return .emphasis(open: "[", inner: a, weight: nil, close: "]")
            }
            if peek == "|" {
                var options = [a]
                while peek == "|" {
                    i += 1
                    options.append(try sequence(until: "|]:"))
                }
                try expect("]")
                return .alternation(options)
            }
            try expect(":")
            let save = i
            nextID += 1
            if let n = numberAndClose() { return .edit(id: nextID, before: nil, after: a, number: n) }
            i = save
            let b = try sequence(until: ":]")
            try expect(":")
            guard let n = numberAndClose() else { throw Failure() }
            return .edit(id: nextID, before: a, after: b, number: n)
        }

        mutating func top() throws -> [Node] {
            var items: [Node] = []
            while let c = peek {
                let start = i, savedID = nextID
                if c == "(" || c == "[" {
                    do {
                        items.append(c == "(" ? try round() : try square())
                        continue
                    } catch {
                        i = start
                        nextID = savedID
                    }
                }
                if "[]():".contains(c) {
                    items.append(.text(String(c)))
                    i += 1
                } else if c == "|" {
                    throw Failure()
                } else {
                    items.append(.text(plain()))
                }
            }
            return items
        }
    }

    static func render(_ nodes: [Node], step: Int, when: [Int: Int]) -> String {
        var out = ""
        for n in nodes {
            switch n {
            case .text(let t): out += t
            case .emphasis(let open, let inner, let weight, let close):
                out.append(open)
                out += render(inner, step: step, when: when)
                if let weight { out += ":" + render(weight, step: step, when: when) }
                out.append(close)
            case .edit(let id, let before, let after, _):
                if step <= when[id]! {
                    out += before.map { render($0, step: step, when: when) } ?? ""
                } else {
                    out += render(after, step: step, when: when)
                }
            case .alternation(let options):
                out += render(options[(step - 1) % options.count], step: step, when: when)
            }
        }
        return out
    }

    /// The prompt's schedule for `steps` sampling steps: every step where the text changes,
    /// each with the text in force up to it.
    public static func schedule(_ prompt: String, steps: Int) -> [Entry] {
        var parser = Parser(prompt)
        guard let tree = try? parser.top() else { return [Entry(steps, prompt)] }
        var when: [Int: Int] = [:]
        var found: Set<Int> = [steps]
        func visit(_ nodes: [Node]) {
            for n in nodes {
                switch n {
                case .text: break
                case .emphasis(_, let inner, let weight, _):
                    visit(inner)
                    if let weight { visit(weight) }
                case .edit(let id, let before, let after, let number):
                    let v = Double(number) ?? 0
                    let at = number.contains(".") ? v * Double(steps) : v
                    let w = min(steps, Int(at.rounded(.towardZero)))
                    when[id] = w
                    if w >= 1 { found.insert(w) }
                    if let before { visit(before) }
                    visit(after)
                case .alternation(let options):
                    found.formUnion(1...max(steps, 1))
                    options.forEach(visit)
                }
            }
        }
        visit(tree)
        return found.sorted().map { Entry($0, render(tree, step: $0, when: when)) }
    }

    /// The text in force at the denoiser's call counter `k` (0, 1, 2, … one per call).
    public static func pick(_ schedule: [Entry], at k: Int) -> String {
        schedule.first { k <= $0.endAt }?.text ?? schedule[0].text
    }

    private static let andPattern = try! NSRegularExpression(pattern: "\\bAND\\b")
    private static let weightPattern = try! NSRegularExpression(pattern: "^((?:\\s|.)*?)(?:\\s*:\\s*([-+]?(?:\\d+\\.?|\\d*\\.\\d+)))?\\s*$")

    /// The parts of a prompt split on the word `AND`, each with its weight (`text :w`, default 1).
    public static func splitAND(_ prompt: String) -> [(text: String, weight: Double)] {
        let ns = prompt as NSString
        var parts: [String] = []
        var last = 0
        for m in andPattern.matches(in: prompt, range: NSRange(location: 0, length: ns.length)) {
            parts.append(ns.substring(with: NSRange(location: last, length: m.range.location - last)))
            last = m.range.location + m.range.length
        }
        parts.append(ns.substring(from: last))
        return parts.map { part in
            let p = part as NSString
            guard let m = weightPattern.firstMatch(in: part, range: NSRange(location: 0, length: p.length)) else { return (part, 1) }
            let text = p.substring(with: m.range(at: 1))
            let w = m.range(at: 2).location == NSNotFound ? 1 : Double(p.substring(with: m.range(at: 2))) ?? 1
            return (text, w)
        }
    }
}

/// Extra-network tags in a prompt (`<lora:name:0.8>`, `<hypernet:…>`; A1111's
/// `extra_networks.parse_prompt`, pattern `<(\w+):([^>]+)>`): removed from the text the text
/// encoder sees, collected with their colon-separated arguments.
public enum ExtraNetworkTags {
    public struct Tag: Equatable, Sendable {
        public var kind: String
        public var arguments: [String]
        public init(kind: String, arguments: [String]) {
            self.kind = kind
            self.arguments = arguments
        }
    }

    private static let pattern = try! NSRegularExpression(pattern: "<(\\w+):([^>]+)>")

    public static func parse(_ prompt: String) -> (text: String, tags: [Tag]) {
        let ns = prompt as NSString
        var tags: [Tag] = []
        for m in pattern.matches(in: prompt, range: NSRange(location: 0, length: ns.length)) {
            tags.append(Tag(kind: ns.substring(with: m.range(at: 1)), arguments: ns.substring(with: m.range(at: 2)).components(separatedBy: ":")))
        }
        let text = pattern.stringByReplacingMatches(in: prompt, range: NSRange(location: 0, length: ns.length), withTemplate: "")
        return (text, tags)
    }

    public static func strip(_ prompt: String) -> String { parse(prompt).text }
}
