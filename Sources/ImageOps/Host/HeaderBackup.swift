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

        /// The change as asked.
        public init(backing: String, backingFormat: String) {
            (self.backing, self.backingFormat) = (backing, backingFormat)
        }
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
            }
        }

        public var headline: String {
            if case .cannotSave(let path, let folder, let e) = self {
                return "\(path): could not save its header in \(folder) (\(Errno(rawValue: e).description)); nothing was changed"
            }
            return description
        }

        public var details: [String] {
            if case .cannotSave = self { return ["instead: free space there, or point IMGTOOL_STATE_DIR at a writable folder"] }
            return []
        }
    }

    /// The folder saves go to. Only absolute folders count: a relative one would move with the current folder, and
    /// `undo` run from elsewhere would find no save (the XDG spec says to ignore relative values too).
    public static func directory() -> String {
        if let d = env("IMGTOOL_STATE_DIR"), d.hasPrefix("/") { return d }
        if let x = env("XDG_STATE_HOME"), x.hasPrefix("/") { return x + "/imgtool/undo" }
        return (env("HOME") ?? "/tmp") + "/.local/state/imgtool/undo"
    }

    static func env(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(pathCString: v)
        return s.isEmpty ? nil : s
    }

    /// The save file of a completed change to the file `id`.
    public static func saveFile(for id: FileIdentity) -> String { saveFile(id.device, id.inode) }

    /// The save file of a change to `id` that is under way, or was stopped before it completed.
    public static func pendingFile(for id: FileIdentity) -> String { pendingFile(id.device, id.inode) }

    static func saveFile(_ device: UInt64, _ inode: UInt64) -> String { directory() + "/\(device)-\(inode).hdr" }
    static func pendingFile(_ device: UInt64, _ inode: UInt64) -> String { directory() + "/\(device)-\(inode).pending" }

    /// Reads cluster 0 of `file` (the whole of what a header-only change rewrites).
    static func headerBytes(_ file: ImageFile) throws(Error) -> [UInt8] {
        let info: ImageInfo
        do { info = try ImageInfo.read(file) } catch { throw .io(path: file.path, what: "read its header", errno: EIO) }
        // qcow2 rewrites within cluster 0; QED within its header clusters, from which qemu-img writes at most the
        // 64-byte header and the name, so 64 KiB (QED's default header) covers it.
        let length = Int(min(info.qcow2?.clusterSize ?? 65536, max(file.stat.size, 512)))
        do { return try file.read(at: 0, count: length) } catch {
            throw .io(path: file.path, what: "read its header", errno: errnoOf(error))
        }
    }

    private static func errnoOf(_ error: ImageFile.Error) -> Int32 {
        switch error {
        case .io(_, _, let e), .unreadable(_, let e): return e
        default: return EIO
        }
    }

    /// Saves the header of the held `file` before a change, as a pending save: written whole and fsynced, or not at
    /// all (a failure leaves no file behind and throws `cannotSave`).
    public static func begin(_ file: ImageFile, intent: Intent) throws(Error) -> HeaderBackup {
        let backup = HeaderBackup(path: file.path, device: file.stat.device, inode: file.stat.inode, intent: intent,
                                  before: try headerBytes(file), sizeBefore: file.stat.size, after: [], sizeAfter: 0)
        try SaveFile.write(backup.encoded(), to: pendingFile(for: file.stat), image: file.path)
        return backup
    }

    /// Records the header qemu-img wrote and turns the pending save into the image's save. Returns the save file.
    public mutating func complete(_ file: ImageFile) throws(Error) -> String {
        guard let now = FileIdentity.of(fd: file) else { throw .io(path: path, what: "stat it", errno: errno) }
        after = try Self.headerBytes(file)
        sizeAfter = now.size
        let done = Self.saveFile(for: file.stat)
        try SaveFile.write(encoded(), to: done, image: path, replacing: Self.pendingFile(for: file.stat))
        return done
    }

    /// Drops the pending save of a change that did not happen.
    public func discard() {
        SaveFile.remove(Self.pendingFile(device, inode))
    }

    /// True when `file` still holds exactly the header saved (and its size): the change left no trace.
    public func isUnchanged(_ file: ImageFile) -> Bool {
        guard let now = FileIdentity.of(fd: file), now.size == sizeBefore,
              let bytes = try? file.read(at: 0, count: before.count) else { return false }
        return bytes == before
    }
}

extension FileIdentity {
    /// `fstat` of the file `file` holds, now (its size may have changed since it was opened).
    static func of(fd file: ImageFile) -> FileIdentity? {
        FileIdentity.of(path: "/proc/self/fd/\(file.rawDescriptor)")
    }
}
