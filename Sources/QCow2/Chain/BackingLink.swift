import SystemPackage

/// How one backing link is judged. `chain` (one image down) and `scan` (a whole store at once) reach the next file
/// differently, but every verdict and its wording comes from here, so the same break reads the same in both.
public enum BackingLink {
    /// The problem a protocol string (`nbd:…`, `json:{…}`) is: QEMU hands it to a driver; we report it.
    public static func protocolProblem(_ name: String) -> (kind: BackingChain.Kind, message: String) {
        (.protocol, "backing \"\(name)\" is a protocol string; QEMU hands it to a driver, imgtool does not follow it")
    }

    /// The problem when the file the link resolves to could not be read as an image.
    public static func problem(reading resolved: String, failed error: ImageInfo.Error) -> (kind: BackingChain.Kind, message: String) {
        switch error {
        case .file(.missing):
            return (.missing, "backing file \(resolved) does not exist")
        case .file(.unreadable(_, let e)):
            return (.unreadable, "backing file \(resolved) cannot be read (\(Errno(rawValue: e)))")
        case .file(.notAFile(_, let kind)):
            return (.notAnImage, "backing file \(resolved) is a \(kind), not an image")
        case .file(.io):
            return (.unreadable, error.description)
        case .header(let h):
            return (.invalidHeader, "backing file has an invalid header: \(h.description)")
        case .invalid(let h):
            return (.invalidHeader, "backing file cannot be opened as QEMU opens it: \(h.description)")
        case .snapshots(let s):
            return (.invalidHeader, "backing file cannot be opened as QEMU opens it: \(s.description)")
        case .bitmaps(let b):
            return (.invalidHeader, "backing file cannot be opened as QEMU opens it: \(b.description)")
        }
    }

    /// The problem when `stat` of the resolved name failed with `errno`: only a name that leads nowhere is missing;
    /// a symlink loop, a name too long or a folder we may not enter is there but unreadable.
    public static func problem(statOf resolved: String, errno e: Int32) -> (kind: BackingChain.Kind, message: String) {
        let missing = e == Errno.noSuchFileOrDirectory.rawValue || e == Errno.notDirectory.rawValue
        return problem(reading: resolved, failed: .file(missing ? .missing(path: resolved) : .unreadable(path: resolved, errno: e)))
    }

    /// The problem with a link whose target was read: the recorded format disagrees, or none is recorded (a
    /// warning: QEMU guesses). Nil when the link is sound.
    public static func problem(recorded: String?, target: ImageFormat, resolved: String) -> (kind: BackingChain.Kind, message: String)? {
        guard let recorded else {
            return (.noFormat, "no backing format recorded; QEMU has to guess the format of \(resolved) (it looks like \(target.rawValue))")
        }
        if ImageFormat(qemuName: recorded) == target { return nil }
        return (.formatMismatch, "recorded backing format is \(recorded) but \(resolved) is \(target.rawValue)")
    }
}
