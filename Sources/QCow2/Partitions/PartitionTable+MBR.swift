/// The DOS/MBR label, read as util-linux's libfdisk (and so `sfdisk -J`) reads it.
package enum MBR {
    /// The types of an extended container (DOS, LBA and Linux extended).
    package static let extendedTypes: Set<UInt8> = [0x05, 0x0F, 0x85]
    /// Linux stops following EBRs after this many links; so do we (a loop must end). libfdisk stops at 60 table
    /// slots (56 logicals); a chain that long that is not a loop has never been seen.
    package static let maxLogical = 100
    /// AIX disks carry this at byte 0 and are not DOS-labelled, whatever bytes 510–511 say (libfdisk skips them).
    static let aixMagic: [UInt8] = [0xC9, 0xC2, 0xD4, 0xC1]

    /// Names of the common partition types, as sfdisk words them.
    package static let typeNames: [UInt8: String] = [
        0x00: "Empty", 0x01: "FAT12", 0x04: "FAT16 <32M", 0x05: "Extended", 0x06: "FAT16", 0x07: "HPFS/NTFS/exFAT",
        0x0B: "W95 FAT32", 0x0C: "W95 FAT32 (LBA)", 0x0E: "W95 FAT16 (LBA)", 0x0F: "W95 Ext'd (LBA)",
        0x17: "Hidden HPFS/NTFS", 0x82: "Linux swap", 0x83: "Linux", 0x85: "Linux extended", 0x8E: "Linux LVM",
        0xA5: "FreeBSD", 0xCD: "Unknown", 0xEE: "GPT", 0xEF: "EFI (FAT-12/16/32)", 0xFD: "Linux raid autodetect",
    ]

    /// A type byte as two lower-case hex digits, as sfdisk prints it.
    package static func hex(_ t: UInt8) -> String {
        let h = String(t, radix: 16)
        return h.count == 1 ? "0" + h : h
    }

    struct Entry {
        var boot: Bool
        var type: UInt8
        var start: UInt64
        var sectors: UInt64
        /// All 16 bytes zero. libfdisk lists every entry that is not cleared, whatever its type or size: an entry
        /// of type 0 with a size (memtest86+'s and xorriso's hybrid ISOs put one at sector 0) is a partition.
        var cleared: Bool
    }

    static func entries(_ sector: [UInt8]) -> [Entry] {
        let w = ByteWindow(sector)
        return (0..<4).map { i in
            let o = 446 + 16 * i
            let raw = sector.count >= o + 16 ? sector[o..<(o + 16)] : []
            return Entry(
                boot: w.u8(o) == 0x80, type: w.u8(o + 4) ?? 0, start: UInt64(w.u32LE(o + 8) ?? 0),
                sectors: UInt64(w.u32LE(o + 12) ?? 0), cleared: raw.allSatisfy { $0 == 0 })
        }
    }

    static func partition(_ number: Int, _ e: Entry, start: UInt64, logical: Bool) -> PartitionTable.Partition {
        PartitionTable.Partition(
            number: number, type: hex(e.type), typeName: typeNames[e.type] ?? "Unknown", bootable: e.boot,
            logical: logical, extended: !logical && extendedTypes.contains(e.type), startSector: start, sectors: e.sectors,
            name: nil, uuid: nil)
    }

    /// Whether sector 0 carries a DOS label as libfdisk decides it.
    static func isLabel(_ sector0: [UInt8]) -> Bool {
        let w = ByteWindow(sector0)
        return w.u8(510) == 0x55 && w.u8(511) == 0xAA && !w.starts(with: aixMagic)
    }

    static func read(_ sector0: [UInt8], diskSize: UInt64, _ get: (UInt64, Int) throws(PartitionTable.Error) -> [UInt8]) throws(PartitionTable.Error) -> PartitionTable {
        var table = PartitionTable(kind: "mbr", sectorSize: 512, diskSize: diskSize, partitions: [], warnings: [])
        let diskSectors = diskSize / 512
        var logicals: [PartitionTable.Partition] = []
        var followed = false
        for (i, e) in entries(sector0).enumerated() where !e.cleared {
            let p = partition(i + 1, e, start: e.start, logical: false)
            let (end, o) = e.start.addingReportingOverflow(e.sectors)
            if o || end > diskSectors {
                table.warnings.append("partition \(i + 1) ends at sector \(end), beyond the disk's \(diskSectors)")
            }
            table.partitions.append(p)
            // Like libfdisk, only the first extended entry whose chain yields a table slot is followed.
            if extendedTypes.contains(e.type) && !followed {
                if e.start == 0 {
                    table.warnings.append("extended partition \(i + 1) starts at sector 0; its logical partitions are not read")
                } else {
                    logicals = try readExtended(e.start, diskSectors: diskSectors, &table.warnings, get)
                    followed = true
                }
            }
        }
        table.partitions += logicals
        if table.partitions.contains(where: { $0.type == "ee" }) {
            table.warnings.append("a protective GPT entry (type ee) but no valid GPT header")
        }
        return table
    }

    /// One EBR as libfdisk reads it: its data entry and its link entry.
    struct Link {
        var ebr: UInt64
        var data: Entry
        var next: Entry
    }

    /// Follows the EBR chain from the extended partition at `base`, numbering logicals from 5 as sfdisk does.
    static func readExtended(_ base: UInt64, diskSectors: UInt64, _ warnings: inout [String], _ get: (UInt64, Int) throws(PartitionTable.Error) -> [UInt8]) throws(PartitionTable.Error) -> [PartitionTable.Partition] {
        var links: [Link] = []
        var ebr = base
        var seen: Set<UInt64> = []
        while true {
            guard seen.insert(ebr).inserted else { warnings.append("the extended partition's EBR chain loops at sector \(ebr); stopped"); break }
            guard links.count < maxLogical else { warnings.append("more than \(maxLogical) logical partitions; stopped"); break }
            guard ebr < diskSectors else { warnings.append("an EBR at sector \(ebr) lies beyond the disk; stopped"); break }
            let sector = try get(ebr * 512, 512)
            if !isLabel(sector) { warnings.append("no EBR signature at sector \(ebr) (read anyway, as sfdisk does)") }
            let es = entries(sector)
            // libfdisk's choice: among entries with a size, the first extended one is the link and the first other
            // typed one the data; when one is missing it takes entry 0, or entry 1 if 0 is already the other.
            var data: Int?, next: Int?
            for (k, e) in es.enumerated() where e.sectors != 0 {
                if extendedTypes.contains(e.type) { if next == nil { next = k } } else if e.type != 0, data == nil { data = k }
            }
            let d = data ?? (next == 0 ? 1 : 0)
            let n = next ?? (d == 0 ? 1 : 0)
            links.append(Link(ebr: ebr, data: es[d], next: es[n]))
            guard extendedTypes.contains(es[n].type) else { break }
            let (following, o) = base.addingReportingOverflow(es[n].start)
            guard !o else { warnings.append("an EBR link points beyond 2^64 sectors; stopped"); break }
            ebr = following
        }
        // libfdisk drops a last EBR whose two entries are blank, then every logical without a size unless it is
        // the only one and has no type.
        if let last = links.last, last.data.cleared, last.next.cleared { links.removeLast() }
        var i = 0
        while i < links.count {
            if links[i].data.sectors == 0 && (links.count > 1 || (links.first?.data.type ?? 0) != 0) {
                links.remove(at: i)
                i = 0
            } else {
                i += 1
            }
        }
        var out: [PartitionTable.Partition] = []
        for (k, l) in links.enumerated() where !l.data.cleared {
            let (start, o) = l.ebr.addingReportingOverflow(l.data.start)
            let (end, o2) = start.addingReportingOverflow(l.data.sectors)
            if o || o2 || end > diskSectors { warnings.append("logical partition \(k + 5) lies beyond the disk") }
            out.append(partition(k + 5, l.data, start: o ? UInt64.max : start, logical: true))
        }
        return out
    }
}
