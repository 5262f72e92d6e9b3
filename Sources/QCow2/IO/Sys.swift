import Glibc

/// The syscalls imgtool gives a path to, taking the name as imgtool carries it (a `String` decoded by
/// `String(pathBytes:)`) and handing the kernel its exact bytes. Calling Glibc's with a `String` directly would pass
/// its UTF-8, which differs for a name that is not UTF-8 (see `PathBytes`): the call would name another file.
/// Names the kernel hands back (`readlink`, `realpath`, `getcwd`, directory entries) are decoded the same way.
package enum Sys {
    /// open(2).
    package static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        path.withPathCString { Glibc.open($0, flags, mode) }
    }

    /// stat(2), following links.
    package static func stat(_ path: String, _ buf: UnsafeMutablePointer<Glibc.stat>) -> Int32 {
        path.withPathCString { statFollowing($0, buf) }
    }

    /// lstat(2): the link itself.
    package static func lstat(_ path: String, _ buf: UnsafeMutablePointer<Glibc.stat>) -> Int32 {
        path.withPathCString { Glibc.lstat($0, buf) }
    }

    /// opendir(3).
    package static func opendir(_ path: String) -> OpaquePointer? {
        path.withPathCString { Glibc.opendir($0) }
    }

    /// unlink(2).
    @discardableResult
    package static func unlink(_ path: String) -> Int32 {
        path.withPathCString { Glibc.unlink($0) }
    }

    /// rename(2).
    package static func rename(_ from: String, _ to: String) -> Int32 {
        from.withPathCString { f in to.withPathCString { t in Glibc.rename(f, t) } }
    }

    /// mkdir(2).
    package static func mkdir(_ path: String, _ mode: mode_t) -> Int32 {
        path.withPathCString { Glibc.mkdir($0, mode) }
    }

    /// access(2).
    package static func access(_ path: String, _ mode: Int32) -> Int32 {
        path.withPathCString { Glibc.access($0, mode) }
    }

    /// The target of symbolic link `path` as the kernel spells it, nil when it cannot be read.
    package static func readlink(_ path: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = path.withPathCString { p in
            buffer.withUnsafeMutableBytes { b -> Int in
                guard let base = b.baseAddress else { return -1 }
                return Glibc.readlink(p, base.assumingMemoryBound(to: CChar.self), b.count - 1)
            }
        }
        guard n >= 0 else { return nil }
        return String(pathBytes: buffer[..<n])
    }

    /// realpath(3): the absolute name with every link resolved, nil when it cannot be had.
    package static func realpath(_ path: String) -> String? {
        guard let real = path.withPathCString({ Glibc.realpath($0, nil) }) else { return nil }
        defer { free(real) }
        return String(pathCString: real)
    }
}

/// stat(2) itself: inside `Sys`, `stat` names the wrapper, and `Glibc.stat(…)` names the struct's initializer.
private func statFollowing(_ path: UnsafePointer<CChar>, _ buf: UnsafeMutablePointer<Glibc.stat>) -> Int32 {
    stat(path, buf)
}
