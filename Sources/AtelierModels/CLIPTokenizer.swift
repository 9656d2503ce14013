import CZlib
import Foundation

/// CLIP's byte-level BPE tokenizer, as A1111 runs it (transformers' `CLIPTokenizer` with
/// ftfy installed): text clean-up, the CLIP word regex, bytes mapped to printable
/// characters, BPE merges with `</w>` word ends. The merge table is open_clip's
/// `bpe_simple_vocab_16e6.txt.gz` (MIT), bundled: nothing is downloaded.
public final class CLIPTokenizer: @unchecked Sendable {
    public static let bos = 49406
    public static let eos = 49407

    private let encoder: [String: Int]
    private let ranks: [Pair: Int]
    private let byteEncoder: [Character]
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()

    struct Pair: Hashable {
        let a: String, b: String
    }

    /// The tokenizer from the bundled merge table.
    public static let shared: CLIPTokenizer = {
        guard let url = Bundle.module.url(forResource: "bpe_simple_vocab_16e6.txt", withExtension: "gz"),
              let gz = try? Data(contentsOf: url), let text = gunzip(gz).flatMap({ String(data: $0, encoding: .utf8) })
        else { fatalError("the bundled CLIP merge table is missing or corrupt") }
        return CLIPTokenizer(mergesText: text)
    }()

    /// Builds the 49408-token vocabulary the way CLIP does: 256 byte symbols, the same with
    /// `</w>`, one token per merge (48894 merges), then the two special tokens.
    public init(mergesText: String) {
        let lines = mergesText.split(separator: "\n", omittingEmptySubsequences: false)
        let merges = lines[1..<(49152 - 256 - 2 + 1)].map { line -> Pair in
            let parts = line.split(separator: " ")
            return Pair(a: String(parts[0]), b: String(parts[1]))
        }
        let (table, ordered) = Self.bytesToUnicode()
        byteEncoder = table
        var vocab = ordered.map { String($0) }
        vocab += ordered.map { String($0) + "</w>" }
        vocab += merges.map { $0.a + $0.b }
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        var enc: [String: Int] = [:]
        for (i, v) in vocab.enumerated() { enc[v] = i }
        encoder = enc
        var r: [Pair: Int] = [:]
        for (i, m) in merges.enumerated() { r[m] = i }
        ranks = r
    }

    /// Token id of a vocabulary entry (e.g. `",</w>"`).
    public func id(of token: String) -> Int? { encoder[token] }

    /// Token ids of `text`, without BOS/EOS.
    public func encode(_ text: String) -> [Int] {
        let clean = Self.clean(text)
        var ids: [Int] = []
        for word in Self.words(clean) {
            if word == "<|startoftext|>" { ids.append(Self.bos); continue }
            if word == "<|endoftext|>" { ids.append(Self.eos); continue }
            let mapped = String(word.utf8.map { byteEncoder[Int($0)] })
            ids += bpe(mapped)
        }
        return ids
    }

