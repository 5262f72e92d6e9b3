// Each layout as the filesystem's own tools write it; offsets are from the filesystem's start.
extension FilesystemSize {
    /// ext2/3/4 (e2fsprogs lib/ext2fs/ext2_fs.h): the superblock at 1024; s_magic 0xEF53 at +0x38; size
    /// s_blocks_count_lo (+0x04) | s_blocks_count_hi (+0x150, only with INCOMPAT_64BIT) << 32, times
    /// 1024 << s_log_block_size (+0x18; at most 6, 64 KiB blocks). The count includes block 0.
    static func ext(_ w: ByteWindow, _ start: UInt64) throws(Error) -> FilesystemSize? {
        let sb = 1024
        guard w.u16LE(sb + 0x38) == 0xEF53, let log = w.u32LE(sb + 0x18), let lo = w.u32LE(sb + 0x04),
              let compat = w.u32LE(sb + 0x5C), let incompat = w.u32LE(sb + 0x60) else { return nil }
        let name = incompat & (0x40 | 0x80 | 0x200) != 0 ? "ext4" : (compat & 0x4 != 0 ? "ext3" : "ext2")
        guard log <= 6 else {
            throw .invalidField(filesystem: name, field: "s_log_block_size", offset: at(start, sb + 0x18), reason: "is \(log), past 64 KiB blocks")
        }
        var blocks = UInt64(lo)
        if incompat & 0x80 != 0 {
            guard let hi = w.u32LE(sb + 0x150) else { return nil }
            blocks |= UInt64(hi) << 32
        }
        return .init(name: name, bytes: try product(blocks, 1024 << UInt64(log), name, "s_blocks_count", at(start, sb + 0x04)), exact: true)
    }

    /// XFS (xfsprogs libxfs/xfs_format.h): "XFSB" at 0, big-endian sb_blocksize (+4) and sb_dblocks (+8).
    static func xfs(_ w: ByteWindow, _ start: UInt64) throws(Error) -> FilesystemSize? {
        guard w.starts(with: Array("XFSB".utf8)), let bs = w.u32BE(4), let blocks = w.u64BE(8) else { return nil }
        guard bs >= 512, bs <= 65536, bs & (bs - 1) == 0 else {
            throw .invalidField(filesystem: "xfs", field: "sb_blocksize", offset: at(start, 4), reason: "is \(bs), not a power of two from 512 to 65536")
        }
        return .init(name: "xfs", bytes: try product(blocks, UInt64(bs), "xfs", "sb_dblocks", at(start, 8)), exact: true)
    }

    /// btrfs (kernel fs/btrfs/ctree.h, struct btrfs_super_block): at 0x10000, magic "_BHRfS_M" at +0x40,
    /// total_bytes at +0x70 (the whole filesystem's), num_devices at +0x88, dev_item.total_bytes at +0xD1 (this
    /// device's share: the one that counts when the filesystem spans several devices).
    static func btrfs(_ w: ByteWindow, _ start: UInt64) throws(Error) -> FilesystemSize? {
        let sb = 0x10000
        guard w.starts(with: Array("_BHRfS_M".utf8), at: sb + 0x40), let total = w.u64LE(sb + 0x70),
              let devices = w.u64LE(sb + 0x88), let device = w.u64LE(sb + 0xD1) else { return nil }
        return .init(name: "btrfs", bytes: devices > 1 ? device : total, exact: true)
    }

    /// NTFS (ntfs-3g include/ntfs-3g/bootsect.h): "NTFS    " at 3, bytes_per_sector (+0x0B), number_of_sectors
    /// (+0x28). mkntfs keeps the backup boot sector in the sector after the volume: it must stay too.
    static func ntfs(_ w: ByteWindow, _ start: UInt64) throws(Error) -> FilesystemSize? {
        guard w.starts(with: Array("NTFS    ".utf8), at: 3), let bps = w.u16LE(0x0B), let sectors = w.u64LE(0x28) else { return nil }
        guard bps >= 256, bps <= 4096, bps & (bps - 1) == 0 else {
            throw .invalidField(filesystem: "ntfs", field: "bytes_per_sector", offset: at(start, 0x0B), reason: "is \(bps), not a power of two from 256 to 4096")
        }
        let (withBackup, o) = sectors.addingReportingOverflow(1)
        guard !o else { throw .invalidField(filesystem: "ntfs", field: "number_of_sectors", offset: at(start, 0x28), reason: "gives a size past 2^64") }
        return .init(name: "ntfs", bytes: try product(withBackup, UInt64(bps), "ntfs", "number_of_sectors", at(start, 0x28)), exact: true)
    }

