import QCow2

import Glibc

/// Who holds an image: processes with a descriptor on it, and what QEMU's OFD locks on it say.
public struct InUse: Sendable, Equatable {
    /// A process with the image open.
    public struct Holder: Sendable, Equatable {
        /// Its PID.
        public var pid: Int32
        /// Its command line, arguments joined by spaces.
        public var commandLine: String
    }

    /// What QEMU's lock bytes say, strongest first. Both `writing` and `protecting` mean "do not change this file";
    /// only `writing` means its content is moving (never build an overlay on it).
    public enum Lock: String, Sendable, Equatable {
        /// Byte 101: a holder has write permission (a VM's active layer, `qemu-nbd` read-write).
        case writing
        /// Byte 201 without 101: a holder forbids others to write but does not write itself (a running VM's backing
        /// files, `qemu-nbd -r`).
        case protecting
        /// Other lock bytes only (a reader that shares everything).
        case reading
        /// No lock byte held.
        case none

        /// The lock in words, for messages.
        public var words: String {
            switch self {
            case .writing: return "writing it (QEMU's write permission, lock byte 101, is held)"
            case .protecting: return "protecting it: reads it and forbids others to write (lock byte 201), as a running VM does to its backing files"
            case .reading: return "reading it (QEMU's read lock is held)"
            case .none: return "no QEMU lock"
            }
        }
    }

    /// Every process (but us) with a descriptor on the image's device and inode.
    public var holders: [Holder]
    /// The strongest QEMU lock held on the image.
    public var lock: Lock

    /// Someone holds QEMU's write permission (byte 101): the contract's `write-locked`.
    public var writeLocked: Bool { lock == .writing }
    /// Any QEMU lock byte (100–299) is held.
    public var locked: Bool { lock != .none }
    /// True when changing the image now would race another process.
    public var isHeld: Bool { !holders.isEmpty || locked }

    /// The holders by PID and command line, or a note that the lock's owner is not visible to us.
    public var who: String {
        var parts = holders.map { "PID \($0.pid) (\($0.commandLine))" }
        if parts.isEmpty && locked { parts.append("a process imgtool cannot see") }
        return parts.joined(separator: ", ")
    }

    /// One line naming the holders and what their lock says, for refusals.
    public var summary: String { who + (locked ? "; \(holders.count > 1 ? "a holder" : "it") is " + lock.words : "") }

