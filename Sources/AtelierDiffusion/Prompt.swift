import AtelierModels
import AtelierTensor
import Foundation

/// A1111's prompt language, the emphasis part (`prompt_parser.parse_prompt_attention`).
public enum PromptParser {
    /// One run of text with its emphasis multiplier; `BREAK` is `("BREAK", -1)`.
    public struct Fragment: Equatable, Sendable {
        public var text: String
        public var weight: Double
        public init(_ text: String, _ weight: Double) {
            self.text = text
            self.weight = weight
        }
    }

    /// `(a)` ×1.1, `[a]` ÷1.1, `(a:1.3)`, `\(` escapes, `BREAK`; unbalanced openers apply to
    /// the rest of the prompt; neighbours with equal weights are merged.
    public static func parseEmphasis(_ text: String) -> [Fragment] {
        var out: [Fragment] = []
        var round: [Int] = [], square: [Int] = []
        func scale(from start: Int, _ factor: Double) {
            for i in start..<out.count { out[i].weight *= factor }
        }
        func appendText(_ piece: String) {
            for (n, part) in splitBreak(piece).enumerated() {
                if n > 0 { out.append(Fragment("BREAK", -1)) }
                out.append(Fragment(part, 1))
            }
        }
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "\\" {
                if i + 1 < chars.count, "()[]\\".contains(chars[i + 1]) {
                    out.append(Fragment(String(chars[i + 1]), 1))
                    i += 2
                } else {
                    out.append(Fragment("", 1))
                    i += 1
                }
            } else if c == "(" {
                round.append(out.count); i += 1
            } else if c == "[" {
                square.append(out.count); i += 1
            } else if c == ":" {
                // ":\s*([+-]?[.\d]+)\s*\)" closes a round bracket with an explicit weight
                if let (weight, end) = explicitWeight(chars, from: i), !round.isEmpty, let w = Double(weight) {
                    scale(from: round.removeLast(), w)
                    i = end
                } else if let (_, end) = explicitWeight(chars, from: i) {
                    appendText(String(chars[i..<end])); i = end
                } else {
                    appendText(":"); i += 1
                }
            } else if c == ")" {
                if let r = round.popLast() { scale(from: r, 1.1) } else { appendText(")") }
                i += 1
            } else if c == "]" {
                if let s = square.popLast() { scale(from: s, 1 / 1.1) } else { appendText("]") }
                i += 1
            } else {
                var j = i
                while j < chars.count && !"\\()[]:".contains(chars[j]) { j += 1 }
                appendText(String(chars[i..<j]))
                i = j
            }
        }
        for r in round { scale(from: r, 1.1) }
        for s in square { scale(from: s, 1 / 1.1) }
        if out.isEmpty { out = [Fragment("", 1)] }
        var merged = [out[0]]
        for f in out.dropFirst() {
            if f.weight == merged[merged.count - 1].weight {
                merged[merged.count - 1].text += f.text
            } else {
                merged.append(f)
            }
        }
        return merged
    }

    /// Matches `:\s*([+-]?[.\d]+)\s*\)` at `i`; returns the number text and the end index.
    static func explicitWeight(_ c: [Character], from i: Int) -> (String, Int)? {
        var j = i + 1
        while j < c.count && c[j].isWhitespace { j += 1 }
        var num = ""
        if j < c.count && (c[j] == "+" || c[j] == "-") { num.append(c[j]); j += 1 }
        let start = j
        while j < c.count && (c[j] == "." || c[j].isASCII && c[j].isNumber) { num.append(c[j]); j += 1 }
        guard j > start else { return nil }
        while j < c.count && c[j].isWhitespace { j += 1 }
        guard j < c.count && c[j] == ")" else { return nil }
        return (num, j + 1)
    }

    /// `re.split(r"\s*\bBREAK\b\s*", text)`
    static func splitBreak(_ text: String) -> [String] {
        let c = Array(text)
        func isWord(_ ch: Character) -> Bool { ch.isLetter || ch.isNumber || ch == "_" }
        var parts: [String] = []
        var current = 0
        var i = 0
        while i + 5 <= c.count {
            if String(c[i..<(i + 5)]) == "BREAK" && (i == 0 || !isWord(c[i - 1])) && (i + 5 == c.count || !isWord(c[i + 5])) {
                var a = i
                while a > current && c[a - 1].isWhitespace { a -= 1 }
                var b = i + 5
                while b < c.count && c[b].isWhitespace { b += 1 }
                parts.append(String(c[current..<a]))
                current = b
                i = b
            } else {
                i += 1
            }
        }
        parts.append(String(c[current...]))
        return parts
    }
}

