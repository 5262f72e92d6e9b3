/// A VDI header, checked in `vdi_open`'s order.
struct VDIHeader: Sendable {
    var diskSize: UInt64
    var blockSize: UInt64
    var blocks: UInt64
    var bmapOffset: UInt64
    var dataOffset: UInt64
    /// `blocks_allocated`: how many blocks the header says the map allocates (QEMU's check compares).
    var blocksAllocated: UInt64 = 0

    static let maxBlocks: UInt64 = 0x1FF_FFF8
    static let maxDiskSize: UInt64 = 0x1_FFFF_F800_0000

    static func read(_ file: ImageFile) throws(FormatError) -> VDIHeader {
        let w = ByteWindow(try readPadded(file, at: 0, count: 512, format: .vdi, field: "header"))
        func bad(_ field: String, _ reason: String) -> FormatError { FormatError(path: file.path, format: .vdi, field: field, reason: reason) }
        // vdi_open rounds an odd disk size up to whole sectors (VBoxManage convert makes such images), before its checks.
        let h = VDIHeader(diskSize: ImageFormat.sectorsRoundedUp(w.u64LE(368) ?? 0), blockSize: UInt64(w.u32LE(376) ?? 0), blocks: UInt64(w.u32LE(384) ?? 0),
                          bmapOffset: UInt64(w.u32LE(340) ?? 0), dataOffset: UInt64(w.u32LE(344) ?? 0), blocksAllocated: UInt64(w.u32LE(388) ?? 0))
        let version = w.u32LE(68) ?? 0
        guard h.diskSize <= maxDiskSize else { throw bad("disk_size", "unsupported VDI image size 0x\(String(h.diskSize, radix: 16)) (at most 0x\(String(maxDiskSize, radix: 16)))") }
        guard version == 0x0001_0001 else { throw bad("version", "unsupported VDI image version \(version >> 16).\(version & 0xFFFF)") }
        guard h.bmapOffset % 512 == 0 else { throw bad("offset_bmap", "block map offset \(h.bmapOffset) not sector aligned") }
        guard h.dataOffset % 512 == 0 else { throw bad("offset_data", "data offset \(h.dataOffset) not sector aligned") }
        guard w.u32LE(360) == 512 else { throw bad("sector_size", "sector size \(w.u32LE(360) ?? 0) is not 512") }
        guard h.blockSize == 1 << 20 else { throw bad("block_size", "block size \(h.blockSize) is not 1048576") }
        guard h.diskSize <= h.blocks * h.blockSize else { throw bad("disk_size", "disk size \(h.diskSize) larger than the block map covers") }
        guard w.slice(424, 16)?.allSatisfy({ $0 == 0 }) == true else { throw bad("uuid_link", "non-null link UUID") }
        guard w.slice(440, 16)?.allSatisfy({ $0 == 0 }) == true else { throw bad("uuid_parent", "non-null parent UUID") }
        guard h.blocks <= maxBlocks else { throw bad("blocks_in_image", "too many blocks \(h.blocks)") }
        return h
    }
}

/// A VDI layer: a block map of little-endian block numbers; 0xFFFFFFFF (unallocated) and 0xFFFFFFFE (discarded) read
/// as zeros.
final class VDILayer: MappedLayer {
    let file: ImageFile
    let header: VDIHeader
    let bmap: TableCache
    var backing: (any GuestLayer)? { nil }
    var size: UInt64 { header.diskSize }

    init(file: ImageFile, header: VDIHeader) throws(GuestDisk.Error) {
        self.file = file
        self.header = header
        guard let t = TableCache(file: file, base: header.bmapOffset, entrySize: 4, count: header.blocks, bigEndian: false, name: "block map") else {
            throw .corrupt(path: file.path, field: "offset_bmap", offset: header.bmapOffset, reason: "table overflows")
        }
        bmap = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        let b = header.blockSize
        let index = offset / b, inBlock = offset % b
        let entry = try bmap.entry(index) ?? 0xFFFF_FFFF
        if entry >= 0xFFFF_FFFE { return (.zero, b - inBlock) }
        return (.host(file, header.dataOffset + entry * b + inBlock), b - inBlock)
    }
}
