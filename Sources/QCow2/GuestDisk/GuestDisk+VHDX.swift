/// A VHDX layer: a BAT of 64-bit entries (state in bits 0–2, file offset in MiB units from bit 20), a sector bitmap
/// entry after every `chunkRatio` payload entries. Fully present blocks are read; not present, undefined, zero and
/// unmapped ones read as zeros; partially present ones (differencing files) are refused, as QEMU refuses them.
final class VHDXLayer: MappedLayer {
    let file: ImageFile
    let header: VHDXHeader
    let bat: TableCache
    var backing: (any GuestLayer)? { nil }
    var size: UInt64 { header.virtualSize }

    init(file: ImageFile, header: VHDXHeader) throws(GuestDisk.Error) {
        self.file = file
        self.header = header
        guard let t = TableCache(file: file, base: header.batOffset, entrySize: 8, count: header.batEntries, bigEndian: false, name: "BAT") else {
            throw .corrupt(path: file.path, field: "BAT region", offset: header.batOffset, reason: "table overflows")
        }
        bat = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        let b = header.blockSize
        let block = offset / b, inBlock = offset % b
        let index = block + block / header.chunkRatio
        let entry = try bat.entry(index) ?? 0
        switch entry & 7 {
        case 0, 1, 2, 3, 5: return (.zero, b - inBlock)
        case 6:
            let host = entry & ~UInt64(0xFFFFF)
            let (end, o) = host.addingReportingOverflow(b)
            guard !o, end <= file.stat.size || file.stat.kind == .blockDevice else {
                throw .corrupt(path: file.path, field: "BAT entry \(index)", offset: host, reason: "block points after the end of the file (\(file.stat.size) bytes)")
            }
            return (.host(file, host + inBlock), b - inBlock)
        default:
            throw .corrupt(path: file.path, field: "BAT entry \(index)", offset: header.batOffset + index * 8, reason: "block state \(entry & 7) (partially present or unknown) cannot be read")
        }
    }
}

/// CRC-32C (Castagnoli), the checksum of VHDX headers, region tables and log entries.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// The checksum of `bytes` with the 4 bytes at `zeroedAt` counted as zeros.
    static func checksum(_ bytes: [UInt8], zeroedAt: Int) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for (i, b) in bytes.enumerated() {
            let v = (i >= zeroedAt && i < zeroedAt + 4) ? 0 : b
            c = table[Int((c ^ UInt32(v)) & 0xFF)] ^ (c >> 8)
        }
        return ~c
    }
}
