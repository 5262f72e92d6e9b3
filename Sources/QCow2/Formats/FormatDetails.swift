/// What the header of a format other than qcow2 says beyond its magic: the facts `qemu-img info` prints for it.
/// Nothing here throws: a field that is missing or fails its check is left out (nil), never guessed.
public struct FormatDetails: Sendable, Equatable {
    /// Virtual disk size, when the header gives it and it passes its checks.
    public var virtualSize: UInt64?
    /// qemu-img's `cluster-size`: QED/qcow clusters, VMDK grains, VDI/VHD/VHDX blocks.
    public var clusterSize: UInt64?
    /// True for LUKS and encrypted qcow (v1) images.
    public var encrypted: Bool = false
    /// The backing file name a QED or qcow (v1) image records.
    public var backingFile: String?
    /// The backing format it records (QED records only "raw", as a flag; qcow v1 records none).
    public var backingFormat: String?
    /// A LUKS image's header, when QEMU would accept it: what `format-specific` prints.
    public var luks: LUKSHeader?
    /// A VMDK's descriptor IDs (`CID`, `parentCID`), when QEMU could read both.
    public var vmdkCIDs: VMDKCIDs?

    /// Longest backing name read from a QED or qcow header; QEMU refuses longer ones too (qcow: 1023 bytes,
    /// QED: its name buffer of PATH_MAX).
    static let maxBackingName = 4095

    /// Reads the details of `format` from the file's first bytes and, where a format keeps them further in (VHD's
    /// dynamic header, VHDX's metadata, a QED backing name past the prefix), from `read`.
    package static func read(
        _ format: ImageFormat, prefix: [UInt8], fileSize: UInt64, read: (UInt64, Int) -> [UInt8]?
    ) -> FormatDetails {
        let w = ByteWindow(prefix)
        var d = FormatDetails()
        func string(at offset: UInt64, count: Int) -> String? {
            guard count > 0, count <= maxBackingName, offset <= fileSize, UInt64(count) <= fileSize - offset,
                  let bytes = read(offset, count), bytes.count == count else { return nil }
            return decodeName(bytes)
        }
        switch format {
        case .qed:
            d.virtualSize = w.u64LE(48)
            guard let cluster = w.u32LE(4), let headerClusters = w.u32LE(12), let features = w.u64LE(16) else { break }
            d.clusterSize = UInt64(cluster)
            // QED_F_BACKING_FILE; the name must lie inside the header clusters, as QEMU checks.
            if features & 1 != 0, let offset = w.u32LE(56), let size = w.u32LE(60) {
                let end = UInt64(offset) + UInt64(size)
                if end <= UInt64(cluster) * UInt64(headerClusters) { d.backingFile = string(at: UInt64(offset), count: Int(size)) }
                // QED_F_BACKING_FORMAT_NO_PROBE: the backing file is raw; no other format can be recorded.
                if features & 4 != 0 { d.backingFormat = "raw" }
            }
        case .qcow:
            if let bits = w.u8(32), bits >= 9, bits <= 16 { d.clusterSize = 1 << UInt64(bits) }
            d.encrypted = (w.u32BE(36) ?? 0) != 0
            if let offset = w.u64BE(8), offset != 0, let size = w.u32BE(16), size <= 1023 {
                d.backingFile = string(at: offset, count: Int(size))
            }
        case .vmdk:
            // Hosted sparse extent: grain size in sectors at 20.
            if w.starts(with: Array("KDMV".utf8)), let grain = w.u64LE(20), grain > 0, grain <= 1 << 20 { d.clusterSize = grain * 512 }
            let sparse = w.starts(with: Array("KDMV".utf8)) || w.starts(with: Array("COWD".utf8))
            let descriptor = read(sparse ? 0x200 : 0, 20 * 512) ?? []
            d.vmdkCIDs = VMDKCIDs.parse(descriptor)
            if let parent = vmdkParent(descriptor) {
                d.backingFile = parent
                d.backingFormat = "vmdk"
            }
        case .vdi:
            if let block = w.u32LE(376), block > 0 { d.clusterSize = UInt64(block) }
        case .vpc:
            d.virtualSize = vpcSize(w)
            // A dynamic disk's header, where the footer's data offset points: its block size is the cluster size.
            if let offset = w.u64BE(16), offset != UInt64.max, let dyn = read(offset, 36), dyn.count == 36 {
                let dw = ByteWindow(dyn)
                if dw.starts(with: Array("cxsparse".utf8)), let block = dw.u32BE(32) { d.clusterSize = UInt64(block) }
            }
        case .vhdx:
            (d.virtualSize, d.clusterSize) = vhdxSizes(read: read)
        case .luks:
            d.encrypted = true
            if case .success(let header) = LUKSHeader.parse(prefix) { d.luks = header }
            // LUKS1 only (QEMU opens no other): the payload starts at a sector offset; the guest sees what follows.
            if w.u16BE(6) == 1, let sectors = w.u32BE(104) {
                let payload = UInt64(sectors) * 512
                let length = ImageFormat.sectorsRoundedUp(fileSize)
                if payload <= length { d.virtualSize = length - payload }
            }
        case .parallels:
            if let sectors = w.u64LE(36) {
                // The old "WithoutFreeSpace" images keep only 32 bits of the sector count, as QEMU reads them.
                let count = w.starts(with: Array("WithoutFreeSpace".utf8)) ? sectors & 0xFFFF_FFFF : sectors
                if count <= UInt64.max / 512 { d.virtualSize = count * 512 }
            }
        case .qcow2, .raw, .bochs, .cloop, .dmg:
            break
        }
        return d
    }

