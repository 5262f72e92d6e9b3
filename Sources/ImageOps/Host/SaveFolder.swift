import QCow2
import SystemPackage

import Glibc

/// The folder saves live in, opened so that no other user can have put or changed anything in it: `undo` writes a
/// save's bytes over an image, so a save someone else wrote (in a shared or world-writable folder, or reached through
/// a symbolic link they made) would let them write what they like into the image (a backing name of `/etc/shadow`).
///
/// Every component of the path is opened with `openat(O_DIRECTORY | O_NOFOLLOW)` from the one above it, so no
/// symbolic link is followed and no component can be swapped between the check and the use. Each must be owned by
/// root or by us, and one that others may write must be sticky (then they cannot rename or remove what is ours in
/// it, and what they make in it is owned by them, which is refused at the next step). The folder itself must be ours
/// and writable by us alone. Files in it are opened relative to it, never through a link.
final class SaveFolder: Sendable {
    /// The folder's path (for messages).
    let path: String
    /// The open folder.
    let fd: Int32

    /// Why the folder cannot be used; the text says what is wrong in words.
    struct Unsafe: Swift.Error, Sendable {
        var reason: String
        var errno: Int32 = 0
    }

    deinit { close(fd) }

    private init(path: String, fd: Int32) { (self.path, self.fd) = (path, fd) }

