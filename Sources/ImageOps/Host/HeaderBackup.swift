import QCow2
import SystemPackage

import Glibc

/// The header cluster saved before a header-only change (`fix-backing`, `rebase --unsafe`), so `undo` can put it
/// back. Saves live in `$IMGTOOL_STATE_DIR`, else `$XDG_STATE_HOME/imgtool/undo`, else `~/.local/state/imgtool/undo`,
/// one file per image named by device and inode (a rename of the image does not lose its save).
///
/// A save is written whole and fsynced as `DEV-INO.pending` before qemu-img starts; once qemu-img is done the header
/// it wrote is added and the save becomes `DEV-INO.hdr`. A pending save found later means imgtool was stopped in
/// between: `undo` then tells from the image which of the two headers it holds.
public struct HeaderBackup: Sendable, Equatable {
    /// What the change writes: the backing name and format asked of qemu-img. It lets `undo` recognise the header
    /// qemu-img wrote when imgtool was stopped before it could record it.
    public struct Intent: Sendable, Equatable {
        /// The backing name written ("" for none).
        public var backing: String
        /// The backing format recorded ("" for none).
        public var backingFormat: String
        /// For a repair (`qemu-img check -r leaks|all`): the mode. The save then holds every byte the repair may
        /// rewrite (see `RepairSave`), not only the header.
        public var repair: String?
        /// For a repair: save every byte of the file, guest data too (a repair of corrupted tables may free clusters
        /// they still reference, and QEMU discards freed clusters). Not written into the save: the regions say it.
        public var repairWholeFile = false

        /// The change as asked.
        public init(backing: String, backingFormat: String, repair: String? = nil) {
            (self.backing, self.backingFormat, self.repair) = (backing, backingFormat, repair)
        }

        /// A repair's intent.
        public static func repair(_ mode: String) -> Intent { Intent(backing: "", backingFormat: "", repair: mode) }
    }

    /// The image path when it was saved (for messages).
    public var path: String
    /// The image's device when it was saved: a save is put back only onto that file.
    public var device: UInt64
    /// The image's inode when it was saved.
    public var inode: UInt64
    /// The change asked of qemu-img.
    public var intent: Intent
    /// Bytes of cluster 0 before the change.
    public var before: [UInt8]
    /// File size before the change.
    public var sizeBefore: UInt64
    /// Bytes of cluster 0 after the change (empty while the save is pending).
    public var after: [UInt8]
    /// File size after the change.
    public var sizeAfter: UInt64
    /// Fingerprint of the metadata beyond the header before the change (see `MetadataFingerprint`).
    public var metaBefore: String
    /// Its fingerprint after the change (empty while the save is pending).
    public var metaAfter: String
    /// Why `undo` cannot put this header back, found when the change completed ("" when it can): the change
    /// rewrote more than the backing name.
    public var refusal: String
    /// How this save's fingerprints were taken (by its format version): `undo` takes the image's the same way.
    var encoding: MetadataFingerprint.Encoding
    /// A repair's save: every byte it may rewrite (nil for a header-only change).
    public var repair: RepairSave? = nil

    /// Why a save could not be made or used. Every case names the image; an errno is said in words.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
        /// No save for this image.
        case noSave(path: String, folder: String)
        /// The image holds neither header: putting the old one back could lose data.
        case changedSince(path: String, detail: String)
        /// The save file is damaged.
        case badSave(path: String, saveFile: String, field: String)
        /// The save could not be written before the change: nothing was changed.
        case cannotSave(path: String, folder: String, errno: Int32)
        /// Reading or writing the image failed.
        case io(path: String, what: String, errno: Int32)
        /// Another process holds the image.
        case inUse(path: String, holders: String)
        /// The path names a folder, FIFO, device or procfs file: no image, so nothing of it was saved.
        case notAFile(path: String, kind: String)
        /// No folder for saves: HOME, XDG_STATE_HOME and IMGTOOL_STATE_DIR are all unset (the change is refused).
        case noFolder(path: String)
        /// The save folder or file could have been written by another user, or is reached through a link: a
        /// change is refused before it writes (`changing`), undo refuses to use it.
        case unsafe(path: String, folder: String, reason: String, changing: Bool)
        /// The change rewrote more than the header: putting the old header back would damage the image.
        case notUndoable(path: String, reason: String, instead: [String])
        /// A repair's save could not be taken (too large, unreadable tables): nothing was changed.
        case cannotCapture(path: String, reason: String)

