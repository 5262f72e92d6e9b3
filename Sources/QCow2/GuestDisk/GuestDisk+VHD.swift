/// A VHD (vpc) image as `vpc_open` reads it: the footer copy at byte 0, its checksum, the size by creator, and for
/// every disk found that way (dynamic or differencing alike: QEMU 7.2 ignores a differencing disk's parent) the
/// dynamic header and its BAT.
struct VHDHeader: Sendable {
    var size: UInt64
    var diskType: UInt32
    var blockSize: UInt64
    var bitmapSize: UInt64
    var maxTableEntries: UInt64
    var batOffset: UInt64

    static let maxSectors: UInt64 = 0xFF00_0000

    static func read(_ file: ImageFile) throws(FormatError) -> VHDHeader {
        let footer = try readPadded(file, at: 0, count: 512, format: .vpc, field: "footer")
        let w = ByteWindow(footer)
        func bad(_ field: String, _ offset: UInt64?, _ reason: String) -> FormatError {
            FormatError(path: file.path, format: .vpc, field: field, offset: offset, reason: reason)
        }
        guard w.starts(with: Array("conectix".utf8)) else { throw bad("footer", 0, "invalid VPC image") }
        var sum: UInt32 = 0
        for (i, b) in footer.enumerated() where !(64..<68).contains(i) { sum &+= UInt32(b) }
        guard ~sum == w.u32BE(64) else { throw bad("checksum", 64, "incorrect header checksum (QEMU refuses the image)") }
        guard let size = FormatDetails.vpcSize(w) else { throw bad("footer", 0, "truncated") }
        guard size / 512 <= maxSectors else { throw bad("current_size", 48, "larger than the 2040 GiB QEMU allows") }
        let dataOffset = w.u64BE(16) ?? 0
        guard dataOffset <= UInt64(Int64.max) - 1024 else { throw bad("data_offset", 16, "\(dataOffset) lies beyond any file") }
        let dyn = ByteWindow(try readPadded(file, at: dataOffset, count: 1024, format: .vpc, field: "dynamic disk header"))
        guard dyn.starts(with: Array("cxsparse".utf8)) else { throw bad("dynamic disk header", dataOffset, "no cxsparse signature (invalid VPC image)") }
        let block = UInt64(dyn.u32BE(32) ?? 0)
        guard isPowerOfTwo(block), block >= 512 else { throw bad("block_size", dataOffset + 32, "invalid block size \(block)") }
        let entries = UInt64(dyn.u32BE(28) ?? 0)
        guard size / block <= 0xFFFF_FFFF else { throw bad("max_table_entries", dataOffset + 28, "too many blocks") }
        guard entries * block >= size else { throw bad("max_table_entries", dataOffset + 28, "page table too small (\(entries) entries of \(block) bytes for \(size) bytes)") }
        guard entries <= UInt64(Int32.max) / 4 else { throw bad("max_table_entries", dataOffset + 28, "Max Table Entries too large (\(entries))") }
        return VHDHeader(size: size, diskType: w.u32BE(60) ?? 0, blockSize: block, bitmapSize: ((block / (8 * 512)) + 511) & ~511,
                         maxTableEntries: entries, batOffset: dyn.u64BE(16) ?? 0)
    }
}

/// A VHD layer: fixed disks (footer type 2) read from byte 0 as QEMU does; others through the BAT of big-endian
/// sector numbers, each block preceded by its sector bitmap; 0xFFFFFFFF reads as zeros.
final class VHDLayer: MappedLayer {
    let file: ImageFile
    let header: VHDHeader
    let bat: TableCache
    var backing: (any GuestLayer)? { nil }
    var size: UInt64 { header.size }

    init(file: ImageFile, header: VHDHeader) throws(GuestDisk.Error) {
        self.file = file
        self.header = header
        guard let t = TableCache(file: file, base: header.batOffset, entrySize: 4, count: header.maxTableEntries, bigEndian: true, name: "BAT") else {
            throw .corrupt(path: file.path, field: "table_offset", offset: header.batOffset, reason: "BAT overflows")
        }
        bat = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        if header.diskType == 2 { return (.host(file, offset), size - offset) }
        let b = header.blockSize
        let index = offset / b, inBlock = offset % b
        let entry = try bat.entry(index) ?? 0xFFFF_FFFF
        if entry == 0xFFFF_FFFF { return (.zero, b - inBlock) }
        // entry < 2^32 sectors, bitmap and block below 2^32: no overflow.
        return (.host(file, entry * 512 + header.bitmapSize + inBlock), b - inBlock)
    }
}
