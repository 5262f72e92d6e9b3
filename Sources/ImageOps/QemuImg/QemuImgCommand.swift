/// One qemu-img invocation as a typed value: it builds its argv and nothing else, so the argv is unit-tested without
/// running anything. Every command that writes a backing link passes the backing format (`-F`), which qemu-img 6.1+
/// requires and which keeps QEMU from guessing.
public enum QemuImgCommand: Sendable, Equatable {
    /// `qemu-img create -f FORMAT [-b BACKING -F BACKINGFORMAT] IMAGE [SIZE]`.
    case create(image: String, format: String, size: UInt64?, backing: String?, backingFormat: String?)
    /// `qemu-img rebase -f FORMAT [-u] [-p] -b BACKING [-F BACKINGFORMAT] IMAGE`; an empty backing flattens.
    /// FORMAT is qcow2 or QED (the formats whose link qemu-img can rewrite).
    case rebase(image: String, format: String = "qcow2", backing: String, backingFormat: String?, unsafe: Bool, progress: Bool)
    /// `qemu-img resize -f FORMAT [--shrink] IMAGE SIZE`.
    case resize(image: String, format: String, size: UInt64, shrink: Bool)
    /// `qemu-img commit -f FORMAT [-p] [-b BASE] IMAGE`: IMAGE's data (and the layers' between) written into BASE.
    case commit(image: String, format: String, base: String?, progress: Bool)

    /// The arguments after `qemu-img`.
    public var arguments: [String] {
        switch self {
        case .create(let image, let format, let size, let backing, let backingFormat):
            var a = ["create", "-q", "-f", format]
            if let backing {
                a += ["-b", backing]
                if let backingFormat { a += ["-F", backingFormat] }
            }
            a.append(image)
            if let size { a.append(String(size)) }
            return a
        case .rebase(let image, let format, let backing, let backingFormat, let unsafe, let progress):
            var a = ["rebase", "-f", format]
            if unsafe { a.append("-u") }
            if progress { a.append("-p") }
            a += ["-b", backing]
            if let backingFormat, !backing.isEmpty { a += ["-F", backingFormat] }
            a.append(image)
            return a
        case .resize(let image, let format, let size, let shrink):
            var a = ["resize", "-q", "-f", format]
            if shrink { a.append("--shrink") }
            a += [image, String(size)]
            return a
        case .commit(let image, let format, let base, let progress):
            var a = ["commit", "-f", format]
            a.append(progress ? "-p" : "-q")
            if let base { a += ["-b", base] }
            a.append(image)
            return a
        }
    }

    /// The image this command writes.
    public var target: String {
        switch self {
        case .create(let image, _, _, _, _), .rebase(let image, _, _, _, _, _), .resize(let image, _, _, _), .commit(let image, _, _, _): image
        }
    }

    /// The exact command line, shell-quoted, as a dry run prints it.
    public func commandLine(qemuImg: String) -> String {
        Shell.join([qemuImg] + arguments)
    }
}
