import Foundation

/// `containers[].script`: a `webui.sh` command line (`./webui.sh --listen --port 8000 …`),
/// split as a POSIX shell would split it (quotes, backslashes; no expansions) into the program
/// and its flags; `--flag value` and `--flag=value` read the same.
public struct WebUIScript: Sendable, Equatable, Codable {
    public struct Flag: Sendable, Equatable, Codable {
        public let name: String
        public let value: String?
    }
    public let program: String
    public let flags: [Flag]

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    /// webui.sh flags Atelier knows, and whether each takes a value.
    public static let knownFlags: [String: Bool] = [
        "--listen": false, "--port": true, "--api": false, "--api-log": false, "--time-log": false, "--nowebui": false,
        "--filebrowser": false, "--data-dir": true, "--ckpt-dir": true, "--lora-dir": true, "--vae-dir": true, "--vae-path": true,
        "--embeddings-dir": true, "--hypernetwork-dir": true, "--gfpgan-dir": true, "--controlnet-dir": true,
        "--always-hide-tabs": true, "--api-auth": true, "--enable-nsfw-censor": false, "--no-hashing": false,
        "--skip-version-check": false, "--no-download-sd-model": false, "--skip-prepare-environment": false,
        "--blade": false, "--xformers": false, "--sd-dynamic-cache": false, "--min-ram-reserved": true,
        "--root-extensions": false, "--skip-torch-cuda-test": false, "--no-half": false, "--no-half-vae": false,
        "--medvram": false, "--lowvram": false, "--opt-sdp-attention": false, "--disable-safe-unpickle": false,
        "--enable-insecure-extension-access": false, "--skip-install": false, "--disable-nan-check": false,
        "--precision": true, "--upcast-sampling": false, "--share": false, "--theme": true, "--cors-allow-origins": true,
    ]

    public init(program: String, flags: [Flag]) {
        self.program = program
        self.flags = flags
    }

    public init(parsing text: String) throws {
        let words = try Self.split(text)
        guard let first = words.first else { throw ParseError(description: "empty command line") }
        guard !first.hasPrefix("-") else { throw ParseError(description: "starts with a flag; expected the program (./webui.sh)") }
        var flags: [Flag] = []
        var i = 1
        while i < words.count {
            let w = words[i]
            guard w.hasPrefix("--") else { throw ParseError(description: "unexpected argument \"\(w)\" (flags start with --)") }
            if let eq = w.firstIndex(of: "=") {
                flags.append(Flag(name: String(w[..<eq]), value: String(w[w.index(after: eq)...])))
            } else if Self.knownFlags[w] == true || (Self.knownFlags[w] == nil && i + 1 < words.count && !words[i + 1].hasPrefix("--")) {
                guard i + 1 < words.count else { throw ParseError(description: "\(w) needs a value") }
                flags.append(Flag(name: w, value: words[i + 1]))
                i += 1
            } else {
                flags.append(Flag(name: w, value: nil))
            }
            i += 1
        }
        for f in flags where Self.knownFlags[f.name] == false && f.value != nil {
            throw ParseError(description: "\(f.name) takes no value (got \(f.name)=\(f.value!))")
        }
        if let p = flags.last(where: { $0.name == "--port" })?.value, Int(p).map({ (1...65535).contains($0) }) != true {
            throw ParseError(description: "--port \(p) is not a port number")
        }
        program = first
        self.flags = flags
    }

    public func has(_ name: String) -> Bool { flags.contains { $0.name == name } }
    /// The last value of a flag (as the shell script's argparse keeps the last).
    public func value(_ name: String) -> String? { flags.last { $0.name == name }?.value }

    /// POSIX-shell word splitting: single quotes literal, double quotes with \\ \" \$ \` escapes,
    /// backslash outside quotes; `;`, `|`, `&`, `$(` … are refused (no shell runs this line).
    static func split(_ text: String) throws -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var it = Array(text)
        var i = 0
        func fail(_ m: String) -> ParseError { ParseError(description: m) }
        while i < it.count {
            let c = it[i]
            switch c {
            case " ", "\t", "\n":
                if inWord { words.append(current); current = ""; inWord = false }
            case "'":
                inWord = true
                i += 1
                while i < it.count && it[i] != "'" { current.append(it[i]); i += 1 }
                guard i < it.count else { throw fail("unterminated single quote") }
            case "\"":
                inWord = true
                i += 1
                while i < it.count && it[i] != "\"" {
                    if it[i] == "\\", i + 1 < it.count, "\\\"$`".contains(it[i + 1]) { i += 1 }
                    else if it[i] == "$" || it[i] == "`" { throw fail("shell expansions are not supported in the script") }
                    current.append(it[i])
                    i += 1
                }
                guard i < it.count else { throw fail("unterminated double quote") }
            case "\\":
                inWord = true
                if i + 1 < it.count { i += 1; current.append(it[i]) }
            case ";", "|", "&", "<", ">", "`", "$", "(", ")":
                throw fail("'\(c)': only one webui.sh command line is allowed (no shell operators or expansions)")
            default:
                inWord = true
                current.append(c)
            }
            i += 1
        }
        if inWord { words.append(current) }
        it.removeAll()
        return words
    }
}
