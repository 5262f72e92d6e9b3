/// The other labels `sfdisk` reads (util-linux libfdisk's sun.c, sgi.c, bsd.c): the numbers, types and sizes it
/// lists, so `partitions` and `offset` agree with it on disks from SPARC and MIPS machines and bare BSD disks.
enum OtherLabels {
    /// `type` as sfdisk prints it for these labels: lower-case hex without leading zeros.
    static func code<T: BinaryInteger>(_ t: T) -> String { String(t, radix: 16) }

    static func entry(_ n: Int, type: String, name: String, start: UInt64, sectors: UInt64) -> PartitionTable.Partition {
        PartitionTable.Partition(
            number: n, type: type, typeName: name, bootable: false, logical: false, extended: false,
            startSector: start, sectors: sectors, name: nil, uuid: nil)
    }

    static func beyond(_ p: PartitionTable.Partition, _ diskSize: UInt64) -> String? {
        p.end(512) > diskSize ? "partition \(p.number) ends at byte \(p.end(512)), beyond the disk's \(diskSize)" : nil
    }

    // MARK: Sun (SPARC VTOC): big-endian, in sector 0, magic 0xDABE at 508.

    static let sunNames: [UInt16: String] = [
        0x00: "Unassigned", 0x01: "Boot", 0x02: "SunOS root", 0x03: "SunOS swap", 0x04: "SunOS usr", 0x05: "Whole disk",
        0x06: "SunOS stand", 0x07: "SunOS var", 0x08: "SunOS home", 0x09: "SunOS alt sectors", 0x0A: "SunOS cachefs",
        0x0B: "SunOS reserved", 0x82: "Linux swap", 0x83: "Linux native", 0x8E: "Linux LVM", 0xFD: "Linux raid autodetect",
    ]

    static func isSun(_ s: [UInt8]) -> Bool { ByteWindow(s).u16BE(508) == 0xDABE }

    static func sun(_ s: [UInt8], diskSize: UInt64) -> PartitionTable {
        let w = ByteWindow(s)
        var t = PartitionTable(kind: "sun", sectorSize: 512, diskSize: diskSize, partitions: [], warnings: [])
        // The label's 256 big-endian words XOR to zero. libfdisk still names a label whose sum is wrong, and lists
        // nothing from it: so do we, and say why.
        var sum: UInt16 = 0
        for i in stride(from: 0, to: 512, by: 2) { sum ^= w.u16BE(i) ?? 0 }
        guard sum == 0 else {
            t.warnings.append("the Sun label's checksum is wrong; its partitions are not read (sfdisk ignores them too)")
            return t
        }
        // Partitions start on cylinder boundaries: the geometry that converts them lives in the label itself.
        let heads = UInt64(w.u16BE(436) ?? 0), sectorsPerTrack = UInt64(w.u16BE(438) ?? 0)
        for i in 0..<8 {
            let cylinder = UInt64(w.u32BE(444 + 8 * i) ?? 0), count = UInt64(w.u32BE(448 + 8 * i) ?? 0)
            guard count != 0 else { continue }
            let tag = w.u16BE(142 + 4 * i) ?? 0
            let (a, o1) = cylinder.multipliedReportingOverflow(by: heads)
            let (start, o2) = a.multipliedReportingOverflow(by: sectorsPerTrack)
            let p = entry(i + 1, type: code(tag), name: sunNames[tag] ?? "Unknown", start: o1 || o2 ? UInt64.max : start, sectors: count)
            if let b = beyond(p, diskSize) { t.warnings.append(b) }
            t.partitions.append(p)
        }
        return t
    }

    // MARK: SGI (IRIX volume header): big-endian, magic 0x0BE5A941 at 0, 16 partitions at 312.

    static let sgiNames: [UInt32: String] = [
        0x00: "SGI volhdr", 0x01: "SGI trkrepl", 0x02: "SGI secrepl", 0x03: "SGI raw", 0x04: "SGI bsd", 0x05: "SGI sysv",
        0x06: "SGI volume", 0x07: "SGI efs", 0x08: "SGI lvol", 0x09: "SGI rlvol", 0x0A: "SGI xfs", 0x0B: "SGI xfslog",
        0x0C: "SGI xlv", 0x0D: "SGI xvm", 0x82: "Linux swap", 0x83: "Linux native", 0x8E: "Linux LVM", 0xFD: "Linux RAID",
    ]

    static func isSGI(_ s: [UInt8]) -> Bool { ByteWindow(s).u32BE(0) == 0x0BE5_A941 }

    static func sgi(_ s: [UInt8], diskSize: UInt64) -> PartitionTable {
        let w = ByteWindow(s)
        var t = PartitionTable(kind: "sgi", sectorSize: 512, diskSize: diskSize, partitions: [], warnings: [])
        // The 128 big-endian words sum to zero; libfdisk only warns when they do not, and reads on.
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 512, by: 4) { sum = sum &+ (w.u32BE(i) ?? 0) }
        if sum != 0 { t.warnings.append("the SGI label's checksum is wrong (sfdisk reads it anyway, and so do we)") }
        for i in 0..<16 {
            let o = 312 + 12 * i
            let count = UInt64(w.u32BE(o) ?? 0), start = UInt64(w.u32BE(o + 4) ?? 0), type = w.u32BE(o + 8) ?? 0
            guard count != 0 else { continue }
            let p = entry(i + 1, type: code(type), name: sgiNames[type] ?? "Unknown", start: start, sectors: count)
            if let b = beyond(p, diskSize) { t.warnings.append(b) }
            t.partitions.append(p)
        }
        return t
    }

    // MARK: BSD disklabel on a bare disk: little-endian (x86), at byte 512, magic 0x82564557 twice.

    static let bsdNames: [UInt8: String] = [
        0: "unused", 1: "swap", 2: "Version 6", 3: "Version 7", 4: "System V", 5: "4.1BSD", 6: "Eighth Edition",
        7: "4.2BSD", 8: "ext2", 9: "4.4LFS", 10: "unknown", 11: "HPFS", 12: "ISO-9660", 13: "boot", 14: "ADOS",
        15: "HFS", 16: "AdvFS",
    ]

    static func isBSD(_ s: [UInt8]) -> Bool {
        let w = ByteWindow(s)
        return w.u32LE(0) == 0x8256_4557 && w.u32LE(132) == 0x8256_4557
    }

    /// `s` is the disk's second sector.
    static func bsd(_ s: [UInt8], diskSize: UInt64) -> PartitionTable {
        let w = ByteWindow(s)
        var t = PartitionTable(kind: "bsd", sectorSize: 512, diskSize: diskSize, partitions: [], warnings: [])
        let declared = Int(w.u16LE(138) ?? 0)
        // libfdisk reads at most 16 slots, and none past the count the label declares.
        if declared > 16 { t.warnings.append("the BSD label declares \(declared) partitions; only 16 are read, as sfdisk does") }
        for i in 0..<min(declared, 16) {
            let o = 148 + 16 * i
            let count = UInt64(w.u32LE(o) ?? 0), start = UInt64(w.u32LE(o + 4) ?? 0), type = w.u8(o + 12) ?? 0
            guard count != 0 else { continue }
            let p = entry(i + 1, type: code(type), name: bsdNames[type] ?? "Unknown", start: start, sectors: count)
            if let b = beyond(p, diskSize) { t.warnings.append(b) }
            t.partitions.append(p)
        }
        return t
    }
}
