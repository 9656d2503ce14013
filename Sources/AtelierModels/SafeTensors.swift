import AtelierTensor
import Foundation

/// A problem with a model file, always naming the file.
public struct ModelFileError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let problem: String
    public init(file: String, _ problem: String) {
        self.file = file
        self.problem = problem
    }
    public var description: String { "\(file): \(problem)" }
}

/// Element types a checkpoint tensor may be stored in.
public enum StoredType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    var size: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }
}

/// One tensor entry of a file: its type, shape and where its bytes are.
public struct TensorEntry: Sendable {
    public let name: String
    public let type: StoredType
    public let shape: [Int]
    let begin: Int
    let end: Int
}

/// A `.safetensors` file mapped into memory.
///
/// Layout: 8-byte little-endian header length `N`, `N` bytes of JSON
/// `{name: {dtype, shape, data_offsets: [begin, end]}}` (offsets relative to byte `8+N`),
/// then the data. The header is validated against the file size before any tensor is read,
/// so a truncated file or a lying header is an error naming the file, never a crash.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let entries: [String: TensorEntry]
    public let metadata: [String: String]
    private let base: UnsafeRawPointer
    private let mappedSize: Int
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        let name = (path as NSString).lastPathComponent
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ModelFileError(file: name, "cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ModelFileError(file: name, "cannot stat") }
        let size = Int(st.st_size)
        guard size >= 8 else { throw ModelFileError(file: name, "file is \(size) bytes, too short for a safetensors header") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw ModelFileError(file: name, "cannot map the file into memory")
        }
        base = UnsafeRawPointer(map)
        mappedSize = size
        var ok = false
        defer { if !ok { munmap(map, size) } }

        let headerLength = Int(UInt64(littleEndian: base.loadUnaligned(as: UInt64.self)))
        guard headerLength > 1, headerLength <= size - 8, headerLength < 100 << 20 else {
            throw ModelFileError(file: name, "header length \(headerLength) does not fit in a \(size)-byte file (truncated, or not a safetensors file)")
        }
        dataStart = 8 + headerLength
        let headerData = Data(bytes: base + 8, count: headerLength)
        guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw ModelFileError(file: name, "header is not a JSON object (not a safetensors file?)")
        }
        var entries: [String: TensorEntry] = [:]
        var metadata: [String: String] = [:]
        let dataSize = size - dataStart
        for (key, value) in json {
            if key == "__metadata__" {
                for (k, v) in value as? [String: Any] ?? [:] { metadata[k] = "\(v)" }
                continue
            }
            guard let info = value as? [String: Any],
                  let dt = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int],
                  let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw ModelFileError(file: name, "tensor \(key): malformed header entry") }
            guard let type = StoredType(rawValue: dt) else {
                throw ModelFileError(file: name, "tensor \(key): unsupported dtype \(dt)")
            }
            let (b, e) = (offsets[0], offsets[1])
            guard b >= 0, e >= b, e <= dataSize else {
                throw ModelFileError(file: name, "tensor \(key): data offsets [\(b), \(e)] exceed the \(dataSize) data bytes (file truncated or header corrupt)")
            }
            let expected = shape.reduce(1, *) * type.size
            guard shape.allSatisfy({ $0 >= 0 }), e - b == expected else {
                throw ModelFileError(file: name, "tensor \(key): \(e - b) bytes stored but shape \(shape) of \(dt) needs \(expected)")
            }
            entries[key] = TensorEntry(name: key, type: type, shape: shape, begin: b, end: e)
        }
        self.entries = entries
        self.metadata = metadata
        ok = true
        madvise(map, size, MADV_SEQUENTIAL)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedSize) }

    public var names: [String] { Array(entries.keys) }

    /// The tensor converted to float32 (f16/bf16/f64 widened or narrowed once, at load).
    public func tensor(_ key: String) throws -> Tensor {
        guard let e = entries[key] else {
            throw ModelFileError(file: (path as NSString).lastPathComponent, "missing tensor \(key)")
        }
        let t = Self.convert(base + dataStart + e.begin, type: e.type, shape: e.shape)
        dropPages(e)
        return t
    }

    /// A float16 entry kept as float16 (see `Parameter`); nil for other types.
    public func halfParameter(_ key: String) throws -> Parameter? {
        guard let e = entries[key] else {
            throw ModelFileError(file: (path as NSString).lastPathComponent, "missing tensor \(key)")
        }
        guard e.type == .f16 else { return nil }
        let p = Parameter(halfBits: base + dataStart + e.begin, shape: e.shape)
        dropPages(e)
        return p
    }

    /// Weights are read once: drops the entry's file pages so the mapping does not add to peak RSS.
    private func dropPages(_ e: TensorEntry) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (dataStart + e.begin) / page * page
        let end = dataStart + e.end
        if end > start { madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED) }
    }

    static func convert(_ src: UnsafeRawPointer, type: StoredType, shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        let t = Tensor(uninitialized: shape, pooled: false)
        let d = t.unsafePointer
        switch type {
        case .f32:
            UnsafeMutableRawPointer(d).copyMemory(from: src, byteCount: n * 4)
        case .f16:
            Compute.split(n, minimum: 1 << 16) { r in
                for i in r { d[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            }
        case .bf16:
            for i in 0..<n {
                let bits = UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16
                d[i] = Float(bitPattern: bits)
            }
        case .f64:
            for i in 0..<n { d[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .i64:
            for i in 0..<n { d[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .i32:
            for i in 0..<n { d[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .i16:
            for i in 0..<n { d[i] = Float(src.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .i8:
            for i in 0..<n { d[i] = Float(src.load(fromByteOffset: i, as: Int8.self)) }
        case .u8, .bool:
            for i in 0..<n { d[i] = Float(src.load(fromByteOffset: i, as: UInt8.self)) }
        }
        return t
    }
}

extension SafeTensorsFile {
    /// The `__metadata__` of a safetensors file, read from its header only (A1111's
    /// `read_metadata_from_safetensors`: networks' training tags such as `ss_output_name`). Values are
    /// raw strings; a file that is not safetensors throws, naming it.
    public static func metadata(path: String) throws -> [String: String] {
        let name = (path as NSString).lastPathComponent
        guard let h = FileHandle(forReadingAtPath: path) else { throw ModelFileError(file: name, "cannot be opened") }
        defer { try? h.close() }
        let head = try h.read(upToCount: 8) ?? Data()
        guard head.count == 8 else { throw ModelFileError(file: name, "truncated (no header length)") }
        let n = head.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard n > 2, n < 100 << 20, let header = try h.read(upToCount: n), header.count == n,
              let json = try? JSONSerialization.jsonObject(with: header) as? [String: Any] else {
            throw ModelFileError(file: name, "not a safetensors file (no JSON header)")
        }
        var out: [String: String] = [:]
        for (k, v) in json["__metadata__"] as? [String: Any] ?? [:] { out[k] = v as? String ?? "\(v)" }
        return out
    }
}
