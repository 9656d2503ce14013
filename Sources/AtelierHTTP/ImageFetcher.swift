import AtelierService
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Downloads init images given by URL (`alwayson_scripts.image_link`, or an `http(s)://` entry
/// of `init_images`) under A1111's rules: only while the option `api_enable_requests` is on,
/// and — while `api_forbid_local_requests` is on (the default) — never from a host that
/// resolves to a loopback, private, link-local or otherwise non-global address.
struct ImageFetcher {
    var enabled = true
    var forbidLocal = true
    var maxBytes = 64 << 20
    var timeout: TimeInterval = 30

    init(options: OptionsStore) {
        enabled = options["api_enable_requests"]?.any as? Bool ?? true
        forbidLocal = options["api_forbid_local_requests"]?.any as? Bool ?? true
    }

    static func isURL(_ s: String) -> Bool { s.hasPrefix("http://") || s.hasPrefix("https://") }

    func fetch(_ link: String, field: String) async throws -> Data {
        guard enabled else { throw ServiceError(400, field: field, "\(field): fetching images by URL is off (option api_enable_requests)") }
        guard let url = URL(string: link), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = url.host, !host.isEmpty else {
            throw ServiceError(400, field: field, "\(field): not an http(s) URL: \(link.prefix(200))")
        }
        if forbidLocal {
            let addresses = Self.resolve(host)
            guard !addresses.isEmpty else { throw ServiceError(400, field: field, "\(field): cannot resolve host \(host)") }
            if let local = addresses.first(where: { !Self.isGlobal($0) }) {
                throw ServiceError(400, field: field, "\(field): Request to local resource not allowed (\(host) is \(local); option api_forbid_local_requests)")
            }
        }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.setValue("Atelier", forHTTPHeaderField: "User-Agent")
        let (data, response): (Data, URLResponse)
        do { (data, response) = try await URLSession.shared.data(for: request) } catch {
            throw ServiceError(400, field: field, "\(field): cannot download \(link.prefix(200)): \(error.localizedDescription)")
        }
        if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
            throw ServiceError(400, field: field, "\(field): \(link.prefix(200)) answered HTTP \(http.statusCode)")
        }
        guard data.count <= maxBytes else { throw ServiceError(413, field: field, "\(field): image larger than \(maxBytes >> 20) MB") }
        return data
    }

    /// The host's addresses as text (numeric hosts included).
    static func resolve(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard getaddrinfo(h, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        var out: [String] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(a.pointee.ai_addr, a.pointee.ai_addrlen, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0 {
                out.append(String(cString: buf))
            }
            p = a.pointee.ai_next
        }
        return out
    }

    /// Python's `ipaddress.ip_address(a).is_global`, for the ranges that matter.
    static func isGlobal(_ address: String) -> Bool {
        if address.contains(":") {
            let a = address.lowercased()
            if a == "::1" || a == "::" || a.hasPrefix("fe8") || a.hasPrefix("fe9") || a.hasPrefix("fea") || a.hasPrefix("feb")
                || a.hasPrefix("fc") || a.hasPrefix("fd") || a.hasPrefix("ff") { return false }
            if a.hasPrefix("::ffff:") { return isGlobal(String(a.dropFirst(7))) }
            return true
        }
        let o = address.split(separator: ".").compactMap { Int($0) }
        guard o.count == 4 else { return false }
        switch (o[0], o[1]) {
        case (0, _), (10, _), (127, _), (169, 254), (192, 168), (255, _): return false
        case (172, 16...31), (100, 64...127), (192, 0), (198, 18...19): return false
        case (224...239, _): return false
        default: return true
        }
    }
}