        public var description: String {
            switch self {
            case .noSave(let path, let folder):
                return "\(path): no saved header to put back (imgtool keeps them in \(folder))"
            case .changedSince(let path, let detail):
                return "\(path): \(detail); undo refused, the image is left as it is"
            case .badSave(let path, let f, let field):
                return "\(path): its saved header in \(f) is damaged (field \(field)); undo refused, the image is left as it is"
            case .cannotSave(let path, let folder, let e):
                return "\(path): could not save its header in \(folder) (\(Errno(rawValue: e).description)); nothing was changed"
                    + "\n  instead: free space there, or point IMGTOOL_STATE_DIR at a writable folder"
            case .io(let path, let what, let e):
                return "\(path): could not \(what) (\(Errno(rawValue: e).description))"
            case .inUse(let path, let holders):
                return "\(path) is in use by \(holders); nothing was changed (stop it first, then retry)"
            case .notAFile(let path, let kind):
                return "\(path): is a \(kind), not an image file; nothing to undo"
            case .cannotCapture(let path, let reason):
                return "\(path): what the repair may rewrite cannot be saved (\(reason)); nothing was changed"
            case .noFolder, .unsafe, .notUndoable:
                return ([headline] + details).joined(separator: "\n  ")
            }
        }

        public var headline: String {
            switch self {
            case .cannotSave(let path, let folder, let e):
                return "\(path): could not save its header in \(folder) (\(Errno(rawValue: e).description)); nothing was changed"
            case .noFolder(let path):
                return "\(path): no folder to save its header in (HOME, XDG_STATE_HOME and IMGTOOL_STATE_DIR are all unset); nothing was changed"
            case .unsafe(let path, let folder, let reason, true):
                return "\(path): its header cannot be saved safely in \(folder): \(reason); nothing was changed"
            case .unsafe(let path, let folder, let reason, false):
                return "\(path): the save in \(folder) cannot be trusted: \(reason); undo refused, the image is left as it is"
            case .notUndoable(let path, let reason, _):
                return "\(path): \(reason); undo refused, the image is left as it is"
            default:
                return description
            }
        }

