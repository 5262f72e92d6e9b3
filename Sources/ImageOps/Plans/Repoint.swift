import QCow2

/// The command that points a broken backing link at a new file, for the image's format: `imgtool fix-backing` where
/// qemu-img can rewrite the link (qcow2, QED), else a symbolic link at the path QEMU looks in (qemu-img cannot change
/// a qcow v1 image's backing name: `rebase` fails with "Operation not supported").
package enum Repoint {
    /// True when `qemu-img rebase -u` can rewrite `format`'s backing link (and so `fix-backing` offers it).
    package static func canRewrite(_ format: ImageFormat) -> Bool { format == .qcow2 || format == .qed }

    /// The shell line that makes `image` (of `format`) find its backing file, recorded as resolving to `resolved`,
    /// at `target`; `extra` are fix-backing flags (`--force`). A `placeholder` target (NEW-PATH) is printed as it is,
    /// for the reader to replace.
    package static func command(_ image: String, format: ImageFormat, resolved: String, to target: String, placeholder: Bool = false, extra: [String] = []) -> String {
        let rewrite = canRewrite(format)
        // A link's own relative target would be read from the link's folder, so a symbolic link gets an absolute one.
        let shown = placeholder ? target : Shell.operand(rewrite ? target : Paths.absolute(target))
        if rewrite { return (["imgtool fix-backing", Shell.operand(image), "--to", shown] + extra.map(Shell.quote)).joined(separator: " ") }
        // A name starting with "-" is written `./-name` (Shell.operand), so ln never reads it as an option.
        return "ln -s \(shown) \(Shell.operand(resolved))"
    }
}