    /// Opens `path` (absolute), creating missing components mode 0700 when `create`. Nil when it does not exist and
    /// `create` is false.
    static func open(_ path: String, create: Bool) throws(Unsafe) -> SaveFolder? {
        guard path.hasPrefix("/") else { throw Unsafe(reason: "\(path) is not an absolute path") }
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if parts.contains(where: { $0 == "." || $0 == ".." }) { throw Unsafe(reason: "\(path) has . or .. in it") }
        var fd = Sys.open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Unsafe(reason: "/ cannot be opened", errno: errno) }
        var shown = ""
        do throws(Unsafe) {
            try check(fd, "/", last: parts.isEmpty)
            for (i, part) in parts.enumerated() {
                shown += "/" + part
                var next = part.withPathCString { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                if next < 0, errno == ENOENT {
                    guard create else { close(fd); return nil }
                    if part.withPathCString { mkdirat(fd, $0, 0o700) } != 0, errno != EEXIST { throw Unsafe(reason: "\(shown) cannot be made", errno: errno) }
                    next = part.withPathCString { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                }
                guard next >= 0 else {
                    let e = errno
                    // O_NOFOLLOW on a link fails with ELOOP; O_DIRECTORY on anything else with ENOTDIR.
                    if e == ELOOP || e == ENOTDIR {
                        var st = stat()
                        let link = part.withPathCString { fstatat(fd, $0, &st, AT_SYMLINK_NOFOLLOW) } == 0 && st.st_mode & S_IFMT == S_IFLNK
                        throw Unsafe(reason: "\(shown) is \(link ? "a symbolic link (never followed for saves)" : "not a folder")", errno: e)
                    }
                    throw Unsafe(reason: "\(shown) cannot be opened", errno: e)
                }
                close(fd)
                fd = next
                try check(fd, shown, last: i == parts.count - 1)
            }
        } catch {
            close(fd)
            throw error
        }
        return SaveFolder(path: path, fd: fd)
    }

    /// The rules for one component (see the type's comment).
    private static func check(_ fd: Int32, _ shown: String, last: Bool) throws(Unsafe) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Unsafe(reason: "\(shown) cannot be examined", errno: errno) }
        let me = geteuid()
        let mode = String(st.st_mode & 0o7777, radix: 8)
        if last {
            guard st.st_uid == me else { throw Unsafe(reason: "\(shown) belongs to user \(st.st_uid), not to you (user \(me))") }
            guard st.st_mode & 0o022 == 0 else { throw Unsafe(reason: "\(shown) can be written by other users (mode \(mode))") }
            return
        }
        guard st.st_uid == me || st.st_uid == 0 else {
            throw Unsafe(reason: "\(shown) belongs to user \(st.st_uid), who could replace what is in it")
        }
        guard st.st_mode & 0o022 == 0 || st.st_mode & S_ISVTX != 0 else {
            throw Unsafe(reason: "\(shown) can be written by other users and is not sticky (mode \(mode)), so they could replace what is in it")
        }
    }

    /// Writes `bytes` as `name`: to a temporary name, fsynced, renamed into place, the folder fsynced; so a save is
    /// whole or absent after a crash too. `replacing` (a name in this folder) is removed under the same folder fsync.
    func write(_ bytes: [UInt8], as name: String, replacing old: String? = nil) throws(Errno) {
        let tmp = "." + name + ".\(getpid()).tmp"
        // Under `ulimit -f` a write past the limit raises SIGXFSZ, which would kill us with the image half-handled:
        // ignored, the write fails with EFBIG like any other full disk.
        let previous = signal(SIGXFSZ, SIG_IGN)
        defer { signal(SIGXFSZ, previous) }
        let raw = openat(fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard raw >= 0 else { throw Errno(rawValue: errno) }
        let file = FileDescriptor(rawValue: raw)
        do {
            try file.closeAfter {
                _ = try file.writeAll(bytes)
                guard fsync(raw) == 0 else { throw Errno(rawValue: errno) }
            }
        } catch {
            unlinkat(fd, tmp, 0)
            throw (error as? Errno) ?? .ioError
        }
        guard renameat(fd, tmp, fd, name) == 0 else {
            let e = errno
            unlinkat(fd, tmp, 0)
            throw Errno(rawValue: e)
        }
        if let old { unlinkat(fd, old, 0) }
        guard fsync(fd) == 0 else { throw Errno(rawValue: errno) }
    }

    /// Reads `name`, or nil when there is none. Refused (with the reason) unless it is a regular file, not a link,
    /// owned by us, written by us alone, with one name, and at most `bound` bytes: checked before anything is
    /// allocated for it.
    func read(_ name: String, bound: Int) throws(Unsafe) -> [UInt8]? {
        let raw = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard raw >= 0 else {
            let e = errno
            if e == ENOENT { return nil }
            throw Unsafe(reason: e == ELOOP ? "\(path)/\(name) is a symbolic link (never followed for saves)" : "\(path)/\(name) cannot be opened", errno: e)
        }
        defer { close(raw) }
        var st = stat()
        guard fstat(raw, &st) == 0 else { throw Unsafe(reason: "\(path)/\(name) cannot be examined", errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw Unsafe(reason: "\(path)/\(name) is not a regular file") }
        guard st.st_uid == geteuid() else { throw Unsafe(reason: "\(path)/\(name) belongs to user \(st.st_uid), not to you (user \(geteuid())): someone else wrote it") }
        guard st.st_mode & 0o022 == 0 else { throw Unsafe(reason: "\(path)/\(name) can be written by other users (mode \(String(st.st_mode & 0o7777, radix: 8)))") }
        guard st.st_nlink == 1 else { throw Unsafe(reason: "\(path)/\(name) has \(st.st_nlink) names (a save has one)") }
        guard st.st_size >= 0, st.st_size <= bound else {
            throw Unsafe(reason: "\(path)/\(name) is \(st.st_size) bytes, more than a save of this image can be (\(bound))")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(raw, $0.baseAddress.map { $0 + filled }, $0.count - filled, off_t(filled)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw Unsafe(reason: "\(path)/\(name) cannot be read", errno: n < 0 ? errno : EIO) }
            filled += n
        }
        return bytes
    }

    /// Removes `name` and makes the removal durable. A file already gone is fine.
    func remove(_ name: String) {
        if unlinkat(fd, name, 0) == 0 { fsync(fd) }
    }
}
