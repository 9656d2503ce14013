import AtelierService
import Foundation
import Hummingbird
import NIOCore

/// The cloud service's FileBrowser (`--filebrowser`): list, download, upload and delete files of
/// the data dir, e.g. a checkpoint into `models/Stable-diffusion`. Every path is resolved inside
/// the data dir (`..`, absolute paths and symlinks leading out are a 400 naming `path`); without
/// the flag the routes do not exist (404). Behind the same token / session as the API.
struct FileBrowserRoutes {
    let data: DataDirectory
    /// the largest upload (a checkpoint is a few GB)
    let maxUploadBytes: Int

    func register(on router: Router<BasicRequestContext>) {
        let g = router.group("atelier/files")
        g.get { request, _ -> Response in try list(request) }
        g.get("download") { request, _ -> Response in try download(request) }
        g.post("upload") { request, _ -> Response in try await upload(request) }
        g.delete { request, _ -> Response in try remove(request) }
    }

    func path(_ request: Request, allowRoot: Bool) throws -> (rel: String, url: URL) {
        // form decoding (`+` is a space, `%XX`), as browsers' and requests' query strings are written
        let raw = QueryParameters(request.uri.query)["path"] ?? ""
        guard !raw.hasPrefix("/") else { throw ServiceError(400, field: "path", "path: relative to the data folder (no leading /)") }
        let rel = raw.split(separator: "/").joined(separator: "/")
        guard allowRoot || !rel.isEmpty else { throw ServiceError(400, field: "path", "path: name a file inside the data folder") }
        return (rel, try data.resolveInside(rel.isEmpty ? "." : rel, field: "path"))
    }

    func list(_ request: Request) throws -> Response {
        let (rel, url) = try path(request, allowRoot: true)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw ServiceError(404, field: "path", "path: no folder \(rel.isEmpty ? "/" : rel) in the data folder")
        }
        let keys: [URLResourceKey] = [.isDirectoryKey, .fileSizeKey, .contentModificationDateKey]
        let items = try FileManager.default.contentsOfDirectory(at: url, includingPropertiesForKeys: keys)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
            .map { u -> JSONValue in
                let v = try? u.resourceValues(forKeys: Set(keys))
                return .object(["name": .string(u.lastPathComponent), "is_dir": .bool(v?.isDirectory ?? false),
                                "size": .int(v?.fileSize ?? 0),
                                "modified": .string(ISO8601DateFormatter().string(from: v?.contentModificationDate ?? Date(timeIntervalSince1970: 0)))])
            }
            .sorted { a, b in
                guard case .object(let x) = a, case .object(let y) = b else { return false }
                let (dx, dy) = (x["is_dir"] == .bool(true), y["is_dir"] == .bool(true))
                return dx != dy ? dx : (x["name"]?.string ?? "") < (y["name"]?.string ?? "")
            }
        return jsonResponse(.object(["path": .string(rel), "items": .array(items)]))
    }

    func download(_ request: Request) throws -> Response {
        let (rel, url) = try path(request, allowRoot: false)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue else {
            throw ServiceError(404, field: "path", "path: no file \(rel) in the data folder")
        }
        let bytes = try Data(contentsOf: url, options: .mappedIfSafe)
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        let name = url.lastPathComponent.replacingOccurrences(of: "\"", with: "")
        headers[.contentDisposition] = "attachment; filename=\"\(name)\""
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(data: bytes)))
    }

    /// `POST /atelier/files/upload?path=models/Stable-diffusion/x.safetensors`, the file as the raw body;
    /// written beside its place and renamed, so a half upload never looks like a file.
    func upload(_ request: Request) async throws -> Response {
        let (rel, url) = try path(request, allowRoot: false)
        guard !url.lastPathComponent.hasPrefix(".") else { throw ServiceError(400, field: "path", "path: hidden names are not allowed") }
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            throw ServiceError(409, field: "path", "path: \(rel) is a folder")
        }
        // streamed to disk (a checkpoint is gigabytes), beside its place, then renamed
        let partial = dir.appendingPathComponent(".\(url.lastPathComponent).upload")
        FileManager.default.createFile(atPath: partial.path, contents: nil)
        let handle = try FileHandle(forWritingTo: partial)
        var size = 0
        do {
            for try await chunk in request.body {
                size += chunk.readableBytes
                guard size <= maxUploadBytes else { throw ServiceError(413, field: "path", "upload larger than \(maxUploadBytes >> 20) MB") }
                try handle.write(contentsOf: Data(buffer: chunk))
            }
            try handle.close()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(at: partial)
            throw error
        }
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
        try FileManager.default.moveItem(at: partial, to: url)
        return jsonResponse(.object(["path": .string(rel), "size": .int(size)]), status: 201)
    }

    func remove(_ request: Request) throws -> Response {
        let (rel, url) = try path(request, allowRoot: false)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw ServiceError(404, field: "path", "path: no file \(rel) in the data folder")
        }
        if isDir.boolValue, !((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).isEmpty {
            throw ServiceError(409, field: "path", "path: the folder \(rel) is not empty")
        }
        try FileManager.default.removeItem(at: url)
        return jsonResponse(.object(["deleted": .string(rel)]))
    }
}
