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
        /// For a repair's save: the bytes it puts back (nil for a header save).
        public var repairBytes: UInt64? = nil
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
        guard let folder = try folder(for: path, changing: false) else { throw .noSave(path: path, folder: directoryShown) }
        // A save holds a name, two header regions no longer than the image's cluster and a short text head: a file
        // larger than that is refused before anything is allocated for it.
        let cluster = clusterBound(file)
        // A repair's save holds its regions too (see `RepairSave`: bounded by its budget and region count).
        let bound = Int(2 * cluster + 8192 + RepairSave.budget + UInt64(RepairSave.maxRegions) * 17)
        // A pending save belongs to a later change than a completed one: it is looked at first.
        let pending = pendingName(file.stat.device, file.stat.inode), done = saveName(file.stat.device, file.stat.inode)
        var name = pending
        var bytes: [UInt8]?
        do {
            bytes = try folder.read(pending, bound: bound)
            if bytes == nil { (name, bytes) = (done, try folder.read(done, bound: bound)) }
        } catch {
            throw .unsafe(path: path, folder: folder.path, reason: error.reason, changing: false)
        }
        guard let bytes else { throw .noSave(path: path, folder: folder.path) }
        let saveFile = folder.path + "/" + name
        let save = try decode(bytes, image: path, file: saveFile, bound: cluster)
        guard save.device == file.stat.device, save.inode == file.stat.inode else {
            throw .changedSince(path: path, detail: "the save in \(saveFile) was taken from another file (device \(save.device), inode \(save.inode))")
        }
        let found = try save.repair == nil ? save.classify(file) : save.classifyRepair(file)
        let result = UndoResult(found: found, saveFile: saveFile, repairBytes: save.repair?.savedBytes)
        if dryRun { return result }
        if found != .neverLanded { try save.putBack(file) }
        folder.remove(name)
        return result
    }

    /// Which header `file` holds, or why undo must not touch it. The header is put back only when the change wrote
    /// nothing but the backing name (fields compared, and the metadata fingerprint the same before and after) and
    /// nothing has changed the image since (header bytes, size and metadata as the change left them).
    func classify(_ file: ImageFile) throws(Error) -> Found {
        guard let now = FileIdentity.of(fd: file) else { throw .io(path: path, what: "stat it", errno: errno) }
        let count = max(before.count, after.count)
        let bytes: [UInt8]
        do { bytes = try file.read(at: 0, count: count) } catch { throw .io(path: file.path, what: "read its header", errno: EIO) }
        let meta = try Self.fingerprint(file, encoding)
        if bytes.prefix(before.count) == before[...] && now.size == sizeBefore && meta == metaBefore { return .neverLanded }
        if !after.isEmpty {
            if !refusal.isEmpty { throw .notUndoable(path: file.path, reason: refusal, instead: instead()) }
            guard bytes.prefix(after.count) == after[...] else {
                throw .changedSince(path: file.path, detail: "its header is neither the one imgtool wrote nor the one it saved: it changed after imgtool's last change")
            }
            guard now.size == sizeAfter else {
                throw .changedSince(path: file.path, detail: "its size is \(now.size) bytes, imgtool left it at \(sizeAfter): it changed after imgtool's last change")
            }
            guard meta == metaAfter else {
                throw .changedSince(path: file.path, detail: "its refcounts, L1 table or bitmaps changed after imgtool's last change")
            }
            return .changed
        }
        let header = Array(bytes.prefix(before.count))
        guard now.size == sizeBefore, Self.isIntended(before: before, now: header, intent: intent) else {
            throw .changedSince(path: file.path, detail: "imgtool was stopped during a change, and the header is neither the saved one nor the one that change writes (backing \(intent.backing.isEmpty ? "none" : intent.backing))")
        }
        guard meta == metaBefore else {
            throw .notUndoable(path: file.path, reason: "imgtool was stopped during a change, and qemu-img had rewritten more than the header (refcounts, L1 table or bitmaps)", instead: instead())
        }
        return .changedUnrecorded
    }

    /// Why the completed change cannot be undone, or nil: qemu-img changed metadata beyond the header, or header
    /// fields other than the backing name and format.
    func whyNotUndoable() -> String? {
        let bitmaps = Self.parse(before)?.bitmaps != nil
        if metaAfter != metaBefore || !Self.isIntended(before: before, now: after, intent: intent) {
            if bitmaps {
                return "the image has persistent dirty bitmaps, which qemu-img stores anew in other clusters whenever it opens the image for writing: putting back only the old header would leave tables that point at freed clusters"
            }
            if Self.parse(before)?.isDirty == true {
                return "the image was not closed cleanly (dirty bit), so qemu-img repaired its refcounts when it opened it: putting back only the old header would undo the repair"
            }
            return "more than the backing name changed while the header was rewritten (\(metaAfter != metaBefore ? "refcounts, L1 table or bitmaps" : changedFields())): putting back only the old header could damage the image"
        }
        return nil
    }

    /// The header fields other than the backing name that differ between `before` and `after`, in words.
    func changedFields() -> String {
        guard let a = Self.parse(before), let b = Self.parse(after) else {
            let qa = ByteWindow(before).u64LE(16), qb = ByteWindow(after).u64LE(16)
            if let qa, let qb, (qa ^ qb) & 2 != 0 { return "the need-check bit, cleared by qemu-img's repair" }
            return "other header fields"
        }
        var names: [String] = []
        if a.incompatibleFeatures != b.incompatibleFeatures { names.append("incompatible feature bits") }
        if a.compatibleFeatures != b.compatibleFeatures { names.append("compatible feature bits") }
        if a.autoclearFeatures != b.autoclearFeatures { names.append("autoclear feature bits \(a.autoclearFeatures) to \(b.autoclearFeatures)") }
        if a.bitmaps != b.bitmaps { names.append("bitmap extension") }
        if a.dataFile != b.dataFile || a.cryptoHeader != b.cryptoHeader { names.append("header extensions") }
        return names.isEmpty ? "other header fields" : names.joined(separator: ", ")
    }

    /// What to do instead of undo: repoint the image at its old backing file through qemu-img, which keeps every
    /// table consistent.
    func instead() -> [String] {
        let old = Self.oldBacking(before)
        guard let old, !old.name.isEmpty else {
            return ["to go back, remove the backing link through qemu-img: qemu-img rebase -u -b '' \(Shell.quote(path))"]
        }
        let format = old.format.isEmpty ? "" : " -F \(Shell.quote(old.format))"
        return ["to go back, repoint it at its old backing file through qemu-img: imgtool fix-backing \(Shell.quote(path)) --to \(Shell.quote(BackingPath.resolve(old.name, relativeTo: path)))",
                "(or, to write the old name as it was: qemu-img rebase -u -b \(Shell.quote(old.name))\(format) \(Shell.quote(path)))"]
    }

    /// The backing name and format a saved header records (qcow2 or QED).
    static func oldBacking(_ header: [UInt8]) -> (name: String, format: String)? {
        if let h = parse(header) { return (h.backingFile ?? "", h.backingFormat ?? "") }
        let w = ByteWindow(header)
        guard w.starts(with: [0x51, 0x45, 0x44, 0x00]), let features = w.u64LE(16), let offset = w.u32LE(56), let size = w.u32LE(60) else { return nil }
        guard features & 1 != 0 else { return ("", "") }
        guard let name = w.slice(Int(offset), Int(size)) else { return nil }
        return (decodeText(name), features & 4 != 0 ? "raw" : "")
    }

    /// True when `now` is `before` with exactly the change asked of qemu-img made: the backing name and format as
    /// intended and every other field of the header as it was. qemu-img rewrites the header whole (it may move the
    /// name and add its feature-name table), so fields are compared, not bytes. Only qcow2 can be told this way.
    static func isIntended(before: [UInt8], now: [UInt8], intent: Intent) -> Bool {
        guard var old = parse(before), let new = parse(now) else { return isIntendedQED(before: before, now: now, intent: intent) }
        guard (new.backingFile ?? "") == intent.backing, (new.backingFormat ?? "") == intent.backingFormat else { return false }
        old.backingFile = new.backingFile
        old.backingFormat = new.backingFormat
        old.backingFileOffset = new.backingFileOffset
        old.backingFileSize = new.backingFileSize
        old.headerLength = new.headerLength
        old.featureNames = new.featureNames
        return old == new
    }

    /// The same for QED: the 64-byte header alike but for the backing name's place and its two feature bits
    /// (backing file, backing format raw); a need-check bit cleared by qemu-img's repair is a difference.
    static func isIntendedQED(before: [UInt8], now: [UInt8], intent: Intent) -> Bool {
        let a = ByteWindow(before), b = ByteWindow(now)
        guard a.starts(with: [0x51, 0x45, 0x44, 0x00]), let fa = a.u64LE(16), let fb = b.u64LE(16),
              let head = a.slice(0, 16), let tail = a.slice(24, 32) else { return false }
        guard b.slice(0, 16) == head, b.slice(24, 32) == tail, fa & ~UInt64(5) == fb & ~UInt64(5) else { return false }
        guard let name = oldBacking(now) else { return false }
        return name.name == intent.backing
    }

    static func parse(_ bytes: [UInt8]) -> QCow2Header? { try? QCow2Header.parseForFuzzing(bytes) }

    /// Which state a repaired `file` is in, or why undo must not touch it. The saved regions are put back only when
    /// the file reads exactly as the repair left it (every byte the save covers, anything past the old end, its size
    /// and its metadata fingerprint), or when imgtool was stopped during the repair (qemu-img writes nothing else).
    func classifyRepair(_ file: ImageFile) throws(Error) -> Found {
        guard let repair, let now = FileIdentity.of(fd: file) else { throw .io(path: path, what: "stat it", errno: errno) }
        let digest = RepairSave.digest(file, repair.regions, oldSize: sizeBefore)
        if now.size == sizeBefore && digest == repair.digestBefore { return .neverLanded }
        guard !repair.digestAfter.isEmpty else { return .changedUnrecorded }
        if !refusal.isEmpty { throw .notUndoable(path: file.path, reason: refusal, instead: []) }
        guard now.size == sizeAfter else {
            throw .changedSince(path: file.path, detail: "its size is \(now.size) bytes, the repair left it at \(sizeAfter): it changed after the repair")
        }
        guard digest == repair.digestAfter, try Self.fingerprint(file, encoding) == metaAfter else {
            throw .changedSince(path: file.path, detail: "its metadata or unreferenced clusters changed after the repair")
        }
        return .changed
    }

    /// Writes the saved header over cluster 0 of the very file `file` holds, and fsyncs it; for a repair, every saved
    /// region, and the file cut back to its old size.
    func putBack(_ file: ImageFile) throws(Error) {
        // /proc/self/fd/N reopens the file this descriptor holds, for writing, whatever the path names now.
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath("/proc/self/fd/\(file.rawDescriptor)"), .writeOnly, options: [.closeOnExec])
        } catch {
            throw .io(path: file.path, what: "open it for writing", errno: (error as? Errno)?.rawValue ?? EIO)
        }
        if let repair {
            defer { try? fd.close() }
            do { try repair.putBack(fd, size: sizeBefore, blockDevice: file.stat.kind == .blockDevice) } catch {
                throw .io(path: file.path, what: "write the saved clusters back", errno: error.rawValue)
            }
            return
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

extension HeaderBackup {
    /// For the dry run: a note when qemu-img is known to rewrite more than the header of `file` when it opens it for
    /// writing, so `undo` will not be able to put the old header back. Nil when nothing is known against it.
    public static func undoWarning(_ file: ImageFile) -> String? {
        if let h = try? QCow2Header.read(from: file) {
            if h.bitmaps != nil {
                return "note: \(file.path) has persistent dirty bitmaps, which qemu-img stores anew whenever it opens the image for writing: imgtool undo will not be able to put the old header back"
            }
            if h.isDirty {
                return "note: \(file.path) was not closed cleanly (dirty bit): qemu-img repairs it when it opens it for writing, and imgtool undo will not be able to put the old header back"
            }
            return nil
        }
        guard let head = try? file.read(at: 0, count: 64), let features = ByteWindow(head).u64LE(16),
              head.starts(with: [0x51, 0x45, 0x44, 0x00]), features & 2 != 0 else { return nil }
        return "note: \(file.path) was not closed cleanly (QED need-check): qemu-img repairs it when it opens it for writing, and imgtool undo will not be able to put the old header back"
    }
}
