import QCow2

/// Shell quoting for the command lines we print (dry runs, suggestions), so they can be pasted as they are.
public enum Shell {
    /// `arg` quoted for a POSIX shell when it needs it. An argument holding a control character (or a bidi/zero-width mark) gets bash's `$'…'` quoting with `\xNN`
    /// escapes: a printed command line then sends nothing raw to the terminal, and still pastes exactly.
    public static func quote(_ arg: String) -> String {
        if !arg.isEmpty, arg.unicodeScalars.allSatisfy({ safe.contains($0) }) { return arg }
        guard arg.unicodeScalars.contains(where: Untrusted.isDangerous) else {
            return "'" + arg.replacingAll("'", with: "'\\''") + "'"
        }
        var out = "$'"
        for c in arg.unicodeScalars {
            if c == "'" || c == "\\" {
                out += "\\" + String(c)
            } else if Untrusted.isDangerous(c) {
                for b in String(c).pathBytes { out += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16) }
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out + "'"
    }

    /// A file name as an operand of a printed command: quoted, and a relative name starting with "-" written as
    /// `./-name`, so that neither imgtool nor mount, losetup or qemu-nbd reads it as an option wherever it stands.
    public static func operand(_ path: String) -> String { quote(path.hasPrefix("-") ? "./" + path : path) }

    /// A whole command line.
    public static func join(_ argv: [String]) -> String { argv.map(quote).joined(separator: " ") }

    static let safe = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./=:,+@%".unicodeScalars)
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
