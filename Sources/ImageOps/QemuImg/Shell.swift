/// Shell quoting for the command lines we print (dry runs, suggestions), so they can be pasted as they are.
public enum Shell {
    /// `arg` quoted for a POSIX shell when it needs it.
    public static func quote(_ arg: String) -> String {
        if !arg.isEmpty, arg.unicodeScalars.allSatisfy({ safe.contains($0) }) { return arg }
        return "'" + arg.replacingAll("'", with: "'\\''") + "'"
    }

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
