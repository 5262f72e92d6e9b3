import SystemPackage

import Glibc

/// An image file opened read-only and read with `pread`: only the bytes asked for, never the whole file.
public final class ImageFile: Sendable {
    /// The path as the caller gave it (used in every message).
    public let path: String
    /// The open descriptor; closed when this object goes away.
    let fd: FileDescriptor
    /// What `fstat` said when the file was opened.
    public let stat: FileIdentity

    /// Errors from opening or reading a file.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        /// No file at the path.
        case missing(path: String)
        /// The file exists but we may not read it.
        case unreadable(path: String, errno: Int32)
        /// The path names a directory, socket or other thing that is not a disk image.
        case notAFile(path: String, kind: String)
        /// A read failed below us.
        case io(path: String, offset: UInt64, errno: Int32)

        public var description: String {
            switch self {
            case .missing(let path): return "\(path): no such file"
            case .unreadable(let path, let e): return "\(path): cannot be read (\(Errno(rawValue: e)))"
            case .notAFile(let path, let kind): return "\(path): is a \(kind), not an image file"
            case .io(let path, let offset, let e): return "\(path): read error at offset \(offset) (\(Errno(rawValue: e)))"
            }
        }
    }

    private init(path: String, fd: FileDescriptor, stat: FileIdentity) {
        self.path = path
        self.fd = fd
        self.stat = stat
    }

    deinit { try? fd.close() }

    /// Opens `path` read-only. Directories and other non-files are refused here so no caller reads one by mistake.
    /// Non-blocking, because a plain open of a FIFO waits for a writer forever (a scan must not hang on one); the
    /// flag changes nothing for the regular files and block devices that get past the check.
    /// `kernelFile` lets a caller that means to read the kernel's own files (`/proc/PID/cmdline`) past the check.
    public static func open(_ path: String, kernelFile: Bool = false) throws(Error) -> ImageFile {
        // Look before opening: opening a character device can act by itself (a watchdog arms, a tape rewinds), and
        // a hostile image can name one as its backing file. The check after opening still decides (the name may
        // change in between); this one only keeps us from opening what we would refuse anyway.
        let seen = FileIdentity.of(path: path)
        // FilePath drops a trailing "/", so "image/" would open "image"; the kernel resolves no file by that name
        // (ENOTDIR), and neither do we: a change would otherwise work out names relative to "image/" as a folder.
        if seen == nil, path.hasSuffix("/") { throw .missing(path: path) }
        if let seen, seen.kind != .regular, seen.kind != .blockDevice {
            throw .notAFile(path: path, kind: seen.kind.rawValue)
        }
        // Files of the kernel's pseudo file systems look regular to stat, but reading one can consume it
        // (/proc/kmsg eats the kernel log) or block; none is a disk image.
        if !kernelFile, seen.map({ PseudoFileSystem.mayHold(device: $0.device) }) ?? true,
           let fs = seen.map({ PseudoFileSystem.of(path: path, device: $0.device) }) ?? PseudoFileSystem.of(path: path) {
            throw .notAFile(path: path, kind: "file on \(fs)")
        }
        // open(2) on the name's exact bytes (`Sys.open`), not swift-system's `FileDescriptor.open(FilePath)`: making
        // and normalising a FilePath was a fifth of a chain layer's instructions (callgrind). A trailing "/" was
        // refused above, so the kernel sees the name FilePath would have given it.
        let raw = openRetrying(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard raw >= 0 else {
            let e = errno
            if e == ENOENT || e == ENOTDIR { throw .missing(path: path) }
            throw .unreadable(path: path, errno: e)
        }
        return try checked(path, FileDescriptor(rawValue: raw), kernelFile: kernelFile)
    }

    /// `open` for a name its folder listed as a regular file (`d_type`), as a folder walk meets it: the look before
    /// opening is left out (a third of a scan's syscalls), and `O_NOFOLLOW` keeps that safe: a name swapped for a
    /// symbolic link since the listing is not followed to a device but opened as `open` opens it, looked at first.
    /// What was opened is checked after opening as always.
    public static func open(listedRegular path: String) throws(Error) -> ImageFile {
        let raw = openRetrying(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW)
        guard raw >= 0 else {
            let e = errno
            if e == ELOOP { return try ImageFile.open(path) }
            if e == ENOENT || e == ENOTDIR { throw .missing(path: path) }
            throw .unreadable(path: path, errno: e)
        }
        return try checked(path, FileDescriptor(rawValue: raw), kernelFile: false)
    }

    /// open(2) again after a signal, as swift-system's open did (no `FilePath` to build for every image).
    private static func openRetrying(_ path: String, _ flags: Int32) -> Int32 {
        while true {
            let fd = Sys.open(path, flags)
            if fd >= 0 || errno != EINTR { return fd }
        }
    }

    /// The checks every open makes on what it opened: a regular file or block device, on no pseudo file system.
    private static func checked(_ path: String, _ fd: FileDescriptor, kernelFile: Bool) throws(Error) -> ImageFile {
        guard let identity = FileIdentity.of(fd) else {
            try? fd.close()
            throw .unreadable(path: path, errno: errno)
        }
        if !kernelFile, PseudoFileSystem.mayHold(device: identity.device), let fs = PseudoFileSystem.of(fd: fd.rawValue, device: identity.device) {
            try? fd.close()
            throw .notAFile(path: path, kind: "file on \(fs)")
        }
        switch identity.kind {
        case .regular, .blockDevice: break
        default:
            try? fd.close()
            throw .notAFile(path: path, kind: identity.kind.rawValue)
        }
        return ImageFile(path: path, fd: fd, stat: identity)
    }

    /// Reads up to `count` bytes at `offset`; fewer only at the end of the file.
    public func read(at offset: UInt64, count: Int) throws(Error) -> [UInt8] {
        guard count > 0 else { return [] }
        // Not zero-filled first: only the bytes the kernel wrote are kept (a chain reads 4 KiB a layer).
        var failure: Error?
        let buffer = [UInt8](unsafeUninitializedCapacity: count) { raw, initialized in
            do throws(Error) { initialized = try fill(UnsafeMutableRawBufferPointer(raw), at: offset) } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return buffer
    }

    /// Reads exactly `buffer.count` bytes at `offset`, zero-filling past the end of the file.
    public func readZeroFilled(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(Error) {
        let filled = try fill(buffer, at: offset)
        if filled < buffer.count {
            UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// pread until `buffer` is full or the file ends; returns how many bytes came.
    private func fill(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(Error) -> Int {
        var filled = 0
        while filled < buffer.count {
            guard offset <= UInt64(Int64.max) - UInt64(filled) else { break }
            let got: Int
            do {
                got = try fd.read(
                    fromAbsoluteOffset: Int64(offset) + Int64(filled),
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]),
                    retryOnInterrupt: true)
            } catch {
                throw .io(path: path, offset: offset, errno: errnoValue(error))
            }
            if got == 0 { break }
            filled += got
        }
        return filled
    }

    /// The descriptor's raw value, for `fcntl` lock queries that swift-system does not wrap.
    package var rawDescriptor: Int32 { fd.rawValue }
}

/// What `fstat` tells about a file: enough to tell two names of one file apart and to size it.
public struct FileIdentity: Sendable, Equatable, Hashable {
    /// The kind of file, as `st_mode` says.
    public enum Kind: String, Sendable {
        case regular = "regular file", directory, blockDevice = "block device", other = "special file"
    }
    /// Device number.
    public var device: UInt64
    /// Inode number.
    public var inode: UInt64
    /// Size in bytes (for a block device opened by `ImageFile`, the device's size; from a path alone, 0).
    public var size: UInt64
    /// Bytes allocated on disk (`st_blocks` × 512), what qemu-img calls actual-size.
    public var allocated: UInt64
    /// Kind of file.
    public var kind: Kind

    /// `fstat` of an open file. A block device's `st_size` is 0, so its size is asked of the device (a seek to its
    /// end, which leaves the descriptor's offset moved; every read here is a pread): a qcow2 on an LVM volume must
    /// probe and size as qemu-img does, not as an empty raw disk.
    static func of(_ fd: FileDescriptor) -> FileIdentity? {
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { return nil }
        var identity = FileIdentity(st)
        if identity.kind == .blockDevice {
            let end = lseek(fd.rawValue, 0, SEEK_END)
            if end > 0 { identity.size = UInt64(end) }
        }
        return identity
    }

    /// `stat` of a path, following links; nil when it cannot be had.
    public static func of(path: String) -> FileIdentity? {
        var st = stat()
        guard Sys.stat(path, &st) == 0 else { return nil }
        return FileIdentity(st)
    }

    init(_ st: stat) {
        device = UInt64(truncatingIfNeeded: st.st_dev)
        inode = UInt64(truncatingIfNeeded: st.st_ino)
        size = st.st_size > 0 ? UInt64(st.st_size) : 0
        allocated = st.st_blocks > 0 ? UInt64(st.st_blocks).multipliedReportingOverflow(by: 512).partialValue : 0
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFBLK: kind = .blockDevice
        default: kind = .other
        }
    }
}

/// The errno behind an error thrown by swift-system (EIO when it is something else).
func errnoValue(_ error: any Swift.Error) -> Int32 {
    (error as? Errno)?.rawValue ?? EIO
}
