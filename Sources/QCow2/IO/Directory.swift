import Glibc

/// Walks folders with readdir: no Foundation, bounded depth and entry count so a huge tree cannot stall a report.
package enum Directory {
    /// The name in a directory entry, read in place. Copying `ent.pointee` (or its `d_name`) reads the declared 256
    /// bytes, past the end of getdents' buffer for a short last entry: SIGSEGV when that buffer ends a page (seen
    /// in `scan` walking /proc under load).
    package static func name(_ ent: UnsafeMutablePointer<dirent>) -> String {
        let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name) ?? 19
        return String(pathCString: UnsafeRawPointer(ent).advanced(by: offset).assumingMemoryBound(to: CChar.self))
    }

    /// One entry met on the walk.
    package struct Entry: Sendable {
        /// The path, the walk's root joined with the names below it.
        package var path: String
        /// The entry's own name.
        package var name: String
        /// True for a folder (symbolic links to folders are not followed, so false for them).
        package var isDirectory: Bool
    }

    /// Calls `visit` for every entry under `root` up to `maxDepth` folders down, at most `limit` entries in all.
    /// Symbolic links to folders are not followed (a link loop must not trap the walk).
    package static func walk(_ root: String, maxDepth: Int, limit: Int = 200_000, _ visit: (Entry) -> Void) {
        var budget = limit
        var stack: [(String, Int)] = [(root, 0)]
        while let (dir, depth) = stack.popLast() {
            guard let handle = Sys.opendir(dir) else { continue }
            defer { closedir(handle) }
            while budget > 0, let ent = readdir(handle) {
                let name = Directory.name(ent)
                if name == "." || name == ".." { continue }
                budget -= 1
                let path = dir == "." ? name : (dir.hasSuffix("/") ? dir + name : dir + "/" + name)
                var isDir = ent.pointee.d_type == UInt8(DT_DIR)
                if ent.pointee.d_type == UInt8(DT_UNKNOWN) {
                    var st = stat()
                    isDir = Sys.lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
                }
                visit(Entry(path: path, name: name, isDirectory: isDir))
                if isDir && depth < maxDepth { stack.append((path, depth + 1)) }
            }
        }
    }

    /// The current working directory.
    package static func current() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return "." }
        return String(pathBytes: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) })
    }
}
