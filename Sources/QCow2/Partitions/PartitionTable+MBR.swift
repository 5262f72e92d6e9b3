import QCow2

package enum MBR {
    package static let extendedTypes: Set<UInt8> = [0x05, 0x0F, 0x85]
    /// Linux stops following EBRs after this many links; so do we (a loop must end).
    package static let maxLogical = 100

    package static let typeNames: [UInt8: String] = [
        0x00: "Empty", 0x01: "FAT12", 0x04: "FAT16 <32M", 0x05: "Extended", 0x06: "FAT16", 0x07: "HPFS/NTFS/exFAT",
        0x0B: "W95 FAT32", 0x0C: "W95 FAT32 (LBA)", 0x0E: "W95 FAT16 (LBA)", 0x0F: "W95 Ext'd (LBA)",
        0x82: "Linux swap", 0x83: "Linux", 0x85: "Linux extended", 0x8E: "Linux LVM", 0xA5: "FreeBSD",
        0xEE: "GPT", 0xEF: "EFI (FAT-12/16/32)", 0xFD: "Linux raid autodetect",
    ]

    package static func hex(_ t: UInt8) -> String {
        let h = String(t, radix: 16)
        return h.count == 1 ? "0" + h : h
    }

    struct Entry {
        var boot: Bool
        var type: UInt8
        var start: UInt64
        var sectors: UInt64
    }

    static func entries(_ sector: [UInt8]) -> [Entry] {
        let w = ByteWindow(sector)
        return (0..<4).map { i in
            let o = 446 + 16 * i
            return Entry(boot: w.u8(o) == 0x80, type: w.u8(o + 4) ?? 0, start: UInt64(w.u32LE(o + 8) ?? 0), sectors: UInt64(w.u32LE(o + 12) ?? 0))
        }
    }

    static func partition(_ number: Int, _ e: Entry, start: UInt64, logical: Bool) -> PartitionTable.Partition {
        PartitionTable.Partition(
            number: number, type: hex(e.type), typeName: typeNames[e.type] ?? "Unknown", bootable: e.boot,
            logical: logical, extended: extendedTypes.contains(e.type), startSector: start, sectors: e.sectors,
            name: nil, uuid: nil)
    }

    static func read(_ sector0: [UInt8], diskSize: UInt64, _ get: (UInt64, Int) throws(PartitionTable.Error) -> [UInt8]) throws(PartitionTable.Error) -> PartitionTable {
        var table = PartitionTable(kind: "mbr", sectorSize: 512, diskSize: diskSize, partitions: [], warnings: [])
        let diskSectors = diskSize / 512
        var extendedStart: UInt64?
        for (i, e) in entries(sector0).enumerated() where e.type != 0 && e.sectors != 0 {
            let p = partition(i + 1, e, start: e.start, logical: false)
            if e.start + e.sectors > diskSectors {
                table.warnings.append("partition \(i + 1) ends at sector \(e.start + e.sectors), beyond the disk's \(diskSectors)")
            }
            table.partitions.append(p)
            if p.extended && extendedStart == nil { extendedStart = e.start }
        }
        if let base = extendedStart {
            var ebr = base
            var seen: Set<UInt64> = []
            var number = 5
            while true {
                guard seen.insert(ebr).inserted else { table.warnings.append("the extended partition's EBR chain loops at sector \(ebr); stopped"); break }
                guard number - 4 <= maxLogical else { table.warnings.append("more than \(maxLogical) logical partitions; stopped"); break }
                guard ebr < diskSectors else { table.warnings.append("an EBR at sector \(ebr) lies beyond the disk; stopped"); break }
                let sector = try get(ebr * 512, 512)
                let w = ByteWindow(sector)
                guard w.u8(510) == 0x55, w.u8(511) == 0xAA else { table.warnings.append("no EBR signature at sector \(ebr); stopped"); break }
                let es = entries(sector)
                let logical = es[0]
                if logical.type != 0 && logical.sectors != 0 {
                    let (start, o) = ebr.addingReportingOverflow(logical.start)
                    if o || start + logical.sectors > diskSectors {
                        table.warnings.append("logical partition \(number) lies beyond the disk")
                    }
                    table.partitions.append(partition(number, logical, start: start, logical: true))
                    number += 1
                }
                let next = es[1]
                guard extendedTypes.contains(next.type), next.sectors != 0 else { break }
                ebr = base + next.start
            }
        }
        if table.partitions.contains(where: { $0.type == "ee" }) {
            table.warnings.append("a protective GPT entry (type ee) but no valid GPT header")
        }
        return table
    }
}
