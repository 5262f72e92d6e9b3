import QCow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The header cluster saved before a header-only change (`fix-backing`, `rebase --unsafe`), so `undo` can put it
/// back. Saves live in `$IMGTOOL_STATE_DIR`, else `$XDG_STATE_HOME/imgtool/undo`, else `~/.local/state/imgtool/undo`,
/// one file per image named by device and inode (a rename of the image does not lose its save).
public struct HeaderBackup: Sendable, Equatable {
    /// The image path when it was saved (for messages).
    public var path: String
    /// Bytes of cluster 0 before the change.
    public var before: [UInt8]
    /// Bytes of cluster 0 after the change (empty until the change is recorded).
    public var after: [UInt8]
    /// File size after the change.
    public var sizeAfter: UInt64

    /// Why a save could not be made or used.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
        /// No save for this image.
        case noSave(path: String, saveFile: String)
        /// The image changed after the save: putting the old header back could lose data.
        case changedSince(path: String, detail: String)
        /// The save file is damaged.
        case badSave(saveFile: String, field: String)
        /// Reading or writing failed.
        case io(path: String, what: String, errno: Int32)

        public var description: String {
            switch self {
            case .noSave(let path, let f): return "\(path): no saved header to put back (looked for \(f))"
            case .changedSince(let path, let detail): return "\(path): the image changed after imgtool's last change (\(detail)); undo refused, the image is left as it is"
            case .badSave(let f, let field): return "\(f): saved header is damaged (field \(field))"
            case .io(let path, let what, let e): return "\(path): could not \(what) (errno \(e))"
            }
        }
    }

    /// The folder saves go to.
    public static func directory() -> String {
        if let d = env("IMGTOOL_STATE_DIR") { return d }
        if let x = env("XDG_STATE_HOME") { return x + "/imgtool/undo" }
        return (env("HOME") ?? "/tmp") + "/.local/state/imgtool/undo"
    }

    static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    /// The save file for an image.
    public static func saveFile(for id: FileIdentity) -> String {
        directory() + "/\(id.device)-\(id.inode).hdr"
    }

    /// Reads cluster 0 of `path` (the whole of what a header-only change rewrites).
    static func headerBytes(_ file: ImageFile) throws(Error) -> [UInt8] {
        let info: ImageInfo
        do { info = try ImageInfo.read(file) } catch { throw .io(path: file.path, what: "read the header", errno: EIO) }
        // qcow2 rewrites within cluster 0; QED within its header clusters, from which qemu-img writes at most the
        // 64-byte header and the name, so 64 KiB (QED's default header) covers it.
        let length = Int(min(info.qcow2?.clusterSize ?? 65536, max(file.stat.size, 512)))
        do { return try file.read(at: 0, count: length) } catch { throw .io(path: file.path, what: "read the header", errno: EIO) }
    }

    /// Saves the header of `path` before a change.
    public static func save(_ path: String) throws(Error) -> HeaderBackup {
        let file: ImageFile
        do { file = try ImageFile.open(path) } catch { throw .io(path: path, what: "open", errno: ENOENT) }
        let backup = HeaderBackup(path: path, before: try headerBytes(file), after: [], sizeAfter: 0)
        try backup.write(to: saveFile(for: file.stat))
        return backup
    }

    /// Records the state after the change, so `undo` can tell whether anything changed since.
    public mutating func recordAfter() throws(Error) {
        let file: ImageFile
        do { file = try ImageFile.open(path) } catch { throw .io(path: path, what: "open", errno: ENOENT) }
        after = try Self.headerBytes(file)
        sizeAfter = file.stat.size
        try write(to: Self.saveFile(for: file.stat))
    }

    // Format: "imgtool-undo 1\n" then "path=…\nbefore=N\nafter=M\nsize=S\n\n" then N + M bytes.
    func write(to saveFile: String) throws(Error) {
        try Self.makeDirectories(BackingPath.directory(saveFile))
        var bytes = Array("imgtool-undo 1\npath=\(path.replacingAll("\n", with: " "))\nbefore=\(before.count)\nafter=\(after.count)\nsize=\(sizeAfter)\n\n".utf8)
        bytes += before
        bytes += after
        let tmp = saveFile + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(path: tmp, what: "create the save file", errno: errno) }
        let ok = bytes.withUnsafeBytes { raw -> Bool in
            var done = 0
            while done < raw.count {
                guard let base = raw.baseAddress else { return false }
                let n = Glibc.write(fd, base + done, raw.count - done)
                if n <= 0 { return false }
                done += n
            }
            return fsync(fd) == 0
        }
        close(fd)
        guard ok, rename(tmp, saveFile) == 0 else { throw .io(path: saveFile, what: "write the save file", errno: errno) }
    }

    static func makeDirectories(_ dir: String) throws(Error) {
        var path = ""
        for part in dir.split(separator: "/", omittingEmptySubsequences: true) {
            path += "/" + part
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw .io(path: path, what: "create the folder", errno: errno) }
        }
    }

    /// Loads the save for the image at `path`.
    public static func load(for path: String) throws(Error) -> HeaderBackup {
        guard let id = FileIdentity.of(path: path) else { throw .io(path: path, what: "stat", errno: ENOENT) }
        let file = saveFile(for: id)
        guard let handle = try? ImageFile.open(file) else { throw .noSave(path: path, saveFile: file) }
        // Saves are at most two 2 MiB clusters and a short text head.
        guard handle.stat.size <= 5 << 20, let bytes = try? handle.read(at: 0, count: Int(handle.stat.size)) else {
            throw .badSave(saveFile: file, field: "size")
        }
        guard let split = bytes.firstRange(of: [10, 10]) else { throw .badSave(saveFile: file, field: "head") }
        let head = String(decoding: bytes[..<split.lowerBound], as: UTF8.self).split(separator: "\n")
        guard head.first == "imgtool-undo 1" else { throw .badSave(saveFile: file, field: "magic") }
        var fields: [String: String] = [:]
        for line in head.dropFirst() {
            if let eq = line.firstIndex(of: "=") { fields[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        guard let nb = fields["before"].flatMap(Int.init), let na = fields["after"].flatMap(Int.init),
              let size = fields["size"].flatMap(UInt64.init), nb >= 0, na >= 0 else { throw .badSave(saveFile: file, field: "lengths") }
        let body = bytes[split.upperBound...]
        guard nb <= body.count, body.count - nb == na else { throw .badSave(saveFile: file, field: "length") }
        let before = Array(body.prefix(nb)), after = Array(body.suffix(na))
        return HeaderBackup(path: fields["path"] ?? path, before: before, after: after, sizeAfter: size)
    }

    /// Puts the saved header back when the image is exactly as imgtool left it. Returns the save file, which is
    /// removed after a successful undo.
    public static func restore(_ path: String, dryRun: Bool) throws(Error) -> String {
        let backup = try load(for: path)
        guard let id = FileIdentity.of(path: path) else { throw .io(path: path, what: "stat", errno: ENOENT) }
        let saveFile = saveFile(for: id)
        guard !backup.after.isEmpty else { throw .changedSince(path: path, detail: "the change was saved but never completed") }
        let file: ImageFile
        do { file = try ImageFile.open(path) } catch { throw .io(path: path, what: "open", errno: ENOENT) }
        let now: [UInt8]
        do { now = try file.read(at: 0, count: backup.after.count) } catch { throw .io(path: path, what: "read", errno: EIO) }
        guard now == backup.after else { throw .changedSince(path: path, detail: "its header differs from the one imgtool wrote") }
        guard file.stat.size == backup.sizeAfter else {
            throw .changedSince(path: path, detail: "its size is \(file.stat.size), imgtool left it at \(backup.sizeAfter)")
        }
        if dryRun { return saveFile }
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, what: "open for writing", errno: errno) }
        defer { close(fd) }
        let ok = backup.before.withUnsafeBytes { raw -> Bool in
            guard let base = raw.baseAddress else { return false }
            return pwrite(fd, base, raw.count, 0) == raw.count && fsync(fd) == 0
        }
        guard ok else { throw .io(path: path, what: "write the saved header back", errno: errno) }
        unlink(saveFile)
        return saveFile
    }
}
