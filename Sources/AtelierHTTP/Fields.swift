import AtelierService
import Foundation

/// A FastAPI/pydantic-v1 validation problem: `{"loc": ["body", field], "msg", "type"}`.
struct FieldProblem: Sendable {
    let loc: [JSONValue]
    let msg: String
    let type: String
    var ctx: [String: JSONValue]? = nil

    var json: JSONValue {
        var o: [String: JSONValue] = ["loc": .array(loc), "msg": .string(msg), "type": .string(type)]
        if let ctx { o["ctx"] = .object(ctx) }
        return .object(o)
    }
}

/// All the problems of one request body, answered as HTTP 422 in FastAPI's shape.
struct ValidationFailure: Error {
    let problems: [FieldProblem]
}

/// Reads request fields the way pydantic v1 coerces them (`"20"` for an int, `7` for a float,
/// `1`/`"true"` for a bool; `null` = the default), collecting every problem.
struct Fields {
    let body: [String: JSONValue]
    private(set) var problems: [FieldProblem] = []

    init(_ body: [String: JSONValue]) { self.body = body }

    private mutating func fail(_ key: String, _ msg: String, _ type: String, _ ctx: [String: JSONValue]? = nil) {
        problems.append(FieldProblem(loc: [.string("body"), .string(key)], msg: msg, type: type, ctx: ctx))
    }

    func isSet(_ key: String) -> Bool {
        if let v = body[key], v != .null { return true }
        return false
    }

    mutating func int(_ key: String, _ def: Int) -> Int {
        switch body[key] ?? .null {
        case .null: return def
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        case .double(let d) where d.isFinite && abs(d) < 9e18: return Int(d)
        case .string(let s):
            if let i = Int(s.trimmingCharacters(in: .whitespaces)) { return i }
        default: break
        }
        fail(key, "value is not a valid integer", "type_error.integer")
        return def
    }

    mutating func double(_ key: String, _ def: Double) -> Double {
        switch body[key] ?? .null {
        case .null: return def
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        case .string(let s):
            if let d = Double(s.trimmingCharacters(in: .whitespaces)) { return d }
        default: break
        }
        fail(key, "value is not a valid float", "type_error.float")
        return def
    }

    mutating func optionalDouble(_ key: String) -> Double? {
        isSet(key) ? double(key, 0) : nil
    }

    mutating func bool(_ key: String, _ def: Bool) -> Bool {
        switch body[key] ?? .null {
        case .null: return def
        case .bool(let b): return b
        case .int(let i) where i == 0 || i == 1: return i == 1
        case .string(let s):
            switch s.lowercased() {
            case "1", "true", "t", "yes", "y", "on": return true
            case "0", "false", "f", "no", "n", "off": return false
            default: break
            }
        default: break
        }
        fail(key, "value could not be parsed to a boolean", "type_error.bool")
        return def
    }

    mutating func string(_ key: String, _ def: String) -> String {
        optionalString(key) ?? def
    }

    mutating func optionalString(_ key: String) -> String? {
        switch body[key] ?? .null {
        case .null: return nil
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        default:
            fail(key, "str type expected", "type_error.str")
            return nil
        }
    }

    mutating func object(_ key: String) -> [String: JSONValue] {
        switch body[key] ?? .null {
        case .null: return [:]
        case .object(let o): return o
        default:
            fail(key, "value is not a valid dict", "type_error.dict")
            return [:]
        }
    }

    mutating func list(_ key: String) -> [JSONValue] {
        switch body[key] ?? .null {
        case .null: return []
        case .array(let a): return a
        default:
            fail(key, "value is not a valid list", "type_error.list")
            return []
        }
    }

    /// Range check in FastAPI's words.
    mutating func check<T: Comparable & Sendable>(_ key: String, _ v: T, min lo: T? = nil, max hi: T? = nil) {
        if let lo, v < lo {
            fail(key, "ensure this value is greater than or equal to \(lo)", "value_error.number.not_ge", ["limit_value": Self.json(lo)])
        } else if let hi, v > hi {
            fail(key, "ensure this value is less than or equal to \(hi)", "value_error.number.not_le", ["limit_value": Self.json(hi)])
        }
    }

    mutating func problem(_ key: String, _ msg: String, type: String = "value_error") {
        fail(key, msg, type)
    }

    static func json<T>(_ v: T) -> JSONValue {
        if let i = v as? Int { return .int(i) }
        if let d = v as? Double { return .double(d) }
        if let i = v as? Int64 { return .int(Int(i)) }
        return .string("\(v)")
    }
}