    private func bpe(_ token: String) -> [Int] {
        lock.lock()
        if let hit = cache[token] { lock.unlock(); return hit }
        lock.unlock()
        var word = token.map { String($0) }
        word[word.count - 1] += "</w>"
        while word.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(word.count - 1) {
                if let r = ranks[Pair(a: word[i], b: word[i + 1])], r < (best?.rank ?? Int.max) { best = (r, i) }
            }
            guard let best else { break }
            let (a, b) = (word[best.index], word[best.index + 1])
            var merged: [String] = []
            var i = 0
            while i < word.count {
                if i < word.count - 1 && word[i] == a && word[i + 1] == b {
                    merged.append(a + b)
                    i += 2
                } else {
                    merged.append(word[i])
                    i += 1
                }
            }
            word = merged
        }
        let ids = word.map { encoder[$0] ?? 0 }
        lock.lock()
        cache[token] = ids
        lock.unlock()
        return ids
    }

    /// GPT-2's reversible byte → printable character table (indexed by byte), and the same
    /// characters in CLIP's vocabulary order (printable bytes first).
    static func bytesToUnicode() -> (table: [Character], ordered: [Character]) {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return (table, cs.map { Character(Unicode.Scalar(UInt32($0))!) })
    }

    // MARK: - Text clean-up and word splitting

    /// `whitespace_clean(ftfy.fix_text(text)).lower()`, limited to what ftfy's defaults change in
    /// prompts: HTML entities unescaped (when the text has no `<…>` tag), full-width ASCII
    /// forms narrowed, curly quotes straightened, line breaks unified, control characters
    /// dropped, NFC; then runs of whitespace become one space, trimmed, lower-cased.
    public static func clean(_ text: String) -> String {
        var s = text
        if !(s.contains("<") && s.contains(">")) { s = unescapeHTML(s) }
        var out = String.UnicodeScalarView()
        for u in s.unicodeScalars {
            switch u.value {
            case 0xFF01...0xFF5E: out.append(Unicode.Scalar(u.value - 0xFEE0)!)  // full-width ASCII
            case 0x3000: out.append(" ")
            case 0x2018, 0x2019, 0x201A, 0x201B, 0x2032: out.append("'")
            case 0x201C, 0x201D, 0x201E, 0x201F, 0x2033: out.append("\"")
            case 0x00..<0x09, 0x0B, 0x0E..<0x20, 0x7F: continue
            default: out.append(u)
            }
        }
        s = String(out).precomposedStringWithCanonicalMapping
        // whitespace_clean: \s+ → " ", strip
        var collapsed = String.UnicodeScalarView()
        var pendingSpace = false
        for u in s.unicodeScalars {
            if u.properties.isWhitespace || (0x1C...0x1F).contains(u.value) {
                pendingSpace = !collapsed.isEmpty
            } else {
                if pendingSpace { collapsed.append(" "); pendingSpace = false }
                collapsed.append(u)
            }
        }
        return String(collapsed).lowercased()
    }

    static let entities: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}",
        "copy": "©", "reg": "®", "hellip": "…", "mdash": "—", "ndash": "–",
    ]

    /// Python `html.unescape` for the named entities above and numeric references.
    static func unescapeHTML(_ s: String) -> String {
        guard s.contains("&") else { return s }
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == "&", let semi = s[i...].prefix(12).firstIndex(of: ";") {
                let body = s[s.index(after: i)..<semi]
                var replacement: String?
                if body.hasPrefix("#x") || body.hasPrefix("#X") {
                    replacement = UInt32(body.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String($0) }
                } else if body.hasPrefix("#") {
                    replacement = UInt32(body.dropFirst()).flatMap(Unicode.Scalar.init).map { String($0) }
                } else {
                    replacement = entities[String(body)]
                }
                if let replacement {
                    out += replacement
                    i = s.index(after: semi)
                    continue
                }
            }
            out.append(s[i])
            i = s.index(after: i)
        }
        return out
    }

    /// CLIP's word pattern:
    /// `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
    static func words(_ text: String) -> [String] {
        let u = Array(text.unicodeScalars)
        var out: [String] = []
        func isLetter(_ c: Unicode.Scalar) -> Bool {
            switch c.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: true
            default: false
            }
        }
        func isNumber(_ c: Unicode.Scalar) -> Bool {
            switch c.properties.generalCategory {
            case .decimalNumber, .letterNumber, .otherNumber: true
            default: false
            }
        }
        func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }
        func matches(_ literal: String, at i: Int) -> Bool {
            let l = Array(literal.unicodeScalars)
            guard i + l.count <= u.count else { return false }
            for j in 0..<l.count where String(u[i + j]).lowercased() != String(l[j]) { return false }
            return true
        }
        var i = 0
        outer: while i < u.count {
            let c = u[i]
            for special in ["<|startoftext|>", "<|endoftext|>"] where matches(special, at: i) {
                out.append(special)
                i += special.unicodeScalars.count
                continue outer
            }
            if c == "'" {
                for suffix in ["'re", "'ve", "'ll", "'s", "'t", "'m", "'d"] where matches(suffix, at: i) {
                    out.append(String(String.UnicodeScalarView(u[i..<(i + suffix.count)])))
                    i += suffix.count
                    continue outer
                }
            }
            if isLetter(c) {
                var j = i
                while j < u.count && isLetter(u[j]) { j += 1 }
                out.append(String(String.UnicodeScalarView(u[i..<j])))
                i = j
            } else if isNumber(c) {
                out.append(String(c))
                i += 1
            } else if isSpace(c) {
                i += 1
            } else {
                var j = i
                while j < u.count && !isLetter(u[j]) && !isNumber(u[j]) && !isSpace(u[j]) { j += 1 }
                out.append(String(String.UnicodeScalarView(u[i..<j])))
                i = j
            }
        }
        return out
    }
}

/// Inflates a gzip stream with zlib.
func gunzip(_ data: Data) -> Data? {
    var stream = z_stream()
    guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
    defer { inflateEnd(&stream) }
    var out = Data()
    let chunk = 1 << 16
    var buffer = [UInt8](repeating: 0, count: chunk)
    var input = [UInt8](data)
    var status: Int32 = Z_OK
    input.withUnsafeMutableBufferPointer { inp in
        stream.next_in = inp.baseAddress
        stream.avail_in = uInt(inp.count)
        repeat {
            buffer.withUnsafeMutableBufferPointer { b in
                stream.next_out = b.baseAddress
                stream.avail_out = uInt(chunk)
                status = inflate(&stream, Z_NO_FLUSH)
                out.append(b.baseAddress!, count: chunk - Int(stream.avail_out))
            }
        } while status == Z_OK
    }
    return status == Z_STREAM_END ? out : nil
}
