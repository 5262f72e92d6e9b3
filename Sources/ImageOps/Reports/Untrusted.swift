import QCow2

/// Text from an image (backing names, descriptors, GPT names) or from the file system (file names, command lines)
/// is untrusted: sent raw to a terminal, an escape sequence in it can retitle the window, clear lines or recolour a
/// verdict, and a newline can forge a line of output. Human output shows such characters escaped; JSON carries the
/// exact string.
public enum Untrusted {
    /// Characters that act on a terminal or hide or reorder text rather than show: C0 controls, DEL, C1 controls,
    /// and the bidirectional and zero-width marks that make a line read differently from its bytes; and the scalars
    /// that stand for a byte of a name that is not UTF-8 (see `PathBytes`), which are shown as that byte.
    public static func isDangerous(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x200B...0x200F, 0x202A...0x202E, 0x2028, 0x2029, 0x2066...0x2069, 0xFEFF: return true
        case PathBytes.escapes: return true
        default: return false
        }
    }

    /// `s` with every dangerous character escaped: `\n`, `\r`, `\t`, `\x1b` for the other C0 controls and DEL, and
    /// `\u{…}` beyond; a byte of a name that is not UTF-8 as `\xNN` (`caf\xe9.qcow2`). One line, always: a value
    /// shown this way cannot end the line it is on.
    public static func shown(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: isDangerous) else { return s }
        var out = ""
        for c in s.unicodeScalars {
            guard isDangerous(c) else { out.unicodeScalars.append(c); continue }
            switch c {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if let byte = PathBytes.escapedByte(c) { out += "\\x" + String(byte, radix: 16); continue }
                let hex = String(c.value, radix: 16)
                out += c.value <= 0x7F ? "\\x" + (hex.count == 1 ? "0" : "") + hex : "\\u{" + hex + "}"
            }
        }
        return out
    }
}
