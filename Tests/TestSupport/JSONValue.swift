import Foundation

/// A JSON value with its type kept: `false` is not `0`, `1` is not `"1"`. JSONSerialization's `Any` bridges
/// through NSNumber, where a boolean and a number compare equal, which let a comparison pass that should fail.
public indirect enum JSONValue: Decodable, Equatable, CustomStringConvertible, Sendable {
    case null, bool(Bool), int(Int64), uint(UInt64), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let u = try? c.decode(UInt64.self) { self = .uint(u) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// Parses a whole document.
    public static func parse(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// The member `key` of an object.
    public subscript(_ key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The members of an object (empty for anything else).
    public var members: [String: JSONValue] {
        if case .object(let o) = self { return o }
        return [:]
    }

    /// The elements of an array (empty for anything else).
    public var elements: [JSONValue] {
        if case .array(let a) = self { return a }
        return []
    }

    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .int(let i): return "\(i)"
        case .uint(let u): return "\(u)"
        case .double(let d): return "\(d)"
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\"\($0)\": \(o[$0]?.description ?? "")" }.joined(separator: ", ") + "}"
        }
    }
}
