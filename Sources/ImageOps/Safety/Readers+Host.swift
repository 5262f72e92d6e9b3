import QCow2

import Glibc

/// The refusals every change makes of what `Readers` finds: each command asks these, never `InUse` alone, so a
/// reader added to `Readers` is refused by every command. They ask `quick`ly: the kernel first says whether anyone
/// else has the file open at all, and `/proc` is walked only when someone may (`InUse.openedByNoOneElse`).
extension Operations {
    /// Refuses an image anyone reads or writes: a process, QEMU's lock, or a device the kernel serves it on. Asked
    /// of the held file, so the file checked is the one qemu-img gets.
    static func requireNotHeld(_ file: ImageFile, _ plan: inout Plan) throws(ChangeError) {
        let readers = Readers.of(file, quick: true)
        if readers.isHeld { throw .inUse(path: file.path, holders: readers.summary) }
        plan.checks.append("no process or device holds \(file.path)")
    }

    /// Refuses a base someone writes (QEMU's lock byte 101, or a device the kernel may write through: a mounted
    /// loop device): its content moves under a new overlay. A base only read or protected (byte 201 alone, as a
    /// running VM's backing files; a read-only loop device) is fine to build on.
    static func requireNotWritten(_ base: String, _ plan: inout Plan) throws(ChangeError) {
        let readers = Readers.of(path: base, quick: true)
        try requireNotWritten(readers, path: base)
        plan.checks.append(readers.isHeld ? "\(base) is held but nobody writes it (\(readers.summary))" : "nobody writes \(base)")
    }

    /// The same for a layer already opened (commit's layers below the one written).
    static func requireNotWritten(_ file: ImageFile) throws(ChangeError) {
        try requireNotWritten(Readers.of(file, quick: true), path: file.path)
    }

    static func requireNotWritten(_ readers: Readers, path: String) throws(ChangeError) {
        if readers.isWritten { throw .baseWritten(path: path, holders: readers.writers) }
    }

    /// Refuses a change when the search for images backed by a changing layer could not look everywhere: an image
    /// in what it missed would be corrupted as silently as one it found.
    public static func requireSearched(_ image: String, _ dependents: Readers.Dependents) throws(ChangeError) {
        guard !dependents.unsearched.isEmpty else { return }
        let n = dependents.unsearched.count
        let shown = dependents.unsearched.prefix(20).map { "\($0.path) \($0.reason)" }.joined(separator: "; ")
        throw .refused(path: image, reason: "imgtool could not look everywhere an image backed by a layer that changes may be, and such an image would be silently corrupted: "
                       + shown + (n > 20 ? "; and \(n - 20) more" : ""),
                       hint: "make those folders readable (or leave them out of --store), then retry")
    }
}

extension InUse {
    /// A process's command line as its arguments.
    static func commandLineArguments(_ pid: Int32) -> [String] {
        guard let file = try? ImageFile.open("/proc/\(pid)/cmdline", kernelFile: true),
              let bytes = try? file.read(at: 0, count: 4096) else { return [] }
        return bytes.split(separator: 0, omittingEmptySubsequences: true).map { String(pathBytes: $0) }
    }
}
