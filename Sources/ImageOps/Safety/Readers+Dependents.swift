import QCow2

import Glibc

/// A walk of folders that never stops silently: every entry is read, one folder at a time (the walk keeps the
/// folders still to visit, never a listing), and whatever it could not look at (a folder that cannot be opened or
/// read to its end, an entry that cannot be looked at, a folder deeper than the bound) is returned, so a safety
/// check can refuse and a report can say so.
public enum FolderSearch {
    /// A place the search could not look into.
    public struct Unsearched: Sendable, Equatable {
        /// The folder or entry.
        public var path: String
        /// Why, in words.
        public var reason: String
    }

    /// How deep a recursive search follows folders: far beyond any real store. Deeper folders are reported, not
    /// skipped. (Symbolic links to folders are followed in a recursive search; a folder met twice is read once.)
    package static let depthBound = 256

    /// Calls `visit` with the path of every entry that is not a folder under `root`, and for every folder in it when
    /// `recursive` (down to `depthBound`), else only the entries of `root` itself. `limit`, when set by the user,
    /// stops the search after that many entries, reported as the folders not finished.
    package static func walk(_ root: String, recursive: Bool, limit: Int? = nil, _ visit: (String) -> Void) -> [Unsearched] {
        walk(root, recursive: recursive, limit: limit) { path, _ in visit(path) }
    }

    /// `walk`, telling `visit` too whether the folder listed the entry as a regular file (`d_type`): such a file
    /// can be opened without a look first (`ImageFile.open(listedRegular:)`).
    package static func walk(_ root: String, recursive: Bool, limit: Int? = nil, entries visit: (String, Bool) -> Void) -> [Unsearched] {
        var missed: [Unsearched] = []
        var budget = limit ?? Int.max
        var stack: [(String, Int)] = [(root, 0)]
        var seen = Set<FileKey>()
        while let (dir, depth) = stack.popLast() {
            if budget <= 0 { missed.append(Unsearched(path: dir, reason: "not searched: the limit of \(limit ?? 0) entries was reached")); continue }
            guard let handle = Sys.opendir(dir) else {
                missed.append(Unsearched(path: dir, reason: "cannot be read (\(errnoText()))"))
                continue
            }
            defer { closedir(handle) }
            // A folder reached twice (a symbolic link to a folder above or beside it, a bind mount) is read once:
            // links to folders are followed under a store, and this is what ends their loops.
            var dst = stat()
            if fstat(dirfd(handle), &dst) == 0,
               !seen.insert(FileKey(device: UInt64(truncatingIfNeeded: dst.st_dev), inode: UInt64(truncatingIfNeeded: dst.st_ino))).inserted {
                continue
            }
            while true {
                errno = 0
                guard let ent = readdir(handle) else {
                    // NULL with errno set: the listing broke off; the rest of the folder was not seen.
                    if errno != 0 { missed.append(Unsearched(path: dir, reason: "could not be read to its end (\(errnoText()))")) }
                    break
                }
                let name = Directory.name(ent)
                if name == "." || name == ".." { continue }
                if budget <= 0 {
                    missed.append(Unsearched(path: dir, reason: "not read to its end: the limit of \(limit ?? 0) entries was reached"))
                    break
                }
                budget -= 1
                let path = dir == "." ? name : (dir.hasSuffix("/") ? dir + name : dir + "/" + name)
                var isDir = ent.pointee.d_type == UInt8(DT_DIR)
                if ent.pointee.d_type == UInt8(DT_UNKNOWN) {
                    var st = stat()
                    guard Sys.lstat(path, &st) == 0 else {
                        missed.append(Unsearched(path: path, reason: "cannot be looked at (\(errnoText()))"))
                        continue
                    }
                    isDir = (st.st_mode & S_IFMT) == S_IFDIR
                    if (st.st_mode & S_IFMT) == S_IFLNK, recursive { isDir = Self.isFolder(following: path) }
                } else if ent.pointee.d_type == UInt8(DT_LNK), recursive {
                    // A store often links a folder of images from elsewhere: what it links is searched too (a
                    // dependent there is as endangered as one here).
                    isDir = Self.isFolder(following: path)
                }
                if isDir {
                    guard recursive else { continue }
                    if depth + 1 > depthBound {
                        missed.append(Unsearched(path: path, reason: "is more than \(depthBound) folders deep"))
                    } else {
                        stack.append((path, depth + 1))
                    }
                    continue
                }
                visit(path, ent.pointee.d_type == UInt8(DT_REG))
            }
        }
        return missed
    }

    /// True when `path`, its symbolic links followed, is a folder.
    static func isFolder(following path: String) -> Bool {
        var st = stat()
        return Sys.stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The image at `path`, or nil for a file that is no image; a file that may be one but cannot be read is
    /// added to `missed`.
    package static func image(at path: String, missed: inout [Unsearched]) -> ImageInfo? {
        do throws(ImageInfo.Error) { return try ImageInfo.read(path) } catch {
            switch error {
            case .file(.unreadable(_, let e)) where e != ENXIO, .file(.io(_, _, let e)):
                missed.append(.init(path: path, reason: "cannot be read (\(errnoText(e)))"))
            default: break
            }
            return nil
        }
    }
}

extension Readers {
    /// The file a backing name names on this host: the name itself, or the rest of a `file:` name (QEMU's file
    /// protocol, the same file); nil for any other protocol.
    static func localName(_ name: String) -> String? {
        if name.hasPrefix("file:") { return String(name.dropFirst(5)) }
        return BackingPath.isProtocol(name) ? nil : name
    }

    /// The images that read a changing layer through their backing link, and where the search could not look.
    public struct Dependents: Sendable, Equatable {
        /// The images backed by a changing layer, sorted.
        public var images: [String]
        /// What could not be looked at: an image there may be one of them.
        public var unsearched: [FolderSearch.Unsearched]

        /// True when every place was searched and nothing depends on the change.
        public var isClear: Bool { images.isEmpty && unsearched.isEmpty }
    }

    /// The images outside `ours` in `folders` (each folder itself) and under `store` (every folder below it) whose
    /// backing file is one of `changing`, matched by device and inode. Every entry is read; a file that looks like
    /// it could be an image but cannot be read is reported with the folders that could not be.
    package static func dependents(on changing: Set<FileKey>, excluding ours: Set<FileKey>, folders: [String], store: String?) -> Dependents {
        var images: [String] = []
        var unreadable: [FolderSearch.Unsearched] = []  // files; `missed` below gets the folders
        func look(_ path: String) {
            guard let other = FolderSearch.image(at: path, missed: &unreadable) else { return }
            guard !ours.contains(FileKey(other.identity)), let name = other.backingFilename, !images.contains(path) else { return }
            if let file = Self.localName(name) {
                guard let below = FileIdentity.of(path: BackingPath.resolve(file, relativeTo: path)),
                      changing.contains(FileKey(below)) else { return }
            } else if !name.hasPrefix("json:") {
                return  // nbd:, http: and the like: another host's data, never a layer here
            }
            // A `json:` name can name any file through any driver: imgtool does not resolve it, so the image may
            // read a changing layer and counts as a dependent (named; `--force` takes it), never as clear.
            images.append(path)
        }
        var missed: [FolderSearch.Unsearched] = []
        var folders = folders
        if let store {
            missed += FolderSearch.walk(store, recursive: true, look)
            folders.removeAll { $0 == Paths.absolute(store) }
        }
        for folder in Set(folders).sorted() { missed += FolderSearch.walk(folder, recursive: false, look) }
        return Dependents(images: images.sorted(), unsearched: missed + unreadable)
    }
}
