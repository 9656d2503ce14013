import AtelierTensor
import Foundation

/// PyTorch's `torch.save` files (`.pt`, `.ckpt`, `.pth`: a zip of `data.pkl` plus one file per
/// storage) read through a restricted unpickler with A1111's `modules/safe.py` allow-list:
/// OrderedDict, the tensor/parameter rebuild functions, torch storages (BFloat16 included), numpy
/// scalars and dtypes, `_codecs.encode`, the Lightning checkpoint class and `set`. Allowed
/// non-tensor objects become inert values; any other global is refused by name and never run.
public enum TorchFile {
    /// Reads a file's tensors: every tensor reachable from the pickled object, by its dotted
    /// key path (`state_dict.model.x.weight`, `string_to_param.*`), and the object itself.
    public static func load(path: String) throws -> (root: PickleValue, tensors: [String: Tensor]) {
        let fileName = (path as NSString).lastPathComponent
        let zip: ZipArchive
        do { zip = try ZipArchive(path: path) } catch let e as ModelFileError { throw e } catch {
            throw ModelFileError(file: fileName, "not a PyTorch zip file: \(error)")
        }
        guard let pkl = zip.names.first(where: { $0.hasSuffix("/data.pkl") || $0 == "data.pkl" }) else {
            throw ModelFileError(file: fileName, "no data.pkl inside (a legacy, pre-zip torch file?); re-save it with a current torch or convert it to .safetensors")
        }
        let prefix = String(pkl.dropLast("data.pkl".count))
        var unpickler = Unpickler(data: try zip.read(pkl), fileName: fileName)
        let root = try unpickler.load()
        var tensors: [String: Tensor] = [:]
        func walk(_ v: PickleValue, _ key: String) throws {
            switch v {
            case .tensor(let t): tensors[key] = try t.materialize(zip: zip, prefix: prefix, fileName: fileName)
            case .dict(let d):
                for (k, x) in d.items { try walk(x, key.isEmpty ? k.keyText : key + "." + k.keyText) }
            case .list(let l): for (i, x) in l.items.enumerated() { try walk(x, key + "." + String(i)) }
            case .tuple(let t): for (i, x) in t.enumerated() { try walk(x, key + "." + String(i)) }
            default: break
            }
        }
        try walk(root, "")
        return (root, tensors)
    }
}

public final class PickleList { public internal(set) var items: [PickleValue] = [] }
public final class PickleDict {
    public internal(set) var items: [(PickleValue, PickleValue)] = []
    public subscript(_ key: String) -> PickleValue? { items.first { $0.0.keyText == key }?.1 }
}

/// A value from a restricted unpickling. Objects of allowed classes that are not data stay inert.
public indirect enum PickleValue {
    case none, bool(Bool), int(Int), float(Double), string(String), bytes(Data)
    case tuple([PickleValue]), list(PickleList), dict(PickleDict)
    case global(module: String, name: String)
    case storage(TorchStorage)
    case tensor(TorchTensorRef)
    case object(String)

    var keyText: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        default: return "?"
        }
    }

    public subscript(_ key: String) -> PickleValue? {
        if case .dict(let d) = self { return d[key] }
        return nil
    }
}

public struct TorchStorage {
    let type: String
    let key: String
}

/// `_rebuild_tensor_v2(storage, offset, size, stride)`: a view into a storage file.
public struct TorchTensorRef {
    let storage: TorchStorage
    let offset: Int
    let size: [Int]
    let stride: [Int]

    func materialize(zip: ZipArchive, prefix: String, fileName: String) throws -> Tensor {
        let raw = try zip.read(prefix + "data/" + storage.key)
        let width: Int
        switch storage.type {
        case "FloatStorage", "IntStorage": width = 4
        case "HalfStorage", "BFloat16Storage": width = 2
        case "DoubleStorage", "LongStorage": width = 8
        case "ByteStorage": width = 1
        default: throw ModelFileError(file: fileName, "tensor storage \(storage.type) is not supported")
        }
        let count = size.reduce(1, *)
        var out = [Float](repeating: 0, count: count)
        var maxIndex = offset
        for (n, s) in Swift.zip(size, stride) where n > 0 { maxIndex += (n - 1) * s }
        guard count == 0 || (maxIndex + 1) * width <= raw.count else {
            throw ModelFileError(file: fileName, "tensor of shape \(size) runs past its storage data/\(storage.key) (\(raw.count) bytes)")
        }
        raw.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
            func element(_ i: Int) -> Float {
                let at = i * width
                switch storage.type {
                case "FloatStorage": return p.loadUnaligned(fromByteOffset: at, as: Float.self)
                case "HalfStorage": return Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
                case "BFloat16Storage": return Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: at, as: UInt16.self)) << 16)
                case "DoubleStorage": return Float(p.loadUnaligned(fromByteOffset: at, as: Double.self))
                case "LongStorage": return Float(p.loadUnaligned(fromByteOffset: at, as: Int64.self))
                case "IntStorage": return Float(p.loadUnaligned(fromByteOffset: at, as: Int32.self))
                default: return Float(p[at])
                }
            }
            var index = [Int](repeating: 0, count: size.count)
            for o in 0..<count {
                var at = offset
                for d in 0..<size.count { at += index[d] * stride[d] }
                out[o] = element(at)
                var d = size.count - 1
                while d >= 0 {
                    index[d] += 1
                    if index[d] < size[d] { break }
                    index[d] = 0
                    d -= 1
                }
            }
        }
        return Tensor(shape: size.isEmpty ? [1] : size, data: out, pooled: false)
    }
}

