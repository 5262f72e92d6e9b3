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
        // Findings quote descriptor text and names from the image: escaped, so none can forge a verdict line.
        var lines = findings.map { ($0.unsafe ? style.bad("✗ ") : style.good("✓ ")) + Untrusted.shown($0.check) + ": " + Untrusted.shown($0.message) }
        let name = Untrusted.shown(image)
        lines.append(safe ? style.good("\(name): safe") : style.bad("\(name): UNSAFE") + " — do not hand it to qemu-img as it is")
        return lines.joined(separator: "\n")
    }
}
