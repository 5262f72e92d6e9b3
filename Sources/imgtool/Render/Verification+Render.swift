import ImageOps
import QCow2

extension Verification {
    /// JSON for scripts.
    var json: JSON {
        .object([
            ("image", .string(image)),
            ("format", format.map(JSON.string)),
            ("safe", .bool(safe)),
            ("findings", .array(findings.map { .object([("check", .string($0.check)), ("unsafe", .bool($0.unsafe)), ("message", .string($0.message))]) })),
        ])
    }

    /// One line per finding, then the verdict.
    func human(style: Style) -> String {
        var lines = findings.map { ($0.unsafe ? style.bad("✗ ") : style.good("✓ ")) + $0.check + ": " + $0.message }
        lines.append(safe ? style.good("\(image): safe") : style.bad("\(image): UNSAFE") + " — do not hand it to qemu-img as it is")
        return lines.joined(separator: "\n")
    }
}