/// The pickle virtual machine (protocols 2–5), with every global checked against the allow-list.
struct Unpickler {
    let bytes: [UInt8]
    let fileName: String
    var at = 0
    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]

    init(data: Data, fileName: String) {
        bytes = [UInt8](data)
        self.fileName = fileName
    }

    /// A1111's `RestrictedUnpickler.find_class` allow-list.
    static func allowed(_ module: String, _ name: String) -> Bool {
        switch module {
        case "collections": return name == "OrderedDict"
        case "torch._utils": return ["_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_device_tensor_from_numpy"].contains(name)
        case "torch": return ["FloatStorage", "HalfStorage", "IntStorage", "LongStorage", "DoubleStorage", "ByteStorage", "float32", "BFloat16Storage"].contains(name)
        case "torch.nn.modules.container": return name == "ParameterDict"
        case "numpy.core.multiarray": return ["scalar", "_reconstruct"].contains(name)
        case "numpy": return ["dtype", "ndarray"].contains(name)
        case "_codecs": return name == "encode"
        case "pytorch_lightning.callbacks": return name == "model_checkpoint"
        case "pytorch_lightning.callbacks.model_checkpoint": return name == "ModelCheckpoint"
        case "__builtin__", "builtins": return name == "set"
        default: return false
        }
    }

    func fail(_ why: String) -> ModelFileError { ModelFileError(file: fileName, "data.pkl: \(why)") }

    mutating func byte() throws -> UInt8 {
        guard at < bytes.count else { throw fail("truncated") }
        defer { at += 1 }
        return bytes[at]
    }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, at + n <= bytes.count else { throw fail("truncated") }
        defer { at += n }
        return bytes[at..<(at + n)]
    }

    mutating func uint(_ n: Int) throws -> Int {
        var v = 0
        for (i, b) in try take(n).enumerated() { v |= Int(b) << (8 * i) }
        return v
    }

    mutating func line() throws -> String {
        guard let end = bytes[at...].firstIndex(of: 0x0a) else { throw fail("truncated line") }
        defer { at = end + 1 }
        return String(decoding: bytes[at..<end], as: UTF8.self)
    }

    mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw fail("stack underflow") }
        return v
    }

    mutating func popMark() throws -> [PickleValue] {
        guard let m = marks.popLast(), m <= stack.count else { throw fail("mark underflow") }
        defer { stack.removeLast(stack.count - m) }
        return Array(stack[m...])
    }

    mutating func global(_ module: String, _ name: String) throws -> PickleValue {
        guard Self.allowed(module, name) else { throw fail("global '\(module)/\(name)' is forbidden") }
        return .global(module: module, name: name)
    }

    func call(_ callee: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case .global(let module, let name) = callee else { throw fail("call of a non-global") }
        switch (module, name) {
        case ("torch._utils", "_rebuild_tensor_v2"):
            guard args.count >= 4, case .storage(let s) = args[0], case .int(let offset) = args[1],
                  case .tuple(let size) = args[2], case .tuple(let stride) = args[3] else { throw fail("bad _rebuild_tensor_v2 arguments") }
            return .tensor(TorchTensorRef(storage: s, offset: offset, size: size.map { if case .int(let i) = $0 { return i } else { return 0 } },
                                          stride: stride.map { if case .int(let i) = $0 { return i } else { return 0 } }))
        case ("torch._utils", "_rebuild_parameter"):
            return args.first ?? .none
        case ("collections", "OrderedDict"):
            return .dict(PickleDict())
        case ("_codecs", "encode"):
            if case .string(let s)? = args.first { return .bytes(Data(s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })) }
            return .bytes(Data())
        case ("__builtin__", "set"), ("builtins", "set"):
            let l = PickleList()
            if case .list(let src)? = args.first { l.items = src.items }
            return .list(l)
        default:
            return .object("\(module).\(name)")
        }
    }

    mutating func load() throws -> PickleValue {
        while true {
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()                                   // PROTO
            case 0x95: _ = try take(8)                                  // FRAME
            case 0x2e: return try pop()                                 // STOP
            case 0x28: marks.append(stack.count)                        // MARK
            case 0x4e: stack.append(.none)                              // NONE
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x4a: let v = try uint(4); stack.append(.int(Int(Int32(truncatingIfNeeded: v))))  // BININT
            case 0x4b: stack.append(.int(try uint(1)))                  // BININT1
            case 0x4d: stack.append(.int(try uint(2)))                  // BININT2
            case 0x8a:                                                  // LONG1
                let n = Int(try byte())
                let b = try take(n)
                var v = 0
                for (i, x) in b.enumerated() where i < 8 { v |= Int(x) << (8 * i) }
                if n > 0 && n < 8 && b.last! & 0x80 != 0 { v -= 1 << (8 * n) }
                stack.append(.int(v))
            case 0x47:                                                  // BINFLOAT (big-endian)
                var v: UInt64 = 0
                for x in try take(8) { v = v << 8 | UInt64(x) }
                stack.append(.float(Double(bitPattern: v)))
            case 0x58: stack.append(.string(String(decoding: try take(try uint(4)), as: UTF8.self)))   // BINUNICODE
            case 0x8c: stack.append(.string(String(decoding: try take(Int(try byte())), as: UTF8.self)))  // SHORT_BINUNICODE
            case 0x8d: stack.append(.string(String(decoding: try take(try uint(8)), as: UTF8.self)))   // BINUNICODE8
            case 0x43: stack.append(.bytes(Data(try take(Int(try byte())))))    // SHORT_BINBYTES
            case 0x42: stack.append(.bytes(Data(try take(try uint(4)))))        // BINBYTES
            case 0x8e: stack.append(.bytes(Data(try take(try uint(8)))))        // BINBYTES8
            case 0x55: stack.append(.string(String(decoding: try take(Int(try byte())), as: UTF8.self)))  // SHORT_BINSTRING
            case 0x54: stack.append(.string(String(decoding: try take(try uint(4)), as: UTF8.self)))      // BINSTRING
            case 0x29: stack.append(.tuple([]))                          // EMPTY_TUPLE
            case 0x85: stack.append(.tuple([try pop()]))                 // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))
            case 0x74: stack.append(.tuple(try popMark()))               // TUPLE
            case 0x5d: stack.append(.list(PickleList()))                 // EMPTY_LIST
            case 0x6c: let l = PickleList(); l.items = try popMark(); stack.append(.list(l))   // LIST
            case 0x7d: stack.append(.dict(PickleDict()))                 // EMPTY_DICT
            case 0x64:                                                   // DICT
                let items = try popMark()
                let d = PickleDict()
                for i in stride(from: 0, to: items.count - 1, by: 2) { d.items.append((items[i], items[i + 1])) }
                stack.append(.dict(d))
            case 0x8f: stack.append(.list(PickleList()))                 // EMPTY_SET
            case 0x90:                                                   // ADDITEMS
                let items = try popMark()
                if case .list(let l)? = stack.last { l.items += items }
            case 0x91: let l = PickleList(); l.items = try popMark(); stack.append(.list(l))   // FROZENSET
            case 0x61:                                                   // APPEND
                let v = try pop()
                guard case .list(let l)? = stack.last else { throw fail("APPEND to a non-list") }
                l.items.append(v)
            case 0x65:                                                   // APPENDS
                let items = try popMark()
                guard case .list(let l)? = stack.last else { throw fail("APPENDS to a non-list") }
                l.items += items
            case 0x73:                                                   // SETITEM
                let v = try pop(), k = try pop()
                guard case .dict(let d)? = stack.last else { throw fail("SETITEM on a non-dict") }
                d.items.append((k, v))
            case 0x75:                                                   // SETITEMS
                let items = try popMark()
                guard case .dict(let d)? = stack.last else { throw fail("SETITEMS on a non-dict") }
                for i in stride(from: 0, to: items.count - 1, by: 2) { d.items.append((items[i], items[i + 1])) }
            case 0x63:                                                   // GLOBAL
                let module = try line(), name = try line()
                stack.append(try global(module, name))
            case 0x93:                                                   // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else { throw fail("bad STACK_GLOBAL") }
                stack.append(try global(module, name))
            case 0x52:                                                   // REDUCE
                guard case .tuple(let args) = try pop() else { throw fail("REDUCE without an argument tuple") }
                let f = try pop()
                stack.append(try call(f, args))
            case 0x81:                                                   // NEWOBJ
                guard case .tuple(let args) = try pop() else { throw fail("NEWOBJ without an argument tuple") }
                stack.append(try call(try pop(), args))
            case 0x62:                                                   // BUILD: state into the object
                let state = try pop()
                if case .dict(let d)? = stack.last, case .dict(let s) = state { d.items += s.items }
            case 0x51:                                                   // BINPERSID
                guard case .tuple(let pid) = try pop(), pid.count >= 3, case .string(let kind) = pid[0], kind == "storage",
                      case .global(_, let type) = pid[1] else { throw fail("unsupported persistent id") }
                let key: String
                switch pid[2] {
                case .string(let s): key = s
                case .int(let i): key = String(i)
                default: throw fail("bad storage key")
                }
                stack.append(.storage(TorchStorage(type: type, key: key)))
            case 0x71: memo[Int(try byte())] = stack.last                // BINPUT
            case 0x72: memo[try uint(4)] = stack.last                    // LONG_BINPUT
            case 0x94: memo[memo.count] = stack.last                     // MEMOIZE
            case 0x68: guard let v = memo[Int(try byte())] else { throw fail("bad memo") }; stack.append(v)   // BINGET
            case 0x6a: guard let v = memo[try uint(4)] else { throw fail("bad memo") }; stack.append(v)       // LONG_BINGET
            case 0x30: _ = try pop()                                     // POP
            case 0x31: _ = try popMark()                                 // POP_MARK
            case 0x32: guard let v = stack.last else { throw fail("DUP on empty stack") }; stack.append(v)
            default:
                throw fail(String(format: "unsupported pickle opcode 0x%02x at byte %d", op, at - 1))
            }
        }
    }
}