    /// A VMDK delta's parent, found as QEMU finds it: the first `parentFileNameHint` in the 10 KiB descriptor (at
    /// byte 512 of a sparse extent, at 0 of a descriptor file), the name starting 20 bytes on (past `="`) and
    /// running to the next quote. The text ends at the first NUL, as QEMU's C string does.
    static func vmdkParent(_ descriptor: [UInt8]) -> String? {
        let text = descriptor.prefix { $0 != 0 }
        let key = Array("parentFileNameHint".utf8)
        guard let at = text.firstOffset(of: key) else { return nil }
        let start = at + key.count + 2
        guard start <= text.endIndex, let end = text[start...].firstIndex(of: UInt8(ascii: "\"")),
              end - start <= maxBackingName else { return nil }
        return decodeName(text[start..<end])
    }

    /// VHD's size the way QEMU reads it: from the CHS geometry for images made by Virtual PC or QEMU's old writer,
    /// from `current_size` for Hyper-V, Disk2vhd, XenServer, XenConverter and QEMU's `qem2`, and from
    /// `current_size` whenever the geometry is the largest VHD allows (it would truncate the disk).
    static func vpcSize(_ w: ByteWindow) -> UInt64? {
        guard let current = w.u64BE(48), let cylinders = w.u16BE(56), let heads = w.u8(58), let sectors = w.u8(59),
              let creator = w.slice(28, 4) else { return nil }
        let chs = UInt64(cylinders) * UInt64(heads) * UInt64(sectors)
        let sizeCreators: [[UInt8]] = ["win ", "qem2", "d2v ", "CTXS"].map { Array($0.utf8) } + [Array("tap".utf8) + [0]]
        let useCHS = !sizeCreators.contains { creator.elementsEqual($0) }
        if !useCHS || chs == 65535 * 16 * 255 { return current / 512 * 512 }
        return chs * 512
    }

    /// VHDX: the region table at 192 KiB names the metadata region, whose table holds the virtual disk size and the
    /// file parameters (block size). Each read is bounded; a missing or odd item leaves its value nil.
    static func vhdxSizes(read: (UInt64, Int) -> [UInt8]?) -> (UInt64?, UInt64?) {
        let metadataRegion: [UInt8] = [0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E]
        let virtualDiskSize: [UInt8] = [0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8]
        let fileParameters: [UInt8] = [0x37, 0x67, 0xA1, 0xCA, 0x36, 0xFA, 0x43, 0x4D, 0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B]
        // The region table is 64 KiB; 2047 entries of 32 bytes at most after a 16-byte header.
        guard let table = read(192 * 1024, 64 * 1024) else { return (nil, nil) }
        let t = ByteWindow(table)
        guard t.starts(with: Array("regi".utf8)), let count = t.u32LE(8), count <= 2047 else { return (nil, nil) }
        var metadataOffset: UInt64?
        for i in 0..<Int(count) where t.slice(16 + i * 32, 16)?.elementsEqual(metadataRegion) == true {
            metadataOffset = t.u64LE(16 + i * 32 + 16)
        }
        // The metadata table is the first 64 KiB of its region; items are at offsets relative to the region.
        guard let base = metadataOffset, let meta = read(base, 64 * 1024) else { return (nil, nil) }
        let m = ByteWindow(meta)
        guard m.starts(with: Array("metadata".utf8)), let items = m.u16LE(10), items <= 2047 else { return (nil, nil) }
        var size: UInt64?, block: UInt64?
        for i in 0..<Int(items) {
            let e = 32 + i * 32
            guard let id = m.slice(e, 16), let offset = m.u32LE(e + 16), let length = m.u32LE(e + 20), length >= 8 else { continue }
            let (at, overflow) = base.addingReportingOverflow(UInt64(offset))
            guard !overflow else { continue }
            if id.elementsEqual(virtualDiskSize), let v = read(at, 8) { size = ByteWindow(v).u64LE(0) }
            if id.elementsEqual(fileParameters), let v = read(at, 4), let b = ByteWindow(v).u32LE(0) { block = UInt64(b) }
        }
        return (size, block)
    }
}
