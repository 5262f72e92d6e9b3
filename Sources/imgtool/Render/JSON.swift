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
        // A command prints one document and ends: keeping it referenced saves freeing the tree node by node
        // (a sixth of `chain --output json`'s instructions at depth 500, callgrind). The next print replaces it.
        JSON.lastPrinted = self
    }

    /// The document printed last; see `printToStandardOutput()`. Only a command's single thread prints.
    nonisolated(unsafe) static var lastPrinted: JSON?

    // Bytes, not String: appending to a String re-checks its storage on every call, and a chain of 500 layers is
    // tens of thousands of appends. Numbers and indentation go in without a String or a generic sequence between.
    func write(to out: inout [UInt8], indent: Int, level: Int) {
        switch self {
        case .null: out.append(contentsOf: JSON.nullBytes)
        case .bool(let b): out.append(contentsOf: b ? JSON.trueBytes : JSON.falseBytes)
        case .int(let i):
            if i < 0 { out.append(UInt8(ascii: "-")) }
            JSON.digits(i.magnitude, into: &out)
        case .uint(let u): JSON.digits(u, into: &out)
        case .string(let s): JSON.quote(s, into: &out)
        case .array(let items):
            if items.isEmpty { out.append(contentsOf: JSON.emptyArray); return }
            out.append(UInt8(ascii: "["))
            var first = true
            for item in items {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSON.newline(&out, indent: indent, level: level + 1)
                item.write(to: &out, indent: indent, level: level + 1)
            }
            JSON.newline(&out, indent: indent, level: level)
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            if fields.isEmpty { out.append(contentsOf: JSON.emptyObject); return }
            out.append(UInt8(ascii: "{"))
            var first = true
            for (key, value) in fields {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSON.newline(&out, indent: indent, level: level + 1)
                if indent > 0 {
                    JSON.key(key, into: &out)
                } else {
                    JSON.quote(key, into: &out)
                    out.append(UInt8(ascii: ":"))
                }
                value.write(to: &out, indent: indent, level: level + 1)
            }
            JSON.newline(&out, indent: indent, level: level)
            out.append(UInt8(ascii: "}"))
        }
    }

    static let nullBytes = Array("null".utf8), trueBytes = Array("true".utf8), falseBytes = Array("false".utf8)
    static let emptyArray = Array("[]".utf8), emptyObject = Array("{}".utf8)
    /// A newline and 64 spaces: one copy covers the indentation of any level a report reaches.
    static let newlineAndSpaces: [UInt8] = [UInt8(ascii: "\n")] + Array(repeating: UInt8(ascii: " "), count: 64)

    /// A newline and the indentation of `level`, when pretty-printing.
    static func newline(_ out: inout [UInt8], indent: Int, level: Int) {
        guard indent > 0 else { return }
        var spaces = indent * level
        // Through a buffer pointer: appending an ArraySlice went through its generic copy (callgrind).
        newlineAndSpaces.withUnsafeBufferPointer { out.append(contentsOf: UnsafeBufferPointer(rebasing: $0[0...min(spaces, 64)])) }
        spaces -= min(spaces, 64)
        while spaces > 0 {
            out.append(UInt8(ascii: " "))
            spaces -= 1
        }
    }

    /// The decimal digits of `value`, written in place.
    static func digits(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        var buffer: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: UInt64.max has 20 digits
        withUnsafeMutableBytes(of: &buffer) { raw in
            var i = raw.count
            repeat {
                i -= 1
                raw[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            } while v > 0
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[i...]))
        }
    }

    /// `"name": ` for a member name of the report's own (a literal: plain ASCII that needs no escape, so its bytes
    /// go in whole, unscanned); any other name is quoted as a value is.
    static func key(_ name: String, into out: inout [UInt8]) {
        let done = name.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            guard bytes.count <= 32 else { return false }
            // Letters, digits, '-' and '_' only: nothing here is escaped.
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "-"), UInt8(ascii: "_"): continue
                default: return false
                }
            }
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: bytes)
            out.append(contentsOf: keyEnd)
            return true
        }
        if done == true { return }
        quote(name, into: &out)
        out.append(contentsOf: [UInt8(ascii: ":"), UInt8(ascii: " ")])
    }

    /// What ends a member's name: the closing quote, `:` and a space.
    static let keyEnd: [UInt8] = [UInt8(ascii: "\""), UInt8(ascii: ":"), UInt8(ascii: " ")]

    static func quote(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Nearly every string (paths, names) needs no escape: copy it whole, its bytes scanned in place (String's
        // utf8 view, walked byte by byte, was 14 % of `chain --output json`'s instructions at depth 500).
        // 0x7F and 0xC2 (the lead byte of C1 controls) send a string the slow way too: DEL and C1 controls are
        // escaped as \u00XX, still exact once parsed, never raw on a terminal that shows the JSON.
        // 0xF4 (the lead byte of U+100000 and up) too: a byte of a file name that is not UTF-8 (see `PathBytes`) is
        // written as Python's surrogateescape writes it, `\udcNN` for byte 0xNN, so `os.fsencode` gives the name back.
        // Read in place (`utf8.withContiguousStorageIfAvailable`, no copy of the string); the test below costs two
        // comparisons for the letters, digits and punctuation of nearly every name (quoting was 4.5 M of
        // `chain --output json`'s 18 M instructions at depth 500, callgrind).
        let copied = s.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            for byte in bytes where byte >= 0x5D ? (byte >= 0x7F && (byte == 0x7F || byte == 0xC2 || byte == 0xF4))
                                                 : (byte < 0x23 && (byte < 0x20 || byte == UInt8(ascii: "\""))) || byte == UInt8(ascii: "\\") {
                return false
            }
            out.append(contentsOf: bytes)
            return true
        }
        if copied == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        for scalar in s.unicodeScalars {
            guard scalar.value < 0x80 else {
                if let byte = PathBytes.escapedByte(scalar) {
                    out.append(contentsOf: Array("\\udc".utf8))
                    out.append(contentsOf: Array(String(byte, radix: 16).utf8))
                } else if scalar.value <= 0x9F {
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

/// A document written piece by piece in `JSON.write`'s layout: the bytes gathered go out (to standard output, in
/// the commands) whenever 64 KiB are there, so a long report holds one small buffer, not the whole text.
struct JSONStream {
    /// What `printToStandardOutput` indents by.
    static let indent = 4
    /// How much is gathered before it is written.
    static let flushSize = 64 << 10
    /// The bytes not yet written.
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(Self.flushSize + 8192) }

    /// `,` (unless `first`), a new line at level 1 and `"name": `, as an object's member is written.
    mutating func key(_ name: String, first: Bool = false) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        JSON.newline(&bytes, indent: Self.indent, level: 1)
        JSON.key(name, into: &bytes)
    }

    /// Hands what has gathered to `emit` once it reaches `flushSize`.
    mutating func flushIfFull(_ emit: ([UInt8]) -> Void) {
        if bytes.count >= Self.flushSize { flush(emit) }
    }

    /// Hands what has gathered to `emit`.
    mutating func flush(_ emit: ([UInt8]) -> Void) {
        emit(bytes)
        bytes.removeAll(keepingCapacity: true)
    }
}
