enum GPT {
    /// The entry array is read this many bytes at a time: its CRC is computed as it goes, and only the entries in
    /// use are kept, so memory is bounded by what the disk holds in use, never by the count a header claims.
    static let chunkBytes = 1 << 20
    /// The largest array read: 64 MiB, 16 times what Linux reads (KMALLOC_MAX_SIZE, 4 MiB on x86-64) and 32 times
    /// sfdisk's largest `table-length` default use. Time, not memory, is what it bounds: a header may claim 2^32
    /// entries on a sparse disk that "holds" them.
    static let maxEntriesBytes: UInt64 = 64 << 20

    /// The kernel's `is_pmbr_valid` (block/partitions/efi.c), which libfdisk's `valid_pmbr` follows: the MBR
    /// signature 0x55AA and an entry of type 0xEE that starts at LBA 1. Without one, Linux and sfdisk read the MBR
    /// and never look at a GPT: an isohybrid or xorriso hybrid ISO carries a GPT behind an MBR that does not protect it.
    static func hasProtectiveMBR(_ sector0: [UInt8]) -> Bool {
        let w = ByteWindow(sector0)
        guard w.u8(510) == 0x55, w.u8(511) == 0xAA else { return false }
        return MBR.entries(sector0).contains { $0.type == 0xEE && $0.start == 1 }
    }

    /// A valid GPT header at LBA 1 of 512- or 4096-byte sectors: what a disk whose MBR does not protect it holds
    /// unused, said beside the MBR that is read instead.
    static func headerPresent(diskSize: UInt64, _ get: (UInt64, Int) throws(PartitionTable.Error) -> [UInt8]) throws(PartitionTable.Error) -> UInt64? {
        for sectorSize: UInt64 in [512, 4096] where diskSize >= sectorSize * 2 {
            if case .success = header(try get(sectorSize, Int(sectorSize)), lba: 1) { return sectorSize }
        }
        return nil
    }

    static let typeNames: [String: String] = [
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
        "21686148-6449-6E6F-744E-656564454649": "BIOS boot",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux home",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
    ]

    /// A GUID as text: the first three fields are little-endian on disk.
    static func guid(_ b: ArraySlice<UInt8>) -> String {
        let a = Array(b)
        guard a.count == 16 else { return "" }
        let order = [3, 2, 1, 0, -1, 5, 4, -1, 7, 6, -1, 8, 9, -1, 10, 11, 12, 13, 14, 15]
        let hex = Array("0123456789ABCDEF")
        var s = ""
        for i in order {
            if i < 0 { s.append("-"); continue }
            s.append(hex[Int(a[i] >> 4)])
            s.append(hex[Int(a[i] & 15)])
        }
        return s
    }

    struct Header {
        var entriesLBA: UInt64
        var count: UInt32
        var entrySize: UInt32
        var entriesCRC: UInt32
        var alternate: UInt64
    }

    /// Checks a header sector: signature, size, CRC. Returns the header or why it is bad.
    static func header(_ sector: [UInt8], lba: UInt64) -> Result<Header, GPTProblem> {
        let w = ByteWindow(sector)
        guard w.starts(with: Array("EFI PART".utf8)) else { return .failure(GPTProblem("no GPT signature at LBA \(lba)")) }
        guard let size = w.u32LE(12), size >= 92, Int(size) <= sector.count else {
            return .failure(GPTProblem("GPT header at LBA \(lba) has a bad header size"))
        }
        var copy = Array(sector[0..<Int(size)])
        for i in 16..<20 { copy[i] = 0 }
        guard crc32Of(copy) == w.u32LE(16) else { return .failure(GPTProblem("GPT header at LBA \(lba) fails its CRC")) }
        return .success(Header(entriesLBA: w.u64LE(72) ?? 0, count: w.u32LE(80) ?? 0, entrySize: w.u32LE(84) ?? 0,
                               entriesCRC: w.u32LE(88) ?? 0, alternate: w.u64LE(32) ?? 0))
    }

    struct GPTProblem: Swift.Error { var text: String; init(_ t: String) { text = t } }

