import QCow2
import ImageOps
/// A JSON value with ordered object keys, written without Foundation (which costs start-up time we want to keep).
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.rendered() == b.rendered() }

    /// The value as text; `indent` > 0 pretty-prints it the way qemu-img does.
    public func rendered(indent: Int = 4) -> String {
        String(decoding: renderedBytes(indent: indent), as: UTF8.self)
    }

    /// The value as UTF-8 bytes: what the commands write, without a String copy of a large document.
    public func renderedBytes(indent: Int = 4) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        write(to: &out, indent: indent, level: 0)
        return out
    }

    /// Writes the value and a newline to standard output.
    public func printToStandardOutput() {
        var bytes = renderedBytes()
        bytes.append(UInt8(ascii: "\n"))
        writeAll(1, bytes)
    }

    // Bytes, not String: appending to a String re-checks its storage on every call, and a chain of 500 layers is
    // tens of thousands of appends.
    func write(to out: inout [UInt8], indent: Int, level: Int) {
        func newline(_ level: Int) {
            guard indent > 0 else { return }
            out.append(UInt8(ascii: "\n"))
            out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent * level))
        }
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .uint(let u): out.append(contentsOf: String(u).utf8)
        case .string(let s): JSON.quote(s, into: &out)
        case .array(let items):
            if items.isEmpty { out.append(contentsOf: "[]".utf8); return }
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                item.write(to: &out, indent: indent, level: level + 1)
            }
            newline(level)
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            if fields.isEmpty { out.append(contentsOf: "{}".utf8); return }
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in fields.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                JSON.quote(key, into: &out)
                out.append(UInt8(ascii: ":"))
                if indent > 0 { out.append(UInt8(ascii: " ")) }
                value.write(to: &out, indent: indent, level: level + 1)
            }
            newline(level)
            out.append(UInt8(ascii: "}"))
        }
    }

    static func quote(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Nearly every string (paths, names) needs no escape: copy it whole.
        // 0x7F and 0xC2 (the lead byte of C1 controls) send a string the slow way too: DEL and C1 controls are
        // escaped as \u00XX, still exact once parsed, never raw on a terminal that shows the JSON.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 == 0x7F || $0 == 0xC2 }) {
            out.append(contentsOf: s.utf8)
            out.append(UInt8(ascii: "\""))
            return
        }
        for scalar in s.unicodeScalars {
            guard scalar.value < 0x80 else {
                if scalar.value <= 0x9F {
                    out.append(contentsOf: Array("\\u00".utf8))
                    out.append(contentsOf: Array(String(scalar.value, radix: 16).utf8))
                } else {
                    out.append(contentsOf: String(scalar).utf8)
                }
                continue
            }
            let byte = UInt8(scalar.value)
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7F:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 15)])
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension JSON {
    /// An object from key/value pairs, dropping the nil values (qemu-img leaves absent facts out).
    public static func object(_ pairs: [(String, JSON?)]) -> JSON {
        .object(pairs.compactMap { k, v in v.map { (k, $0) } })
    }
}
