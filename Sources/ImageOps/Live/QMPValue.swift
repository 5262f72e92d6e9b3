import FoundationEssentials
import QCow2

/// One JSON value as QMP sends and takes it: the typed stand-in for `JSONSerialization`'s `Any`, which lives only in
/// full Foundation (whose CoreFoundation/ICU set-up every start of the static binary would pay, even `info`).
public enum QMPValue: Codable, Sendable, Equatable {
    /// JSON `null`.
    case null
    /// JSON `true` / `false`.
    case bool(Bool)
    /// A JSON number that fits `Int64`.
    case int(Int64)
    /// A JSON number above `Int64.max` (QEMU's sizes and offsets are `uint64`).
    case uint(UInt64)
    /// Any other JSON number.
    case double(Double)
    /// A JSON string.
    case string(String)
    /// A JSON array.
    case array([QMPValue])
    /// A JSON object.
    case object([String: QMPValue])

    /// Decodes any JSON value. Bool is tried before the numbers so `true` never reads as `1`, and the integer types
    /// before `Double` so large offsets keep every digit.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let u = try? c.decode(UInt64.self) { self = .uint(u) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([QMPValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: QMPValue].self)) }
    }

    /// Encodes the value as the JSON it stands for.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .uint(let u): try c.encode(u)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// The member `key` of an object; nil for a missing key or a value that is no object.
    public subscript(key: String) -> QMPValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The first string in the value that holds a byte of a file name that is not UTF-8 (see `PathBytes`), or
    /// U+FFFD: QEMU reports such a name with U+FFFD in place of those bytes, and that name, sent back (a live
    /// commit's `backing-file`), would be written into an image as another file's name.
    var nameNotUTF8: String? {
        switch self {
        case .string(let s): return s.unicodeScalars.contains { PathBytes.escapedByte($0) != nil || $0 == "\u{FFFD}" } ? s : nil
        case .array(let a): return a.lazy.compactMap(\.nameNotUTF8).first
        case .object(let o): return o.values.lazy.compactMap(\.nameNotUTF8).first
        default: return nil
        }
    }

    /// The string, if this is one.
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    /// The boolean, if this is one.
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    /// The object's members, if this is an object.
    public var object: [String: QMPValue]? { if case .object(let o) = self { return o }; return nil }
    /// The elements, if this is an array.
    public var array: [QMPValue]? { if case .array(let a) = self { return a }; return nil }

    /// The number as `Int64` when it is an integer in range (no rounding of a fraction).
    public var int64: Int64? {
        switch self {
        case .int(let i): return i
        case .uint(let u): return Int64(exactly: u)
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }

    /// The number as `UInt64` when it is a non-negative integer in range (sizes, offsets).
    public var uint64: UInt64? {
        switch self {
        case .int(let i): return UInt64(exactly: i)
        case .uint(let u): return u
        case .double(let d): return UInt64(exactly: d)
        default: return nil
        }
    }

    /// The value as one line of JSON, for the monitor (QMP reads one message per line; `JSONEncoder` escapes
    /// newlines inside strings, so none can split it).
    func jsonBytes() throws -> [UInt8] { Array(try JSONEncoder().encode(self)) }

    /// Decodes one line of JSON.
    static func parse(_ line: [UInt8]) throws -> QMPValue { try JSONDecoder().decode(QMPValue.self, from: Data(line)) }
}

/// Literals, so command arguments read as the JSON they send: `["node-name": .string(name), "read-only": true]`.
extension QMPValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByStringLiteral, ExpressibleByStringInterpolation, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    /// `nil` is JSON `null`.
    public init(nilLiteral: ()) { self = .null }
    /// A boolean literal.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// An integer literal.
    public init(integerLiteral value: Int64) { self = .int(value) }
    /// A string literal (interpolated ones too).
    public init(stringLiteral value: String) { self = .string(value) }
    /// An array literal.
    public init(arrayLiteral elements: QMPValue...) { self = .array(elements) }
    /// An object literal; a repeated key keeps its last value, as in JSON parsers.
    public init(dictionaryLiteral elements: (String, QMPValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