    /// Looks for holders of `path`. Opening the image read-only and asking `F_OFD_GETLK` finds QEMU's locks without
    /// taking any; scanning `/proc/*/fd` finds the PIDs (an OFD lock's owner is not shown in /proc/locks). `quick`
    /// (the checks before a change) first asks the kernel whether anyone else has the file open (`openedByNoOneElse`)
    /// and walks `/proc` only when someone may: the walk then names them exactly as without it.
    public static func check(_ path: String, quick: Bool = false) -> InUse {
        guard let id = FileIdentity.of(path: path) else { return InUse(holders: [], lock: .none) }
        // Only files QEMU could use as images carry its locks; a character device is not opened at all.
        // Nor is a file on procfs or sysfs: opening one can act (as /proc/kmsg's open does).
        guard id.kind == .regular || id.kind == .blockDevice, PseudoFileSystem.of(path: path) == nil else {
            return InUse(holders: holders(of: id), lock: .none)
        }
        // Non-blocking: opening a FIFO would otherwise wait for a writer.
        let fd = Sys.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return InUse(holders: holders(of: id), lock: .none) }
        defer { close(fd) }
        var st = stat()
        // The name may have changed between the stat and the open: ask about the file opened.
        guard fstat(fd, &st) == 0 else { return InUse(holders: holders(of: id), lock: .none) }
        let opened = FileKey(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino))
        let held = quick && openedByNoOneElse(fd) ? [] : holders(of: opened)
        return InUse(holders: held, lock: lockState(fd))
    }

    /// Looks for holders of the file `file` has open: the very file checked, whatever its name names now. `quick`
    /// as for `check(_:quick:)`; `file` must then be our only open of it, or the walk runs.
    public static func check(_ file: ImageFile, quick: Bool = false) -> InUse {
        let key = FileKey(file.stat)
        guard file.stat.kind == .regular || file.stat.kind == .blockDevice else { return InUse(holders: holders(of: key), lock: .none) }
        let held = quick && openedByNoOneElse(file.rawDescriptor) ? [] : holders(of: key)
        return InUse(holders: held, lock: lockState(file.rawDescriptor))
    }

    // F_SETLEASE and F_SETSIG (Linux): not exported by every libc header Swift sees.
    static let F_SETLEASE: Int32 = 1024
    static let F_SETSIG: Int32 = 10

    /// True when the kernel says no open file description on the file but the one `fd` names (ours) can read or
    /// write it: a write lease (`F_SETLEASE`, `F_WRLCK`) is granted only when the inode's count of read-only opens and
    /// its count of writable opens are exactly what `fd` itself contributes (fs/locks.c, `check_conflicting_open`),
    /// and it is dropped at once. Those counts take in every open on the host — every process's descriptors,
    /// including processes `/proc` does not show us (another user's, another PID namespace's), descriptors in
    /// flight, mappings kept after `close`, and the kernel's own (a loop device's backing file) — so when it is
    /// granted, the `/proc/*/fd` walk could find no process with a descriptor on the file that can read or write it.
    /// Only descriptors that cannot read or write the file's content are not counted (`O_PATH`, access mode 3):
    /// no reader to race. Anything else (a refusal, a file system without leases, not our file and no
    /// CAP_LEASE, a second open of ours) says false and the caller walks `/proc` as before. Measured: this replaces
    /// the walk that stats every descriptor on the host (1,300–1,500 here), most of `fix-backing`'s checks.
    ///
    /// While the lease is held (a few microseconds) another process's `open` of the file waits for it; the kernel
    /// tells the holder with a signal, here SIGURG, whose default action is to ignore it (SIGIO's would kill us).
    static func openedByNoOneElse(_ fd: Int32) -> Bool {
        guard fcntl(fd, F_SETSIG, SIGURG) == 0 else { return false }
        defer { _ = fcntl(fd, F_SETSIG, 0) }
        guard fcntl(fd, F_SETLEASE, Int32(F_WRLCK)) == 0 else { return false }
        _ = fcntl(fd, F_SETLEASE, Int32(F_UNLCK))
        return true
    }

    // F_OFD_GETLK (Linux): not exported by every libc header Swift sees.
    static let F_OFD_GETLK: Int32 = 36

    /// The strongest lock others hold on the file `fd` has open. OFD locks belong to open file descriptions, so a
    /// descriptor of ours that holds none can ask about everyone else's.
    static func lockState(_ fd: Int32) -> Lock {
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
        if conflicts(101, 1) { return .writing }
        if conflicts(201, 1) { return .protecting }
        return conflicts(100, 200) ? .reading : .none
    }

    static func holders(of id: FileIdentity) -> [Holder] { holders(of: FileKey(id)) }

    static func holders(of wanted: FileKey) -> [Holder] {
        var found: [Holder] = []
        walkProcesses { pid, fds in
            // One descriptor on the file is enough: the rest of this process's are not looked at.
            var holds = false
            forEachOpenFile(fds) { key in
                holds = key == wanted
                return !holds
            }
            if holds { found.append(Holder(pid: pid, commandLine: commandLine(pid))) }
        }
        return found.sorted { $0.pid < $1.pid }
    }

    /// Calls `body` with each process (but us) and the regular files it has open. `stat` on `/proc/PID/fd/N` follows
    /// the magic link to the open file itself, even one since renamed or deleted.
    static func walkOpenFiles(_ body: (Int32, Set<FileKey>) -> Void) {
        walkProcesses { pid, fds in
            var keys: Set<FileKey> = []
            forEachOpenFile(fds) { key in
                keys.insert(key)
                return true
            }
            if !keys.isEmpty { body(pid, keys) }
        }
    }

    /// Calls `body` with each process (but us) and its `/proc/PID/fd` folder, open.
    static func walkProcesses(_ body: (Int32, OpaquePointer) -> Void) {
        let me = getpid()
        guard let proc = opendir("/proc") else { return }
        defer { closedir(proc) }
        while let ent = readdir(proc) {
            let name = Directory.name(ent)
            guard let pid = Int32(name), pid != me else { continue }
            guard let d = Sys.opendir("/proc/\(pid)/fd") else { continue }
            body(pid, d)
            closedir(d)
        }
    }

    /// Calls `body` with the device and inode of each regular file or block device in the open `/proc/PID/fd`
    /// folder `fds` until it returns false. Each descriptor is asked with `fstatat` relative to the folder (which
    /// follows the magic link as `stat` of the whole path does) and its name read in place: the kernel does not
    /// walk `/proc/PID/fd/` again for every descriptor, and no path string is built. With 1,500 descriptors on the
    /// host this walk was most of `fix-backing`'s checks (`strace -c`: one stat per descriptor).
    static func forEachOpenFile(_ fds: OpaquePointer, _ body: (FileKey) -> Bool) {
        let folder = dirfd(fds)
        let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name) ?? 19
        while let ent = readdir(fds) {
            let name = UnsafeRawPointer(ent).advanced(by: offset).assumingMemoryBound(to: CChar.self)
            // "." and "..": every other name here is a descriptor number.
            if name[0] == CChar(UInt8(ascii: ".")) { continue }
            var st = stat()
            guard fstatat(folder, name, &st, 0) == 0 else { continue }
            let kind = st.st_mode & S_IFMT
            guard kind == S_IFREG || kind == S_IFBLK else { continue }
            if !body(FileKey(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino))) { return }
        }
    }

    static func commandLine(_ pid: Int32) -> String {
        guard let file = try? ImageFile.open("/proc/\(pid)/cmdline", kernelFile: true),
              let bytes = try? file.read(at: 0, count: 4096) else { return "?" }
        let parts = bytes.split(separator: 0, omittingEmptySubsequences: true).map { String(pathBytes: $0) }
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
