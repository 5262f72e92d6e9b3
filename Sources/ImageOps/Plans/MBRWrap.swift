import QCow2
import SystemPackage

import Glibc

/// `imgtool mbr-wrap`: a 16 KiB file with an MBR whose one partition starts at sector 32 and covers PARTITION
/// exactly, so `cat FILE PARTITION` (or a linear md array of the two) is a whole disk QEMU can boot.
public enum MBRWrap {
    /// The MBR file's size: 32 sectors.
    public static let headerBytes: UInt64 = 16384

    /// The 16 KiB of the MBR file for a partition of `size` bytes.
    public static func bytes(partitionSize size: UInt64, type: UInt8) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: Int(headerBytes))
        let sectors = UInt32(truncatingIfNeeded: size / 512)
        // A disk signature, so tools that key on it see a stable one.
        let sig: UInt32 = 0x696D_6774  // "imgt"
        for i in 0..<4 { b[440 + i] = UInt8(truncatingIfNeeded: sig >> (8 * UInt32(i))) }
        let e = 446
        b[e] = 0x80
        // CHS fields at their maximum: every current tool reads the LBA fields.
        b[e + 1] = 0xFE; b[e + 2] = 0xFF; b[e + 3] = 0xFF
        b[e + 4] = type
        b[e + 5] = 0xFE; b[e + 6] = 0xFF; b[e + 7] = 0xFF
        for i in 0..<4 { b[e + 8 + i] = UInt8(truncatingIfNeeded: UInt32(32) >> (8 * UInt32(i))) }
        for i in 0..<4 { b[e + 12 + i] = UInt8(truncatingIfNeeded: sectors >> (8 * UInt32(i))) }
        b[510] = 0x55
        b[511] = 0xAA
        return b
    }

    /// Checks and writes the MBR file; never overwrites. Returns the lines that join the two.
    public static func write(partition: String, out: String, type: UInt8, dryRun: Bool) throws(ChangeError) -> [String] {
        // Type 0 marks an unused entry: every reader would see no partition at all.
        guard type != 0 else {
            throw .refused(path: out, reason: "partition type 00 marks an empty entry, so the disk would have no partition",
                           hint: "--type 83 (Linux), or the type that matches the filesystem")
        }
        var st = stat()
        guard Sys.stat(partition, &st) == 0 else {
            let e = errno
            throw .refused(path: partition, reason: e == ENOENT || e == ENOTDIR ? "does not exist" : "cannot be read (\(Errno(rawValue: e).description))", hint: nil)
        }
        // A partition is a regular file or a block device; a folder's or a FIFO's size says nothing about a disk.
        let mode = st.st_mode & S_IFMT
        guard mode == S_IFREG || mode == S_IFBLK else {
            throw .refused(path: partition, reason: "is a \(mode == S_IFDIR ? "directory" : "special file"), not a partition or a file holding one", hint: nil)
        }
        var size = UInt64(max(st.st_size, 0))
        if mode == S_IFBLK {
            let fd = Sys.open(partition, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { size = UInt64(max(lseek(fd, 0, SEEK_END), 0)); close(fd) }
        }
        guard size > 0, size % 512 == 0 else {
            throw .refused(path: partition, reason: "is \(size) bytes, not a whole number of 512-byte sectors", hint: "pad it with truncate -s to a multiple of 512")
        }
        guard size / 512 <= UInt64(UInt32.max) - 32 else {
            throw .refused(path: partition, reason: "is larger than an MBR partition can describe (2 TiB)", hint: "use GPT")
        }
        try Operations.refuseFolderName(out)
        var lstatBuf = stat()
        if Sys.lstat(out, &lstatBuf) == 0 { throw .refused(path: out, reason: "already exists and imgtool does not overwrite", hint: "--out ANOTHER-FILE") }
        let q = Shell.operand
        let lines = [
            "# the two files as one disk (as root):",
            "a=$(losetup -f --show \(q(out))); b=$(losetup -f --show \(q(partition)))",
            "mdadm --build /dev/md0 --level=linear --raid-devices=2 \"$a\" \"$b\"",
            "# then boot /dev/md0; or, as a plain file: cat \(q(out)) \(q(partition)) > disk.raw",
        ]
        if dryRun { return ["would write \(out): 16 KiB, one partition of type \(MBR.hex(type)) at sector 32 covering \(size / 512) sectors"] + lines }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(
                FilePath(pathString: out), .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch {
            throw .refused(path: out, reason: "cannot be created (\(((error as? Errno) ?? .ioError).description))", hint: nil)
        }
        let created = FileIdentity.of(path: "/proc/self/fd/\(fd.rawValue)")
        do {
            try fd.closeAfter {
                _ = try fd.writeAll(bytes(partitionSize: size, type: type))
                guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
            }
        } catch {
            // Removed only while the name still names the file created here.
            if let created, let now = FileIdentity.of(path: out), now.device == created.device, now.inode == created.inode { Sys.unlink(out) }
            throw .refused(path: out, reason: "could not be written (\(((error as? Errno) ?? .ioError).description)); nothing was left behind", hint: nil)
        }
        return ["wrote \(out): 16 KiB, one partition of type \(MBR.hex(type)) at sector 32 covering \(size / 512) sectors"] + lines
    }
}