    static func read(diskSize: UInt64, sectorSize: UInt64, reportDamaged: Bool = false, _ get: (UInt64, Int) throws(PartitionTable.Error) -> [UInt8]) throws(PartitionTable.Error) -> PartitionTable? {
        let lastLBA = diskSize / sectorSize - 1
        var warnings: [String] = []
        var chosen: Header?
        switch header(try get(sectorSize, Int(sectorSize)), lba: 1) {
        case .success(let h): chosen = h
        case .failure(let p):
            // Only look for a backup when something says this is a GPT disk (signature or protective MBR).
            let mbr = try get(0, 512)
            let protective = MBR.entries(mbr).contains { $0.type == 0xEE }
            let sig = ByteWindow(try get(sectorSize, 8)).starts(with: Array("EFI PART".utf8))
            guard protective || sig else { return nil }
            if case .success(let backup) = header(try get(lastLBA * sectorSize, Int(sectorSize)), lba: lastLBA) {
                warnings.append("primary GPT header damaged (\(p.text)); using the backup header at LBA \(lastLBA)")
                chosen = backup
            } else {
                // A damaged table is reported only once neither sector size found a valid header.
                if !reportDamaged || !protective { return nil }
                warnings.append("\(p.text), and no valid backup header at LBA \(lastLBA)")
                return PartitionTable(kind: "gpt", sectorSize: sectorSize, diskSize: diskSize, partitions: [], warnings: warnings)
            }
        }
        guard let h = chosen else { return nil }
        guard h.entrySize >= 128, h.entrySize % 8 == 0 else {
            return PartitionTable(kind: "gpt", sectorSize: sectorSize, diskSize: diskSize, partitions: [], warnings: warnings + ["GPT entry size \(h.entrySize) is invalid"])
        }
        // The array the header declares, as large as the UEFI spec allows (sfdisk's `table-length: 16384` makes
        // 2 MiB), as long as the disk holds it: a count no disk could hold is refused before anything is read.
        let (bytes, o1) = UInt64(h.count).multipliedReportingOverflow(by: UInt64(h.entrySize))
        let (start, o2) = h.entriesLBA.multipliedReportingOverflow(by: sectorSize)
        let (end, o3) = start.addingReportingOverflow(bytes)
        guard h.entriesLBA <= lastLBA, !o2 else {
            return PartitionTable(kind: "gpt", sectorSize: sectorSize, diskSize: diskSize, partitions: [], warnings: warnings + ["GPT entries at LBA \(h.entriesLBA) lie beyond the disk"])
        }
        guard !o1, bytes <= maxEntriesBytes else {
            return PartitionTable(kind: "gpt", sectorSize: sectorSize, diskSize: diskSize, partitions: [],
                                  warnings: warnings + ["GPT claims \(h.count) entries of \(h.entrySize) bytes: more than \(maxEntriesBytes >> 20) MiB, refused"])
        }
        guard !o3, end <= diskSize else {
            return PartitionTable(kind: "gpt", sectorSize: sectorSize, diskSize: diskSize, partitions: [],
                                  warnings: warnings + ["GPT claims \(h.count) entries of \(h.entrySize) bytes from LBA \(h.entriesLBA): more than the disk holds"])
        }
        // A hybrid MBR lists real partitions beside the protective entry; the GPT is what Linux uses.
        let mbrEntries = MBR.entries(try get(0, 512)).filter { $0.type != 0 && $0.sectors != 0 }
        if mbrEntries.contains(where: { $0.type == 0xEE }) && mbrEntries.contains(where: { $0.type != 0xEE }) {
            warnings.append("hybrid MBR: the MBR also lists \(mbrEntries.count - 1) partition(s); the GPT is shown")
        }
        var parts: [PartitionTable.Partition] = []
        var crc: UInt32 = 0
        let size = Int(h.entrySize)
        // Whole entries per chunk (an entry is at most a chunk: the size is a u32, but a larger one is refused here).
        guard size <= chunkBytes else {
            return PartitionTable(kind: "gpt", sectorSize: sectorSize, diskSize: diskSize, partitions: [], warnings: warnings + ["GPT entry size \(h.entrySize) is invalid"])
        }
        let perChunk = chunkBytes / size
        var index = 0
        while index < Int(h.count) {
            let n = min(perChunk, Int(h.count) - index)
            let chunk = try get(start + UInt64(index) * UInt64(size), n * size)
            crc = crc32Update(crc, chunk)
            let w = ByteWindow(chunk)
            for k in 0..<n {
                if let p = entry(w, at: k * size, number: index + k + 1, lastLBA: lastLBA, &warnings) { parts.append(p) }
            }
            index += n
        }
        if crc != h.entriesCRC { warnings.append("GPT partition entries fail their CRC") }
        return PartitionTable(kind: "gpt", sectorSize: sectorSize, diskSize: diskSize, partitions: parts, warnings: warnings)
    }

    /// The entry at `o` of a piece of the array, or nil when it is unused (or impossible, with a warning).
    static func entry(_ w: ByteWindow, at o: Int, number: Int, lastLBA: UInt64, _ warnings: inout [String]) -> PartitionTable.Partition? {
        guard let type = w.slice(o, 16), type.contains(where: { $0 != 0 }) else { return nil }
        let first = w.u64LE(o + 32) ?? 0, last = w.u64LE(o + 40) ?? 0
        guard last >= first, last - first < UInt64.max else { warnings.append("GPT entry \(number) has an impossible extent (\(first)–\(last))"); return nil }
        if last > lastLBA { warnings.append("partition \(number) ends at LBA \(last), beyond the disk's last LBA \(lastLBA)") }
        var name = ""
        if let raw = w.slice(o + 56, 72) {
            let units = stride(from: raw.startIndex, to: raw.endIndex - 1, by: 2).map { UInt16(raw[$0]) | UInt16(raw[$0 + 1]) << 8 }
            name = String(decoding: units.prefix { $0 != 0 }, as: UTF16.self)
        }
        let typeGUID = guid(type)
        return PartitionTable.Partition(
            number: number, type: typeGUID, typeName: typeNames[typeGUID] ?? "Unknown", bootable: false,
            logical: false, extended: false, startSector: first, sectors: last - first + 1,
            name: name, uuid: w.slice(o + 16, 16).map(guid))
    }
}
