import Foundation

/// One `key: value` of an infotext.
public struct InfotextField: Sendable, Equatable {
    public let key: String
    public let value: String
    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// A1111's "generation parameters" text, stored in the PNG `parameters` chunk.
public enum Infotext {
    /// `prompt`, `Negative prompt: …`, then `key: value` pairs in A1111's order; values with
    /// `,`, `:` or a newline are written as JSON strings.
    public static func make(prompt: String, negativePrompt: String, fields: [(String, String?)]) -> String {
        let params = fields.compactMap { key, value -> String? in
            guard let value else { return nil }
            if value == key { return key }
            return "\(key): \(quote(value))"
        }.joined(separator: ", ")
        var text = prompt
        if !negativePrompt.isEmpty { text += "\nNegative prompt: " + negativePrompt }
        text += "\n" + params
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static func quote(_ v: String) -> String {
        guard v.contains(",") || v.contains(":") || v.contains("\n") else { return v }
        var out = "\""
        for u in v.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    /// Python's `str(float)`: `7.0`, `7.5`, `1e-05`.
    public static func pythonFloat(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e16 { return String(format: "%.1f", v) }
        return "\(v)"
    }

    /// Parses an infotext as A1111's `parse_generation_parameters` steps 1–3: prompt, negative
    /// prompt, and every `key: value` of the last line as strings (`Size-1`/`Size-2` for `WxH`).
    public static func parse(_ text: String) -> [String: String] {
        var lines = text.components(separatedBy: "\n")
        var out: [String: String] = [:]
        let pairs = lines.last.map(paramPairs) ?? []
        if pairs.count >= 3 {
            lines.removeLast()
            for (k, v) in pairs {
                var value = v.trimmingCharacters(in: .whitespaces)
                if value.hasPrefix("\""), let d = value.data(using: .utf8),
                   let s = try? JSONDecoder().decode(String.self, from: d) {
                    value = s
                }
                let parts = value.split(separator: "x", omittingEmptySubsequences: false)
                if parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), !parts[0].isEmpty, !parts[1].isEmpty {
                    out[k + "-1"] = String(w)
                    out[k + "-2"] = String(h)
                } else {
                    out[k] = value
                }
            }
        }
        var prompt: [String] = [], negative: [String] = []
        var inNegative = false
        for line in lines {
            if line.hasPrefix("Negative prompt:") {
                inNegative = true
                negative.append(String(line.dropFirst("Negative prompt:".count)))
            } else if inNegative {
                negative.append(line)
            } else {
                prompt.append(line)
            }
        }
        out["Prompt"] = prompt.joined(separator: "\n")
        out["Negative prompt"] = negative.joined(separator: "\n").trimmingCharacters(in: .whitespaces)
        return out
    }

    /// `\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`, applied repeatedly.
    static func paramPairs(_ line: String) -> [(String, String)] {
        let c = Array(line)
        var i = 0
        var out: [(String, String)] = []
        func isWord(_ ch: Character) -> Bool { ch.isLetter || ch.isNumber || ch == "_" }
        while i < c.count {
            while i < c.count && c[i].isWhitespace { i += 1 }
            guard i < c.count, isWord(c[i]) else { i += 1; continue }
            var j = i + 1
            while j < c.count && (isWord(c[j]) || c[j] == " " || c[j] == "-" || c[j] == "/") { j += 1 }
            guard j < c.count, c[j] == ":", j - i >= 2 else {
                // not a key: skip to the next comma
                while i < c.count && c[i] != "," { i += 1 }
                i += 1
                continue
            }
            let key = String(c[i..<j])
            var k = j + 1
            while k < c.count && c[k].isWhitespace { k += 1 }
            var value = ""
            if k < c.count && c[k] == "\"" {
                var m = k + 1
                while m < c.count && c[m] != "\"" { m += c[m] == "\\" ? 2 : 1 }
                value = String(c[k...min(m, c.count - 1)])
                k = m + 1
                while k < c.count && c[k] != "," { k += 1 }
            } else {
                var m = k
                while m < c.count && c[m] != "," { m += 1 }
                value = String(c[k..<m])
                k = m
            }
            out.append((key, value))
            i = k + 1
        }
        return out
    }
}
