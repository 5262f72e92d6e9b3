import QCow2

import Glibc

/// QEMU's file names are QEMU's: a relative `-drive file=` name (and the backing names QEMU derives from it) is
/// relative to the folder QEMU was started in, never to imgtool's. That folder is `/proc/PID/cwd`, except for a
/// `-daemonize`d QEMU, which moves to `/` once started (os_setup_post): its names were resolved before that, in the
/// folder its shell left in its environment as `PWD`. A candidate folder only counts when the name leads there to a
/// file QEMU really has open; otherwise the name is resolved against `/proc/PID/cwd` as QEMU itself would now.
struct QemuNames {
    /// The QEMU.
    let pid: Int32
    /// Folders a relative name may be relative to, most likely first, each as a path imgtool can open.
    let folders: [String]

    init(pid: Int32) {
        self.pid = pid
        var folders = ["/proc/\(pid)/cwd"]
        if Sys.readlink("/proc/\(pid)/cwd") == "/", let pwd = Self.launchFolder(pid: pid) { folders.append(pwd) }
        self.folders = folders
    }

    /// `PWD` from the process's environment when it is an absolute path (bytes, not decoded as UTF-8: a folder name
    /// need not be UTF-8). Only a hint, which `resolve` checks against the files QEMU has open.
    static func launchFolder(pid: Int32) -> String? {
        guard let env = readSmallFile("/proc/\(pid)/environ", limit: 1 << 20) else { return nil }
        for entry in env.split(separator: 0) where entry.starts(with: Array("PWD=".utf8)) {
            let value = entry.dropFirst(4)
            guard value.first == UInt8(ascii: "/") else { return nil }
            return String(pathBytes: value)
        }
        return nil
    }

    /// Where `name` leads (by device and inode), and the path from here it was found at. `isOpen` tells whether
    /// QEMU has a file open: the first folder in which the name leads to an open file wins; failing that, the first
    /// in which it leads anywhere (the name now names another file: QEMU's file was moved or replaced).
    func resolve(_ name: String, isOpen: (FileKey) -> Bool) -> (key: FileKey, path: String)? {
        if name.hasPrefix("/") { return Self.key(name).map { ($0, name) } }
        var fallback: (key: FileKey, path: String)?
        for folder in folders {
            let full = folder + "/" + name
            guard let k = Self.key(full) else { continue }
            if isOpen(k) { return (k, full) }
            if fallback == nil { fallback = (k, full) }
        }
        return fallback
    }

    /// `name` as an absolute path: a relative one in the folder where it leads to a file QEMU has open, else in QEMU's
    /// working folder. `/proc/PID/cwd` is spelled as its target, so the path means the same to qemu-img and to QEMU.
    func absolute(_ name: String, isOpen: (FileKey) -> Bool) -> String {
        if name.hasPrefix("/") { return name }
        let found = resolve(name, isOpen: isOpen)?.path ?? (folders[0] + "/" + name)
        let prefix = "/proc/\(pid)/cwd"
        guard found.hasPrefix(prefix + "/") else { return found }
        let cwd = Sys.readlink(prefix) ?? "/"
        return (cwd == "/" ? "" : cwd) + String(found.dropFirst(prefix.count))
    }

    static func key(_ path: String) -> FileKey? {
        var st = stat()
        guard Sys.stat(path, &st) == 0 else { return nil }
        return FileKey(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino))
    }
}
