import QCow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Who holds an image: processes with a descriptor on it, and QEMU's OFD locks on it.
public struct InUse: Sendable, Equatable {
    /// A process with the image open.
    public struct Holder: Sendable, Equatable {
        /// Its PID.
        public var pid: Int32
        /// Its command line, arguments joined by spaces.
        public var commandLine: String
    }

    /// Every process (but us) with a descriptor on the image's device and inode.
    public var holders: [Holder]
    /// Someone holds QEMU's write permission lock (byte 101) or refuses to share writing (byte 201).
    public var writeLocked: Bool
    /// Any QEMU lock byte (100–299) is held.
    public var locked: Bool

    /// True when changing the image now would race another process.
    public var isHeld: Bool { !holders.isEmpty || locked }

    /// One line naming the holders, for refusals.
    public var summary: String {
        var parts = holders.map { "PID \($0.pid) (\($0.commandLine))" }
        if parts.isEmpty && locked { parts.append("a process imgtool cannot see (QEMU's lock is held)") }
        return parts.joined(separator: ", ") + (writeLocked ? "; QEMU's write lock is held" : "")
    }

    /// Looks for holders of `path`. Opening the image read-only and asking `F_OFD_GETLK` finds QEMU's locks without
    /// taking any; scanning `/proc/*/fd` finds the PIDs (an OFD lock's owner is not shown in /proc/locks).
    public static func check(_ path: String) -> InUse {
        guard let id = FileIdentity.of(path: path) else { return InUse(holders: [], writeLocked: false, locked: false) }
        // Only files QEMU could use as images carry its locks; a character device is not opened at all.
        // Nor is a file on procfs or sysfs: opening one can act (as /proc/kmsg's open does).
        let probe = (id.kind == .regular || id.kind == .blockDevice) && PseudoFileSystem.of(path: path) == nil
        let (locked, write) = probe ? qemuLocks(path) : (false, false)
        return InUse(holders: holders(of: id), writeLocked: write, locked: locked)
    }

    // F_OFD_GETLK (Linux): not exported by every libc header Swift sees.
    static let F_OFD_GETLK: Int32 = 36

    static func qemuLocks(_ path: String) -> (locked: Bool, write: Bool) {
        // Non-blocking: opening a FIFO would otherwise wait for a writer.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return (false, false) }
        defer { close(fd) }
        func conflicts(_ start: Int, _ length: Int) -> Bool {
            var fl = flock()
            fl.l_type = Int16(F_WRLCK)
            fl.l_whence = Int16(SEEK_SET)
            fl.l_start = off_t(start)
            fl.l_len = off_t(length)
            fl.l_pid = 0
            guard fcntl(fd, F_OFD_GETLK, &fl) == 0 else { return false }
            return fl.l_type != Int16(F_UNLCK)
        }
        let write = conflicts(101, 1) || conflicts(201, 1)
        let any = write || conflicts(100, 200)
        return (any, write)
    }

    static func holders(of id: FileIdentity) -> [Holder] {
        let wanted = FileKey(id)
        var found: [Holder] = []
        walkOpenFiles { pid, keys in
            if keys.contains(wanted) { found.append(Holder(pid: pid, commandLine: commandLine(pid))) }
        }
        return found.sorted { $0.pid < $1.pid }
    }

    /// Calls `body` with each process (but us) and the regular files it has open. `stat` on `/proc/PID/fd/N` follows
    /// the magic link to the open file itself, even one since renamed or deleted.
    static func walkOpenFiles(_ body: (Int32, Set<FileKey>) -> Void) {
        let me = getpid()
        guard let proc = opendir("/proc") else { return }
        defer { closedir(proc) }
        while let ent = readdir(proc) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name), pid != me else { continue }
            let dir = "/proc/\(pid)/fd"
            guard let d = opendir(dir) else { continue }
            var keys: Set<FileKey> = []
            while let fdEnt = readdir(d) {
                let fd = withUnsafeBytes(of: fdEnt.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if fd == "." || fd == ".." { continue }
                var st = stat()
                if stat(dir + "/" + fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG || (st.st_mode & S_IFMT) == S_IFBLK {
                    keys.insert(FileKey(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino)))
                }
            }
            closedir(d)
            if !keys.isEmpty { body(pid, keys) }
        }
    }

    static func commandLine(_ pid: Int32) -> String {
        guard let file = try? ImageFile.open("/proc/\(pid)/cmdline", kernelFile: true),
              let bytes = try? file.read(at: 0, count: 4096) else { return "?" }
        let parts = bytes.split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
        return parts.isEmpty ? "?" : parts.joined(separator: " ")
    }
}

extension InUse {
    /// Every file any process (but us) has open, by device and inode, read once from `/proc`: a scan of thousands of
    /// images asks this map instead of walking `/proc` per image.
    package static func openFiles() -> [FileKey: [Holder]] {
        var map: [FileKey: [Holder]] = [:]
        walkOpenFiles { pid, keys in
            let holder = Holder(pid: pid, commandLine: commandLine(pid))
            for k in keys { map[k, default: []].append(holder) }
        }
        return map
    }
}