/// One 77-token chunk: BOS, 75 tokens (padded with EOS), EOS, and a multiplier per token;
/// embeddings' vectors replace the placeholder tokens (id 0) at their offsets.
public struct PromptChunk: Equatable, Sendable {
    public var tokens: [Int]
    public var multipliers: [Double]
    public var fixes: [Fix] = []

    /// An embedding at `offset` (counted after BOS, as A1111's `PromptChunkFix`).
    public struct Fix: Equatable, @unchecked Sendable {
        public var offset: Int
        public var embedding: String
        public var vectors: Tensor
        public static func == (a: Fix, b: Fix) -> Bool { a.offset == b.offset && a.embedding == b.embedding }
    }
}

/// Embedding names by their CLIP tokens, for the chunker (A1111's `ids_lookup`).
public struct EmbeddingLookup {
    var byFirstToken: [Int: [(ids: [Int], embedding: TextualInversion)]] = [:]

    public init(_ embeddings: [TextualInversion], tokenizer: CLIPTokenizer) {
        for e in embeddings {
            let ids = tokenizer.encode(e.name)
            guard let first = ids.first else { continue }
            byFirstToken[first, default: []].append((ids, e))
            byFirstToken[first]!.sort { $0.ids.count > $1.ids.count }
        }
    }

    func match(_ tokens: [Int], at position: Int) -> (embedding: TextualInversion, length: Int)? {
        guard let candidates = byFirstToken[tokens[position]] else { return nil }
        for (ids, e) in candidates where position + ids.count <= tokens.count && Array(tokens[position..<(position + ids.count)]) == ids {
            return (e, ids.count)
        }
        return nil
    }
}

extension PromptParser {
    /// A1111's `tokenize_line`: 75-token chunks; when a chunk fills up and a comma lies within
    /// the last 20 tokens, the tokens after it move to the next chunk; `BREAK` closes a chunk.
    public static func chunks(_ text: String, tokenizer: CLIPTokenizer, emphasis: Bool = true,
                              embeddings: EmbeddingLookup? = nil) -> [PromptChunk] {
        let chunkLength = 75, backtrack = 20
        let comma = tokenizer.id(of: ",</w>")
        let parsed = emphasis ? parseEmphasis(text) : [Fragment(text, 1)]
        var chunks: [PromptChunk] = []
        var ids: [Int] = [], mults: [Double] = []
        var fixes: [PromptChunk.Fix] = []
        var lastComma = -1
        func close() {
            let pad = chunkLength - ids.count
            chunks.append(PromptChunk(
                tokens: [CLIPTokenizer.bos] + ids + Array(repeating: CLIPTokenizer.eos, count: pad + 1),
                multipliers: [1] + mults + Array(repeating: 1, count: pad + 1), fixes: fixes))
            ids = []; mults = []; fixes = []; lastComma = -1
        }
        for frag in parsed {
            if frag.text == "BREAK" && frag.weight == -1 { close(); continue }
            let tokens = tokenizer.encode(frag.text)
            var position = 0
            while position < tokens.count {
                let tok = tokens[position]
                if tok == comma {
                    lastComma = ids.count
                } else if ids.count == chunkLength && lastComma != -1 && ids.count - lastComma <= backtrack {
                    let cut = lastComma + 1
                    let movedIds = Array(ids[cut...]), movedMults = Array(mults[cut...])
                    ids = Array(ids[..<cut]); mults = Array(mults[..<cut])
                    close()
                    ids = movedIds; mults = movedMults
                }
                if ids.count == chunkLength { close() }
                guard let (embedding, length) = embeddings?.match(tokens, at: position) else {
                    ids.append(tok)
                    mults.append(frag.weight)
                    position += 1
                    continue
                }
                let n = embedding.vectors.shape[0]
                if ids.count + n > chunkLength { close() }
                fixes.append(PromptChunk.Fix(offset: ids.count, embedding: embedding.name, vectors: embedding.vectors))
                ids += Array(repeating: 0, count: n)
                mults += Array(repeating: frag.weight, count: n)
                position += length
            }
        }
        if !ids.isEmpty || chunks.isEmpty { close() }
        return chunks
    }
}
