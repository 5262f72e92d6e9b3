import QCow2
import SystemPackage

import Glibc

/// Save files on disk: written to a temporary name, fsynced, renamed into place and the folder fsynced, so a save
/// is either whole or absent, after a crash too.
enum SaveFile {
    /// Writes `bytes` as `file`. On any failure the temporary file is removed and `cannotSave` names the image.
    /// `replacing` (a file in the same folder) is removed once `file` is in place, under the same folder fsync: one
    /// flush fewer than removing it afterwards (each costs milliseconds on a busy disk).
    static func write(_ bytes: [UInt8], to file: String, image: String, replacing old: String? = nil) throws(HeaderBackup.Error) {
        let folder = BackingPath.directory(file)
        let tmp = folder + "/." + BackingPath.fileName(file) + ".\(getpid()).tmp"
        // Under `ulimit -f` a write past the limit raises SIGXFSZ, which would kill us with the image half-handled:
        // ignored, the write fails with EFBIG like any other full disk.
        let previous = signal(SIGXFSZ, SIG_IGN)
        defer { signal(SIGXFSZ, previous) }
        do {
            try makeDirectories(folder)
            let fd = try FileDescriptor.open(
                FilePath(pathString: tmp), .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                permissions: [.ownerReadWrite])
            do {
                try fd.closeAfter {
                    _ = try fd.writeAll(bytes)
                    guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
                }
            } catch {
                Sys.unlink(tmp)
                throw error
            }
            guard Sys.rename(tmp, file) == 0 else {
                let e = errno
                Sys.unlink(tmp)
                throw Errno(rawValue: e)
            }
            if let old { Sys.unlink(old) }
            try syncFolder(folder)
        } catch {
            throw .cannotSave(path: image, folder: folder, errno: (error as? Errno)?.rawValue ?? EIO)
        }
    }

    /// Removes a save file and makes the removal durable. A file already gone is fine.
    static func remove(_ file: String) {
        if Sys.unlink(file) == 0 { try? syncFolder(BackingPath.directory(file)) }
    }

    /// fsync of a folder, so a rename or unlink in it survives a crash.
    static func syncFolder(_ folder: String) throws(Errno) {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(FilePath(pathString: folder), .readOnly, options: [.directory, .closeOnExec]) } catch {
            throw (error as? Errno) ?? .ioError
        }
        defer { try? fd.close() }
        guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
    }

    static func makeDirectories(_ dir: String) throws(Errno) {
        var path = dir.hasPrefix("/") ? "" : "."
        for part in dir.split(separator: "/", omittingEmptySubsequences: true) {
            path += "/" + part
            if Sys.mkdir(path, 0o700) != 0 && errno != EEXIST { throw Errno(rawValue: errno) }
        }
    }

    /// Reads a save file; nil when there is none.
    static func read(_ file: String, image: String) throws(HeaderBackup.Error) -> [UInt8]? {
        let handle: ImageFile
        do { handle = try ImageFile.open(file) } catch {
            if case .missing = error { return nil }
            throw .badSave(path: image, saveFile: file, field: "file")
        }
        // Saves are at most two 2 MiB clusters, a backing name and a short text head.
        guard handle.stat.size <= 5 << 20, let bytes = try? handle.read(at: 0, count: Int(handle.stat.size)) else {
            throw .badSave(path: image, saveFile: file, field: "size")
        }
        return bytes
    }
}

extension HeaderBackup {
    static let magic = "imgtool-undo 2"

    // Format: the magic line, then "key=value" lines, an empty line, and the backing name, the header before and the
    // header after as raw bytes whose lengths the head gives.
    func encoded() -> [UInt8] {
        let name = intent.backing.pathBytes
        let head = [
            Self.magic, "path=\(path.replacingAll("\n", with: " "))", "device=\(device)", "inode=\(inode)",
            "backing-format=\(intent.backingFormat.replacingAll("\n", with: " "))", "size-before=\(sizeBefore)",
            "size-after=\(sizeAfter)", "backing=\(name.count)", "before=\(before.count)", "after=\(after.count)",
        ]
        return Array((head.joined(separator: "\n") + "\n\n").utf8) + name + before + after
    }

    /// Parses a save file's bytes; `image` and `file` name it in errors.
    static func decode(_ bytes: [UInt8], image: String, file: String) throws(Error) -> HeaderBackup {
        func bad(_ field: String) -> Error { .badSave(path: image, saveFile: file, field: field) }
        guard let split = bytes.firstRange(of: [10, 10]) else { throw bad("head") }
        let head = String(decoding: bytes[..<split.lowerBound], as: UTF8.self).split(separator: "\n")
        guard head.first.map(String.init) == magic else { throw bad("magic") }
        var fields: [String: String] = [:]
        for line in head.dropFirst() {
            if let eq = line.firstIndex(of: "=") { fields[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        func number(_ key: String) throws(Error) -> UInt64 {
            guard let v = fields[key].flatMap({ UInt64($0) }) else { throw bad(key) }
            return v
        }
        let body = Array(bytes[split.upperBound...])
        let nName = try number("backing"), nBefore = try number("before"), nAfter = try number("after")
        guard nName <= 4096, nBefore <= 4 << 20, nAfter <= 4 << 20,
              UInt64(body.count) == nName + nBefore + nAfter else { throw bad("length") }
        let a = Int(nName), b = Int(nName + nBefore)
        return HeaderBackup(
            path: fields["path"] ?? image, device: try number("device"), inode: try number("inode"),
            intent: Intent(backing: String(pathBytes: body[..<a]), backingFormat: fields["backing-format"] ?? ""),
            before: Array(body[a..<b]), sizeBefore: try number("size-before"),
            after: Array(body[b...]), sizeAfter: try number("size-after"))
    }
}