/// Reads stored or deflated entries of a zip file (zip64 included), as torch writes them.
final class ZipArchive {
    let data: Data
    let fileName: String
    private(set) var entries: [String: (offset: Int, size: Int, method: Int)] = [:]
    var names: [String] { Array(entries.keys) }

    init(path: String) throws {
        fileName = (path as NSString).lastPathComponent
        data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        func u16(_ o: Int) -> Int { Int(data[data.startIndex + o]) | Int(data[data.startIndex + o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> Int { u32(o) | u32(o + 4) << 32 }
        guard data.count >= 22 else { throw ModelFileError(file: fileName, "too short for a zip file") }
        var eocd = -1
        var i = data.count - 22
        while i >= max(0, data.count - 22 - 65_535) {
            if u32(i) == 0x0605_4b50 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw ModelFileError(file: fileName, "not a zip file (no end of central directory)") }
        var count = u16(eocd + 10), dirOffset = u32(eocd + 16)
        if (count == 0xffff || dirOffset == 0xffff_ffff), eocd >= 20, u32(eocd - 20) == 0x0706_4b50 {
            let z = u64(eocd - 20 + 8)
            guard z + 56 <= data.count, u32(z) == 0x0606_4b50 else { throw ModelFileError(file: fileName, "bad zip64 directory") }
            count = u64(z + 32)
            dirOffset = u64(z + 48)
        }
        var p = dirOffset
        for _ in 0..<count {
            guard p + 46 <= data.count, u32(p) == 0x0201_4b50 else { throw ModelFileError(file: fileName, "bad zip central directory") }
            let method = u16(p + 10)
            var size = u32(p + 20), local = u32(p + 42)
            let nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32)
            let name = String(decoding: data[(data.startIndex + p + 46)..<(data.startIndex + p + 46 + nameLen)], as: UTF8.self)
            var e = p + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = u16(e), len = u16(e + 2)
                if id == 0x0001 {
                    var f = e + 4
                    if u32(p + 24) == 0xffff_ffff { f += 8 }  // uncompressed size comes first
                    if size == 0xffff_ffff { size = u64(f); f += 8 }
                    if local == 0xffff_ffff { local = u64(f) }
                }
                e += 4 + len
            }
            guard local + 30 <= data.count, u32(local) == 0x0403_4b50 else { throw ModelFileError(file: fileName, "bad zip entry \(name)") }
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            guard start + size <= data.count else { throw ModelFileError(file: fileName, "zip entry \(name) runs past the end (truncated file)") }
            entries[name] = (start, size, method)
            p += 46 + nameLen + extraLen + commentLen
        }
    }

    func read(_ name: String) throws -> Data {
        guard let e = entries[name] else { throw ModelFileError(file: fileName, "missing \(name)") }
        guard e.method == 0 else { throw ModelFileError(file: fileName, "\(name) is compressed (method \(e.method)); torch writes stored entries") }
        return data.subdata(in: (data.startIndex + e.offset)..<(data.startIndex + e.offset + e.size))
    }
}
