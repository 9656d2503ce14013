import Foundation

/// The queue service's protobuf messages (`streaming.DataFrameProto`, `DataFrameListProto`,
/// `AttributesProto`, eas-queue-protocol.md §8.1), encoded and decoded by hand: four fields
/// and a map do not justify a code generator.
public enum QueueProto {
    /// `DataFrameProto`: index = 1 (varint), tags = 2 (map<string,string>), data = 3, message = 4.
    public static func encode(_ frame: DataFrame) -> Data {
        var out = Data()
        if frame.index != 0 { key(1, wire: 0, &out); varint(frame.index, &out) }
        for (k, v) in frame.tags.sorted(by: { $0.key < $1.key }) { mapEntry(field: 2, k, v, &out) }
        if !frame.data.isEmpty { key(3, wire: 2, &out); bytes(frame.data, &out) }
        if !frame.message.isEmpty { key(4, wire: 2, &out); bytes(Data(frame.message.utf8), &out) }
        return out
    }

    /// `DataFrameListProto`: repeated DataFrameProto in field 1 (zero bytes for an empty list).
    public static func encodeList(_ frames: [DataFrame]) -> Data {
        var out = Data()
        for f in frames { key(1, wire: 2, &out); bytes(encode(f), &out) }
        return out
    }

    /// `AttributesProto`: map<string,string> in field 1.
    public static func encodeAttributes(_ attributes: [String: String]) -> Data {
        var out = Data()
        for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { mapEntry(field: 1, k, v, &out) }
        return out
    }

    /// Decodes a `DataFrameProto` (used by tests and the bench's client side).
    public static func decode(_ data: Data) throws -> DataFrame {
        var frame = DataFrame(index: 0, tags: [:], data: Data(), message: "")
        var r = Reader(bytes: [UInt8](data))
        while !r.atEnd {
            let (field, wire) = try r.key()
            switch (field, wire) {
            case (1, 0): frame.index = try r.varint()
            case (2, 2):
                var e = Reader(bytes: try r.lengthDelimited())
                var k = "", v = ""
                while !e.atEnd {
                    let (f, w) = try e.key()
                    guard w == 2 else { try e.skip(wire: w); continue }
                    let s = String(decoding: try e.lengthDelimited(), as: UTF8.self)
                    if f == 1 { k = s } else if f == 2 { v = s }
                }
                frame.tags[k] = v
            case (3, 2): frame.data = Data(try r.lengthDelimited())
            case (4, 2): frame.message = String(decoding: try r.lengthDelimited(), as: UTF8.self)
            default: try r.skip(wire: wire)
            }
        }
        return frame
    }

    /// Decodes a `DataFrameListProto`.
    public static func decodeList(_ data: Data) throws -> [DataFrame] {
        var r = Reader(bytes: [UInt8](data))
        var frames: [DataFrame] = []
        while !r.atEnd {
            let (field, wire) = try r.key()
            if field == 1 && wire == 2 { frames.append(try decode(Data(try r.lengthDelimited()))) } else { try r.skip(wire: wire) }
        }
        return frames
    }

    public struct DecodeError: Error, CustomStringConvertible {
        public let description: String
    }

    private static func key(_ field: UInt64, wire: UInt64, _ out: inout Data) { varint(field << 3 | wire, &out) }

    private static func varint(_ value: UInt64, _ out: inout Data) {
        var v = value
        while v >= 0x80 { out.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    private static func bytes(_ b: Data, _ out: inout Data) {
        varint(UInt64(b.count), &out)
        out.append(b)
    }

    private static func mapEntry(field: UInt64, _ k: String, _ v: String, _ out: inout Data) {
        var entry = Data()
        if !k.isEmpty { key(1, wire: 2, &entry); bytes(Data(k.utf8), &entry) }
        if !v.isEmpty { key(2, wire: 2, &entry); bytes(Data(v.utf8), &entry) }
        key(field, wire: 2, &out)
        bytes(entry, &out)
    }

    private struct Reader {
        let bytes: [UInt8]
        var at = 0
        var atEnd: Bool { at >= bytes.count }

        mutating func varint() throws -> UInt64 {
            var result: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard at < bytes.count, shift < 64 else { throw DecodeError(description: "truncated varint") }
                let b = bytes[at]; at += 1
                result |= UInt64(b & 0x7f) << shift
                if b < 0x80 { return result }
                shift += 7
            }
        }

        mutating func key() throws -> (UInt64, UInt64) {
            let k = try varint()
            return (k >> 3, k & 7)
        }

        mutating func lengthDelimited() throws -> [UInt8] {
            let n = try varint()
            guard n <= UInt64(bytes.count - at) else { throw DecodeError(description: "length \(n) past the end") }
            defer { at += Int(n) }
            return Array(bytes[at..<at + Int(n)])
        }

        mutating func skip(wire: UInt64) throws {
            switch wire {
            case 0: _ = try varint()
            case 1: guard at + 8 <= bytes.count else { throw DecodeError(description: "truncated fixed64") }; at += 8
            case 2: _ = try lengthDelimited()
            case 5: guard at + 4 <= bytes.count else { throw DecodeError(description: "truncated fixed32") }; at += 4
            default: throw DecodeError(description: "unsupported wire type \(wire)")
            }
        }
    }
}