        public var details: [String] {
            switch self {
            case .cannotSave: return ["instead: free space there, or point IMGTOOL_STATE_DIR at a writable folder"]
            case .noFolder: return ["instead: set HOME, or point IMGTOOL_STATE_DIR at a folder only you can write (mkdir -m 700 DIR)"]
            case .unsafe(_, _, _, true):
                return ["instead: point IMGTOOL_STATE_DIR at a folder only you can write (mkdir -m 700 DIR), reached through no symbolic link"]
            case .unsafe(_, _, _, false):
                return ["a save is used only when you own it and its folder, only you can write the folder, and no symbolic link leads to it"]
            case .notUndoable(_, _, let instead): return instead
            default: return []
            }
        }
    }

    /// The folder saves go to; nil when there is none (a change is then refused before it writes). Only absolute
    /// folders count: a relative one would move with the current folder, and `undo` run from elsewhere would find no
    /// save (the XDG spec says to ignore relative values too). With HOME unset too there is no folder: /tmp, the old
    /// fallback, is shared with every user, and a save another user can plant is one undo would write into the image.
    public static func directory() -> String? {
        if let d = env("IMGTOOL_STATE_DIR"), d.hasPrefix("/") { return d }
        if let x = env("XDG_STATE_HOME"), x.hasPrefix("/") { return x + "/imgtool/undo" }
        if let h = env("HOME"), h.hasPrefix("/") { return h + "/.local/state/imgtool/undo" }
        return nil
    }

    /// The folder, or words saying there is none, for messages.
    public static var directoryShown: String {
        directory() ?? "no folder (HOME, XDG_STATE_HOME and IMGTOOL_STATE_DIR are all unset)"
    }

    static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(pathCString: v)
        return s.isEmpty ? nil : s
    }

    /// The save file of a completed change to the file `id`.
    public static func saveFile(for id: FileIdentity) -> String { directoryShown + "/" + saveName(id.device, id.inode) }

    /// The save file of a change to `id` that is under way, or was stopped before it completed.
    public static func pendingFile(for id: FileIdentity) -> String { directoryShown + "/" + pendingName(id.device, id.inode) }

    static func saveName(_ device: UInt64, _ inode: UInt64) -> String { "\(device)-\(inode).hdr" }
    static func pendingName(_ device: UInt64, _ inode: UInt64) -> String { "\(device)-\(inode).pending" }

    /// How many bytes of the header a save of `file` holds: cluster 0 for qcow2; for QED 64 KiB of its header
    /// clusters, from which qemu-img writes at most the 64-byte header and the name.
    static func headerLength(_ file: ImageFile, size: UInt64) -> Int {
        Int(min(clusterBound(file), max(size, 512)))
    }

    /// The cluster size of a qcow2 `file` as its header says now (64 KiB for anything else): a save's regions are
    /// never longer, which bounds a save file before it is read.
    static func clusterBound(_ file: ImageFile) -> UInt64 {
        (try? QCow2Header.read(from: file))?.clusterSize ?? 65536
    }

    /// Reads the header a save holds of `file` (the whole of what a header-only change rewrites).
    static func headerBytes(_ file: ImageFile, size: UInt64) throws(Error) -> [UInt8] {
        do { return try file.read(at: 0, count: headerLength(file, size: size)) } catch {
            throw .io(path: file.path, what: "read its header", errno: errnoOf(error))
        }
    }

    static func errnoOf(_ error: ImageFile.Error) -> Int32 {
        switch error {
        case .io(_, _, let e), .unreadable(_, let e): return e
        default: return EIO
        }
    }

    /// The fingerprint of `file`'s metadata now, taken as `encoding` says, or `io` naming what could not be read.
    static func fingerprint(_ file: ImageFile, _ encoding: MetadataFingerprint.Encoding) throws(Error) -> String {
        do { return try MetadataFingerprint.of(file, encoding: encoding) } catch {
            throw .io(path: file.path, what: error.what, errno: error.errno)
        }
    }

    /// The save folder, checked (see `SaveFolder`); created when `changing`. Nil when it does not exist.
    static func folder(for image: String, changing: Bool) throws(Error) -> SaveFolder? {
        guard let dir = directory() else {
            if changing { throw .noFolder(path: image) }
            return nil
        }
        do { return try SaveFolder.open(dir, create: changing) } catch {
            if changing, error.errno != 0, error.errno != ELOOP, error.errno != ENOTDIR {
                throw .cannotSave(path: image, folder: dir, errno: error.errno)
            }
            throw .unsafe(path: image, folder: dir, reason: error.reason, changing: changing)
        }
    }

    /// For a dry run: throws what `begin` would (no folder, or one others could write or reached through a link),
    /// creating nothing. A folder not made yet passes when every folder above it does.
    public static func checkFolder(for image: String) throws(Error) {
        guard let dir = directory() else { throw .noFolder(path: image) }
        do { _ = try SaveFolder.open(dir, create: false) } catch {
            if error.errno != 0, error.errno != ELOOP, error.errno != ENOTDIR { return }
            throw .unsafe(path: image, folder: dir, reason: error.reason, changing: true)
        }
    }

    /// Writes this save as `name` in a checked folder (`replacing` another name there), or throws `cannotSave`.
    func store(as name: String, replacing old: String? = nil) throws(Error) {
        guard let folder = try Self.folder(for: path, changing: true) else { throw .noFolder(path: path) }
        do { try folder.write(encoded(), as: name, replacing: old) } catch {
            throw .cannotSave(path: path, folder: folder.path, errno: error.rawValue)
        }
    }

    /// Saves the header of the held `file` before a change, as a pending save: written whole and fsynced, or not at
    /// all (a failure leaves no file behind and throws). No safe folder: the change is refused here, before it writes.
    public static func begin(_ file: ImageFile, intent: Intent) throws(Error) -> HeaderBackup {
        guard let now = FileIdentity.of(fd: file) else { throw .io(path: file.path, what: "stat it", errno: errno) }
        var repair: RepairSave?
        if intent.repair != nil {
            do { repair = try RepairSave.capture(file, wholeFile: intent.repairWholeFile) } catch { throw .cannotCapture(path: file.path, reason: error.reason) }
        }
        let backup = HeaderBackup(path: file.path, device: file.stat.device, inode: file.stat.inode, intent: intent,
                                  before: try headerBytes(file, size: now.size), sizeBefore: now.size, after: [], sizeAfter: 0,
                                  metaBefore: try fingerprint(file, .zeroRuns), metaAfter: "", refusal: "", encoding: .zeroRuns, repair: repair)
        try backup.store(as: pendingName(file.stat.device, file.stat.inode))
        return backup
    }

    /// Records the header qemu-img wrote and what else it changed, and turns the pending save into the image's
    /// save. Returns the save file. When the change rewrote more than the backing name, `refusal` says so (and
    /// `undo` will refuse): the caller tells the user now, not at undo time.
    public mutating func complete(_ file: ImageFile) throws(Error) -> String {
        guard let now = FileIdentity.of(fd: file) else { throw .io(path: path, what: "stat it", errno: errno) }
        after = try Self.headerBytes(file, size: now.size)
        sizeAfter = now.size
        metaAfter = try Self.fingerprint(file, encoding)
        if var r = repair {
            r.digestAfter = RepairSave.digest(file, r.regions, oldSize: sizeBefore) ?? String(repeating: "0", count: 64)
            repair = r
            refusal = sizeAfter < sizeBefore ? "the repair cut the file from \(sizeBefore) to \(sizeAfter) bytes, and the save does not hold guest data past the new end" : ""
        } else {
            refusal = whyNotUndoable() ?? ""
        }
        try store(as: Self.saveName(device, inode), replacing: Self.pendingName(device, inode))
        return Self.saveFile(for: file.stat)
    }

    /// Drops the pending save of a change that did not happen.
    public func discard() {
        if let folder = try? Self.folder(for: path, changing: false) { folder.remove(Self.pendingName(device, inode)) }
    }

    /// True when `file` still holds exactly the header saved (and its size): the change left no trace.
    public func isUnchanged(_ file: ImageFile) -> Bool {
        if let repair {
            return RepairSave.digest(file, repair.regions, oldSize: sizeBefore) == repair.digestBefore
                && FileIdentity.of(fd: file)?.size == sizeBefore
        }
        guard let now = FileIdentity.of(fd: file), now.size == sizeBefore,
              let bytes = try? file.read(at: 0, count: before.count), bytes == before else { return false }
        return (try? Self.fingerprint(file, encoding)) == metaBefore
    }
}

extension FileIdentity {
    /// `fstat` of the file `file` holds, now (its size may have changed since it was opened).
    static func of(fd file: ImageFile) -> FileIdentity? {
        FileIdentity.of(path: "/proc/self/fd/\(file.rawDescriptor)")
    }
}
