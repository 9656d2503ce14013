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

    /// `whitespace_clean(ftfy.fix_text(text)).lower()` — A1111's clean-up (transformers 4.30's
    /// slow `CLIPTokenizer` with ftfy installed). ftfy's default steps, per line: HTML entities
    /// unescaped (until a line holds `<`), mojibake undone, C1 controls read as Windows-1252,
    /// Latin ligatures split, full-width forms narrowed, curly quotes straightened, line breaks
    /// unified, terminal escapes and control characters dropped, NFC. Then runs of whitespace
    /// become one space, trimmed, and Python's `str.lower()` (final sigma included).
    public static func clean(_ text: String) -> String {
        var lines: [String] = []
        var htmlAllowed = true
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.contains("<") { htmlAllowed = false }
            var s = String(line)
            // ftfy repeats its fixes until the text stops changing
            for _ in 0..<4 {
                let before = s
                if htmlAllowed { s = unescapeHTML(s) }
                s = fixMojibake(s)
                s = fixCharacters(s)
                s = s.precomposedStringWithCanonicalMapping
                if s == before { break }
            }
            lines.append(s)
        }
        let fixed = lines.joined(separator: "\n")
        var collapsed = String.UnicodeScalarView()
        var pendingSpace = false
        for u in fixed.unicodeScalars {
            if u.properties.isWhitespace || (0x1C...0x1F).contains(u.value) {
                pendingSpace = !collapsed.isEmpty
            } else {
                if pendingSpace { collapsed.append(" "); pendingSpace = false }
                collapsed.append(u)
            }
        }
        return pythonLower(String(collapsed))
    }

    /// Per-character fixes of ftfy: C1 controls, ligatures, character width, quotes,
    /// line breaks, terminal escapes, control characters.
    static func fixCharacters(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        let u = Array(s.unicodeScalars)
        var i = 0
        while i < u.count {
            let c = u[i]
            let v = c.value
            if v == 0x1B, i + 1 < u.count, u[i + 1] == "[" {  // ESC [ params letter
                var j = i + 2
                while j < u.count && !(u[j].properties.isAlphabetic && u[j].isASCII) { j += 1 }
                i = j + 1
                continue
            }
            i += 1
            if let split = latinLigatures[v] {
                out.append(contentsOf: split.unicodeScalars)
                continue
            }
            switch v {
            case 0x80...0x9F:
                if let w = windows1252[UInt8(v)] { out.append(w) } else { out.append(c) }
            case 0x3000: out.append(" ")
            case 0xFF01...0xFFEF:
                out.append(contentsOf: String(c).precomposedStringWithCompatibilityMapping.unicodeScalars)
            case 0x02BC, 0x2018...0x201B: out.append("'")
            case 0x201C...0x201F: out.append("\"")
            case 0x2028, 0x2029: out.append("\n")
            case 0x0D:
                out.append("\n")
                if i < u.count && u[i] == "\n" { i += 1 }
            case 0x00...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0x206A...0x206F, 0xFEFF, 0xFFF9...0xFFFC:
                continue
            default: out.append(c)
            }
        }
        return String(out)
    }

    /// Undoes UTF-8 read as Windows-1252 ("cafÃ©" → "café"): each run of characters that
    /// Windows-1252 can encode is re-encoded and, when that is valid UTF-8 with at least one
    /// multi-byte sequence, decoded.
    static func fixMojibake(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { $0.value >= 0xC2 && $0.value <= 0xF4 }) else { return s }
        var out = ""
        var run: [UInt8] = []
        var runText = ""
        func flush() {
            if run.contains(where: { $0 >= 0xC2 }), let decoded = String(bytes: run, encoding: .utf8),
               decoded.unicodeScalars.contains(where: { $0.value >= 0x80 }) {
                out += decoded
            } else {
                out += runText
            }
            run = []; runText = ""
        }
        for c in s.unicodeScalars {
            if let b = cp1252Byte(c) {
                run.append(b)
                runText.unicodeScalars.append(c)
            } else {
                flush()
                out.unicodeScalars.append(c)
            }
        }
        flush()
        return out
    }

    /// ftfy's `fix_latin_ligatures`: the Latin ligatures and digraphs split into their letters.
    static let latinLigatures: [UInt32: String] = [
        0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "st", 0xFB06: "st",
        0x0132: "IJ", 0x0133: "ij", 0x01C4: "DŽ", 0x01C5: "Dž", 0x01C6: "dž", 0x01C7: "LJ", 0x01C8: "Lj",
        0x01C9: "lj", 0x01CA: "NJ", 0x01CB: "Nj", 0x01CC: "nj", 0x0149: "ʼn",
    ]

    static let windows1252: [UInt8: Unicode.Scalar] = {
        let table: [UInt8: UInt32] = [
            0x80: 0x20AC, 0x82: 0x201A, 0x83: 0x0192, 0x84: 0x201E, 0x85: 0x2026, 0x86: 0x2020, 0x87: 0x2021,
            0x88: 0x02C6, 0x89: 0x2030, 0x8A: 0x0160, 0x8B: 0x2039, 0x8C: 0x0152, 0x8E: 0x017D, 0x91: 0x2018,
            0x92: 0x2019, 0x93: 0x201C, 0x94: 0x201D, 0x95: 0x2022, 0x96: 0x2013, 0x97: 0x2014, 0x98: 0x02DC,
            0x99: 0x2122, 0x9A: 0x0161, 0x9B: 0x203A, 0x9C: 0x0153, 0x9E: 0x017E, 0x9F: 0x0178,
        ]
        return table.mapValues { Unicode.Scalar($0)! }
    }()

    static let cp1252Reverse: [UInt32: UInt8] = {
        var r: [UInt32: UInt8] = [:]
        for (b, u) in windows1252 { r[u.value] = b }
        return r
    }()

    static func cp1252Byte(_ c: Unicode.Scalar) -> UInt8? {
        if c.value < 0x80 || (0xA0...0xFF).contains(c.value) { return UInt8(c.value) }
        return cp1252Reverse[c.value]
    }

    /// Python's `str.lower()`: full lower-case mapping, and capital sigma at the end of a
    /// word becomes final sigma.
    static func pythonLower(_ s: String) -> String {
        let u = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        for (i, c) in u.enumerated() {
            if c.value == 0x03A3 {
                let before = u[..<i].last { !$0.properties.isCaseIgnorable }.map { $0.properties.isCased } ?? false
                let after = u[(i + 1)...].first { !$0.properties.isCaseIgnorable }.map { $0.properties.isCased } ?? false
                out.append(before && !after ? "ς" : "σ")
            } else {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return String(out)
    }

    static let entities: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}",
        "copy": "©", "reg": "®", "trade": "™", "hellip": "…", "mdash": "—", "ndash": "–", "middot": "·",
        "laquo": "«", "raquo": "»", "lsquo": "‘", "rsquo": "’", "ldquo": "“", "rdquo": "”", "bull": "•",
        "deg": "°", "times": "×", "divide": "÷", "euro": "€", "pound": "£", "yen": "¥", "cent": "¢",
        "sect": "§", "para": "¶", "plusmn": "±", "frac12": "½", "frac14": "¼", "frac34": "¾",
        "eacute": "é", "egrave": "è", "ecirc": "ê", "euml": "ë", "aacute": "á", "agrave": "à",
        "acirc": "â", "auml": "ä", "aring": "å", "atilde": "ã", "ccedil": "ç", "iacute": "í", "igrave": "ì",
        "icirc": "î", "iuml": "ï", "ntilde": "ñ", "oacute": "ó", "ograve": "ò", "ocirc": "ô", "ouml": "ö",
        "otilde": "õ", "oslash": "ø", "uacute": "ú", "ugrave": "ù", "ucirc": "û", "uuml": "ü", "szlig": "ß",
        "Eacute": "É", "Agrave": "À", "Aacute": "Á", "Ouml": "Ö", "Uuml": "Ü", "Auml": "Ä", "Ccedil": "Ç",
        "Ntilde": "Ñ", "aelig": "æ", "AElig": "Æ",
    ]

    /// Python `html.unescape` for `&name;` (a table of common HTML5 entities) and `&#N;`/`&#xN;`.
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
