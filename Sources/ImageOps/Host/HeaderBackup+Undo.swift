import QCow2
import SystemPackage

import Glibc

extension HeaderBackup {
    /// What `undo` found, and so what it did.
    public enum Found: Sendable, Equatable {
        /// The image held the header imgtool wrote: the saved one is put back.
        case changed
        /// The image held the header the change writes, though imgtool was stopped before recording it: the saved
        /// one is put back.
        case changedUnrecorded
        /// The image held the saved header already (the change never landed, or was undone by hand): nothing is
        /// written; the save is dropped.
        case neverLanded

        /// The case in words.
        public var words: String {
            switch self {
            case .changed: return "it held the header imgtool wrote"
            case .changedUnrecorded:
                return "it held the header imgtool's change writes (imgtool was stopped before it could record it)"
            case .neverLanded: return "it already held the saved header: the change never landed"
            }
        }
    }

    /// The result of `undo`: the case found and the save file used.
    public struct UndoResult: Sendable, Equatable {
        /// What the image held.
        public var found: Found
        /// The save file used (removed unless this was a dry run).
        public var saveFile: String
    }

    /// Puts the saved header back onto the very file it was taken from, when that file holds exactly the header
    /// imgtool wrote or exactly the one it saved. The image is opened once: the checks and the write are on that file.
    public static func undo(_ path: String, dryRun: Bool) throws(Error) -> UndoResult {
        let file: ImageFile
        do { file = try ImageFile.open(path) } catch {
            switch error {
            case .missing: throw .io(path: path, what: "open it", errno: ENOENT)
            case .unreadable(_, let e): throw .io(path: path, what: "open it", errno: e)
            case .notAFile(_, let kind): throw .notAFile(path: path, kind: kind)
            default: throw .io(path: path, what: "open it", errno: EINVAL)
            }
        }
        let readers = Readers.of(file)
        if readers.isHeld { throw .inUse(path: path, holders: readers.summary) }
        // A pending save belongs to a later change than a completed one: it is looked at first.
        let pending = pendingFile(for: file.stat), done = saveFile(for: file.stat)
        let saveFile: String
        let bytes: [UInt8]
        if let b = try SaveFile.read(pending, image: path) {
            (saveFile, bytes) = (pending, b)
        } else if let b = try SaveFile.read(done, image: path) {
            (saveFile, bytes) = (done, b)
        } else {
            throw .noSave(path: path, folder: directory())
        }
        let save = try decode(bytes, image: path, file: saveFile)
        guard save.device == file.stat.device, save.inode == file.stat.inode else {
            throw .changedSince(path: path, detail: "the save in \(saveFile) was taken from another file (device \(save.device), inode \(save.inode))")
        }
        let found = try save.classify(file)
        if dryRun { return UndoResult(found: found, saveFile: saveFile) }
        if found != .neverLanded { try save.putBack(file) }
        SaveFile.remove(saveFile)
        return UndoResult(found: found, saveFile: saveFile)
    }

    /// Which header `file` holds, or why undo must not touch it.
    func classify(_ file: ImageFile) throws(Error) -> Found {
        guard let now = FileIdentity.of(fd: file) else { throw .io(path: path, what: "stat it", errno: errno) }
        let count = max(before.count, after.count)
        let bytes: [UInt8]
        do { bytes = try file.read(at: 0, count: count) } catch { throw .io(path: file.path, what: "read its header", errno: EIO) }
        if bytes.prefix(before.count) == before[...] && now.size == sizeBefore { return .neverLanded }
        if !after.isEmpty {
            if bytes.prefix(after.count) == after[...] && now.size == sizeAfter { return .changed }
            throw .changedSince(path: file.path, detail: now.size != sizeAfter
                ? "its size is \(now.size) bytes, imgtool left it at \(sizeAfter): it changed after imgtool's last change"
                : "its header is neither the one imgtool wrote nor the one it saved: it changed after imgtool's last change")
        }
        guard now.size == sizeBefore, Self.isIntended(before: before, now: Array(bytes.prefix(before.count)), intent: intent) else {
            throw .changedSince(path: file.path, detail: "imgtool was stopped during a change, and the header is neither the saved one nor the one that change writes (backing \(intent.backing.isEmpty ? "none" : intent.backing))")
        }
        return .changedUnrecorded
    }

    /// True when `now` is `before` with exactly the change asked of qemu-img made: the backing name and format as
    /// intended and every other field of the header as it was. qemu-img rewrites the header whole (it may move the
    /// name and add its feature-name table), so fields are compared, not bytes. Only qcow2 can be told this way.
    static func isIntended(before: [UInt8], now: [UInt8], intent: Intent) -> Bool {
        guard var old = parse(before), let new = parse(now) else { return false }
        guard (new.backingFile ?? "") == intent.backing, (new.backingFormat ?? "") == intent.backingFormat else { return false }
        old.backingFile = new.backingFile
        old.backingFormat = new.backingFormat
        old.backingFileOffset = new.backingFileOffset
        old.backingFileSize = new.backingFileSize
        old.headerLength = new.headerLength
        old.featureNames = new.featureNames
        return old == new
    }

    static func parse(_ bytes: [UInt8]) -> QCow2Header? { try? QCow2Header.parseForFuzzing(bytes) }

    /// Writes the saved header over cluster 0 of the very file `file` holds, and fsyncs it.
    func putBack(_ file: ImageFile) throws(Error) {
        // /proc/self/fd/N reopens the file this descriptor holds, for writing, whatever the path names now.
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath("/proc/self/fd/\(file.rawDescriptor)"), .writeOnly, options: [.closeOnExec])
        } catch {
            throw .io(path: file.path, what: "open it for writing", errno: (error as? Errno)?.rawValue ?? EIO)
        }
        do {
            try fd.closeAfter {
                _ = try fd.writeAll(toAbsoluteOffset: 0, before)
                guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
            }
        } catch {
            throw .io(path: file.path, what: "write the saved header back", errno: (error as? Errno)?.rawValue ?? EIO)
        }
    }
}
