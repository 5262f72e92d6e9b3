import ImageOps
import QCow2

extension StoreCheck {
    /// `"check"` in `scan --check`'s JSON: each image's check as `check --output json` writes it, those that could not
    /// be checked, and the totals.
    var json: JSON {
        .object([
            ("images", .array(entries.compactMap { e in e.result.map { $0.json(shownAs: e.image, held: e.held) } })),
            ("unchecked", .array(failed.map { .object([("image", .string($0.image)), ("message", .string($0.error ?? ""))]) })),
            ("checked", .int(Int64(entries.count - failed.count))),
            ("with-problems", .int(Int64(withProblems.count))),
            ("corruptions", .uint(corruptions)),
            ("leaks", .uint(leaks)),
            ("unsupported", .int(Int64(unsupported))),
        ])
    }

    /// A line per image with problems (and per image that could not be checked), then the totals.
    func human(style: Style) -> String {
        var lines = ["", "Check, \(entries.count - failed.count) image\(entries.count - failed.count == 1 ? "" : "s"):"]
        for e in withProblems {
            guard let r = e.result else { continue }
            var parts: [String] = []
            if r.corruptions > 0 { parts.append(style.bad("\(r.corruptions) errors")) }
            if r.leaks > 0 { parts.append(style.warn("\(r.leaks) leaked clusters")) }
            if r.checkErrors > 0 { parts.append("\(r.checkErrors) internal errors") }
            lines.append("  \(Untrusted.shown(e.image)): " + parts.joined(separator: ", ") + (e.held ? " (held by a process: may be stale)" : ""))
            for f in r.findings.prefix(5) { lines.append("  " + f.human(style: style)) }
            if r.findings.count > 5 { lines.append("      … and \(r.findings.count - 5) more (imgtool check \(Shell.quote(e.image)))") }
        }
        for e in failed { lines.append("  \(Untrusted.shown(e.image)): could not be checked: \(Untrusted.shown(e.error ?? ""))") }
        let clean = entries.count - failed.count - withProblems.count
        lines.append("Checked \(entries.count - failed.count): \(clean) clean, \(withProblems.count) with problems (\(corruptions) errors, \(leaks) leaked clusters)"
                     + (failed.isEmpty ? "" : ", \(failed.count) could not be checked")
                     + (unsupported == 0 ? "" : "; \(unsupported) of a format qemu-img does not check"))
        return lines.joined(separator: "\n")
    }
}
