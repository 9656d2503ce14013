import Foundation

/// NumPy `.npy` files (version 1.0, little-endian, C order): how intermediates are dumped and
/// how the reference goldens are read.
public enum NPY {
    public struct Array: Sendable {
        public var shape: [Int]
        /// values widened to Double (f4, f8, i8, i4, u1 sources)
        public var values: [Double]
        public var floats: [Float] { values.map(Float.init) }
    }

    public struct FormatError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func write(_ values: [Float], shape: [Int], to url: URL) throws {
        precondition(shape.reduce(1, *) == values.count, "npy: shape \(shape) vs \(values.count) values")
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var data = Data([0x93] + Swift.Array("NUMPY".utf8) + [1, 0])
        let len = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(len & 0xFF), UInt8(len >> 8)])
        data.append(contentsOf: Swift.Array(header.utf8))
        values.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: values.count * 4)) }
        try data.write(to: url)
    }

    public static func read(_ url: URL) throws -> Array {
        let data = try Data(contentsOf: url)
        let bytes = [UInt8](data)
        guard bytes.count > 10, bytes[0] == 0x93, String(bytes: bytes[1..<6], encoding: .ascii) == "NUMPY" else {
            throw FormatError(description: "\(url.lastPathComponent): not an .npy file")
        }
        let major = bytes[6]
        let headerLen = major == 1 ? Int(bytes[8]) | Int(bytes[9]) << 8
            : Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        let start = major == 1 ? 10 : 12
        guard let header = String(bytes: bytes[start..<(start + headerLen)], encoding: .ascii) else {
            throw FormatError(description: "\(url.lastPathComponent): bad header")
        }
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)': ") else { return nil }
            let rest = header[r.upperBound...]
            if rest.hasPrefix("'") { return String(rest.dropFirst().prefix { $0 != "'" }) }
            if rest.hasPrefix("(") { return String(rest.dropFirst().prefix { $0 != ")" }) }
            return String(rest.prefix { $0 != "," })
        }
        guard let descr = field("descr"), let shapeText = field("shape") else {
            throw FormatError(description: "\(url.lastPathComponent): header lacks descr/shape")
        }
        guard field("fortran_order") == "False" else { throw FormatError(description: "\(url.lastPathComponent): Fortran order") }
        let shape = shapeText.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let n = shape.reduce(1, *)
        let body = start + headerLen
        var values = [Double](repeating: 0, count: n)
        try bytes.withUnsafeBytes { raw in
            let p = raw.baseAddress! + body
            switch descr {
            case "<f4": for i in 0..<n { values[i] = Double(p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)) }
            case "<f8": for i in 0..<n { values[i] = p.loadUnaligned(fromByteOffset: 8 * i, as: Double.self) }
            case "<i8": for i in 0..<n { values[i] = Double(p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
            case "<i4": for i in 0..<n { values[i] = Double(p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            case "|u1": for i in 0..<n { values[i] = Double(p.load(fromByteOffset: i, as: UInt8.self)) }
            default: throw FormatError(description: "\(url.lastPathComponent): dtype \(descr) not supported")
            }
        }
        return Array(shape: shape, values: values)
    }
}