    /// FAT12/16/32 (the BPB, as dosfstools' mkfs.fat writes it): a jump at 0, BPB_BytsPerSec (+0x0B),
    /// BPB_SecPerClus (+0x0D), BPB_NumFATs (+0x10), BPB_TotSec16 (+0x13) or else BPB_TotSec32 (+0x20), and the type
    /// text "FAT" at +0x36 (FAT12/16) or +0x52 (FAT32), which tells it from a partition table's boot code.
    static func fat(_ w: ByteWindow, _ start: UInt64) throws(Error) -> FilesystemSize? {
        guard let j = w.u8(0), j == 0xEB || j == 0xE9, w.starts(with: Array("FAT".utf8), at: 0x36) || w.starts(with: Array("FAT".utf8), at: 0x52),
              let bps = w.u16LE(0x0B), let spc = w.u8(0x0D), let fats = w.u8(0x10),
              let t16 = w.u16LE(0x13), let t32 = w.u32LE(0x20) else { return nil }
        guard [512, 1024, 2048, 4096].contains(bps), spc != 0, spc & (spc &- 1) == 0, fats != 0 else { return nil }
        let sectors = t16 != 0 ? UInt64(t16) : UInt64(t32)
        return .init(name: "vfat", bytes: try product(sectors, UInt64(bps), "vfat", "BPB_TotSec", at(start, t16 != 0 ? 0x13 : 0x20)), exact: true)
    }

    /// Linux swap (util-linux include/swapheader.h): "SWAPSPACE2" in the last 10 bytes of the first page (4 to 64
    /// KiB pages), version (1) at +1024, last_page at +1028, in the writer's byte order. Size (last_page + 1) pages.
    static func swap(_ w: ByteWindow, _ start: UInt64) throws(Error) -> FilesystemSize? {
        for page in [4096, 8192, 16384, 65536] where w.starts(with: Array("SWAPSPACE2".utf8), at: page - 10) {
            guard let le = w.u32LE(1024), let be = w.u32BE(1024) else { return nil }
            guard let last = le == 1 ? w.u32LE(1028) : (be == 1 ? w.u32BE(1028) : nil) else {
                throw .invalidField(filesystem: "swap", field: "version", offset: at(start, 1024), reason: "is \(le), not 1")
            }
            return .init(name: "swap", bytes: try product(UInt64(last) + 1, UInt64(page), "swap", "last_page", at(start, 1028)), exact: true)
        }
        return nil
    }

    /// LVM2 physical volume (lvm2 lib/format_text/layout.h): a label_header "LABELONE" in one of the first four
    /// sectors, its own sector number (+8), offset_xl (+20) of the pv_header in that sector, type "LVM2 001" (+24);
    /// the pv_header is a 32-byte UUID then device_size_xl, the PV's size in bytes.
    static func lvm2(_ w: ByteWindow, _ start: UInt64) throws(Error) -> FilesystemSize? {
        for sector in 0..<4 {
            let s = sector * 512
            guard w.starts(with: Array("LABELONE".utf8), at: s), w.u64LE(s + 8) == UInt64(sector),
                  w.starts(with: Array("LVM2 001".utf8), at: s + 24), let offset = w.u32LE(s + 20) else { continue }
            guard offset >= 32, offset <= 512 - 40, let size = w.u64LE(s + Int(offset) + 32) else {
                throw .invalidField(filesystem: "LVM2_member", field: "offset_xl", offset: at(start, s + 20), reason: "is \(w.u32LE(s + 20) ?? 0), outside its sector")
            }
            guard size > 0 else {
                throw .invalidField(filesystem: "LVM2_member", field: "device_size_xl", offset: at(start, s + Int(offset) + 32), reason: "is 0")
            }
            return .init(name: "LVM2_member", bytes: size, exact: true)
        }
        return nil
    }
}
