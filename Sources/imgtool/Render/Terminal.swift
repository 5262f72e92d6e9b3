import QCow2
import ImageOps
import Glibc
import SystemPackage

/// Colour only on a terminal and never with NO_COLOR set.
public struct Style: Sendable {
    /// Whether escapes are written at all.
    public var enabled: Bool

    /// Colour for standard output, decided once.
    public static func forStandardOutput() -> Style {
        Style(enabled: isatty(1) == 1 && getenv("NO_COLOR") == nil)
    }

    /// No colour.
    public static let plain = Style(enabled: false)

    func wrap(_ s: String, _ code: String) -> String { enabled ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
    /// For what is broken.
    public func bad(_ s: String) -> String { wrap(s, "1;31") }
    /// For what is fine.
    public func good(_ s: String) -> String { wrap(s, "32") }
    /// For warnings.
    public func warn(_ s: String) -> String { wrap(s, "33") }
    /// For commands to run.
    public func command(_ s: String) -> String { wrap(s, "1") }
    /// For secondary facts.
    public func dim(_ s: String) -> String { wrap(s, "2") }
}

/// Writes a line to standard error.
public func printError(_ line: String) {
    writeAll(2, Array((line + "\n").utf8))
}

/// Writes text and a newline to standard output in one write: cheaper than `print`, which locks and casts per call.
public func printOut(_ text: String) {
    var bytes = Array(text.utf8)
    bytes.append(UInt8(ascii: "\n"))
    writeAll(1, bytes)
}

/// Writes every byte through swift-system's `write` (which retries EINTR), short writes continued: unbuffered, and no
/// shared FILE* (which Swift 6 rightly calls unsafe). A closed pipe ends the output quietly.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    // swift-system's `writeAll` is generic over the sequence and not specialized here: its first call instantiates
    // metadata at run time (a sixth of `imgtool info`'s instructions, callgrind). Its `write` of a raw buffer is
    // not generic and retries on EINTR; the loop finishes partial writes as `writeAll` would.
    let descriptor = FileDescriptor(rawValue: fd)
    bytes.withUnsafeBytes { raw in
        var done = 0
        while done < raw.count {
            guard let n = try? descriptor.write(UnsafeRawBufferPointer(rebasing: raw[done...])), n > 0 else { return }
            done += n
        }
    }
}
