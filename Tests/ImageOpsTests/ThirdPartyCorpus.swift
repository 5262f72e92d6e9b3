import Foundation
import Testing
import TestSupport

/// The third-party corpus under Tests/Fixtures/third-party: images nobody here made, listed in MANIFEST.tsv with
/// where each came from and the sha256 of the image itself. Nothing is downloaded at test time.
enum ThirdPartyCorpus {
    /// One image of the corpus.
    struct Image: CustomStringConvertible, Sendable {
        /// The committed file (compressed as shipped, or by xz).
        var file: String
        /// The image's own name once decompressed.
        var name: String
        /// sha256 of the decompressed image.
        var sha256: String
        var description: String { name }
    }

    static var folder: String {
        fixturesDirectory().replacingOccurrences(of: "/Fixtures/images", with: "/Fixtures/third-party")
    }

    /// Every row of MANIFEST.tsv. A missing or empty manifest is a failure, never an empty (passing) test.
    static let images: [Image] = {
        guard let text = try? String(contentsOfFile: folder + "/MANIFEST.tsv", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            return f.count >= 3 ? Image(file: f[0], name: f[1], sha256: f[2]) : nil
        }
    }()

    /// Decompresses `image` into `dir` under its own name and checks it is the very image the manifest names.
    static func materialise(_ image: Image, in dir: TempDir) throws -> String {
        let src = folder + "/" + image.file
        let dst = dir.file(image.name)
        let tool: String? = image.file.hasSuffix(".bz2") ? "bzip2" : image.file.hasSuffix(".xz") ? "xz" : image.file.hasSuffix(".gz") ? "gzip" : nil
        if let tool {
            let exe = try #require(which(tool), "\(tool) is needed to unpack the corpus")
            #expect(shell("\(shellQuote(exe)) -dc \(shellQuote(src)) > \(shellQuote(dst))") == 0, "\(tool) -dc \(image.file)")
        } else {
            try FileManager.default.copyItem(atPath: src, toPath: dst)
        }
        #expect(try fileDigest(dst) == image.sha256, "\(image.name): not the image MANIFEST.tsv names")
        return dst
    }
}

/// JSON as typed values: `1` and `true` differ, as do `"1"` and `1` (Foundation hands all three back as NSNumber or
/// String, so the kind of number is read from its Objective-C type code).
indirect enum Typed: Equatable, CustomStringConvertible {
    case null, bool(Bool), int(Int64), double(Double), string(String), array([Typed]), object([String: Typed])

    init(_ any: Any?) {
        switch any {
        case nil, is NSNull: self = .null
        case let s as String: self = .string(s)
        case let n as NSNumber:
            let code = String(cString: n.objCType)
            if code == "c" || code == "B" { self = .bool(n.boolValue) } else if code == "d" || code == "f" { self = .double(n.doubleValue) } else { self = .int(n.int64Value) }
        case let a as [Any]: self = .array(a.map { Typed($0) })
        case let o as [String: Any]: self = .object(o.mapValues { Typed($0) })
        default: self = .string("\(any ?? "")")
        }
    }

    var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .int(let i): return "\(i)"
        case .double(let d): return "\(d)"
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\($0): \(o[$0]?.description ?? "")" }.joined(separator: ", ") + "}"
        }
    }

    /// Every difference between two values, over the keys both print, as `path: ours vs theirs`.
    static func differences(_ a: Typed, _ b: Typed, at path: String = "") -> [String] {
        switch (a, b) {
        case (.object(let x), .object(let y)):
            return x.keys.sorted().filter { y[$0] != nil }.flatMap { k in differences(x[k] ?? .null, y[k] ?? .null, at: path + "." + k) }
        case (.array(let x), .array(let y)):
            var out = x.count == y.count ? [] : ["\(path): \(x.count) items vs \(y.count)"]
            for (i, (p, q)) in zip(x, y).enumerated() { out += differences(p, q, at: path + "[\(i)]") }
            return out
        default:
            return a == b ? [] : ["\(path): \(a) vs \(b)"]
        }
    }
}

/// Parses a program's JSON output.
func typedJSON(_ text: String) throws -> Typed {
    Typed(try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]))
}
