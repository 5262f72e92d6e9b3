/// The checks QEMU 7.2 makes when it opens an image of a format other than qcow2 and raw, so that imgtool refuses
/// what qemu-img refuses (and reports the virtual size qemu-img would).
package enum FormatCheck {
    /// Validates `file` as `format`; returns the virtual size QEMU would report, nil when the probe's is right.
    package static func validate(_ format: ImageFormat, _ file: ImageFile) throws(FormatError) -> UInt64? {
        switch format {
        case .qed: return try QEDHeader.read(file).imageSize
        // qcow keeps `size / 512` sectors; vdi rounds its size up (VDIHeader.read does).
        case .qcow: return try QCow1Header.read(file).size & ~511
        case .vdi: return try VDIHeader.read(file).diskSize
        case .parallels: return try ParallelsHeader.read(file).sectors * 512
        case .vpc: return try VHDHeader.read(file).size
        case .vhdx: return try VHDXHeader.read(file).virtualSize
        case .vmdk:
            let layout = try VMDKLayout.read(file)
            // Sparse extents named by a descriptor are sized by their own headers, which are read only for guest reads.
            let sparseInDescriptor = layout.extents.contains { if case .unsupported("") = $0.kind { return true } else { return false } }
            return sparseInDescriptor ? nil : layout.size
        case .luks: return try luks(file)
        case .bochs: return try BochsHeader.read(file).size
        case .cloop: return try CloopHeader.read(file).size
        case .dmg: return try DMGLayout.read(file).sectors * 512
        case .qcow2, .raw: return nil
        }
    }

    /// LUKS1: the header must pass QEMU's checks (`LUKSHeader.parse`); the guest sees what follows the payload offset; a file that ends before it cannot be opened
    /// ("Could not refresh total sector count").
    static func luks(_ file: ImageFile) throws(FormatError) -> UInt64 {
        let bytes = try readPadded(file, at: 0, count: LUKSHeader.size, format: .luks, field: "header")
        if case .failure(let p) = LUKSHeader.parse(bytes) {
            throw FormatError(path: file.path, format: .luks, field: p.field, offset: UInt64(p.offset), reason: p.reason)
        }
        let w = ByteWindow(bytes)
        let payload = UInt64(w.u32BE(104) ?? 0) * 512
        guard file.stat.kind == .blockDevice || payload <= file.stat.size else {
            throw FormatError(path: file.path, format: .luks, field: "payload_offset", offset: 104,
                              reason: "the payload starts at \(payload) but the file has \(file.stat.size) bytes: there is no disk (QEMU cannot size it)")
        }
        // The file's length in whole sectors (the block layer rounds it up), less the header and key material.
        let length = file.stat.kind == .blockDevice ? file.stat.size : ImageFormat.sectorsRoundedUp(file.stat.size)
        return length - min(payload, length)
    }
}

/// A Bochs growing redolog header, checked as `bochs_open` checks it.
struct BochsHeader: Sendable {
    var size: UInt64
    var headerSize: UInt64
    var catalog: UInt64
    var bitmapBlocks: UInt64
    var extentBlocks: UInt64
    var extentSize: UInt64

    static func read(_ file: ImageFile) throws(FormatError) -> BochsHeader {
        let w = ByteWindow(try readPadded(file, at: 0, count: 512, format: .bochs, field: "header"))
        func bad(_ field: String, _ reason: String) -> FormatError { FormatError(path: file.path, format: .bochs, field: field, reason: reason) }
        let v1 = w.u32LE(64) == 0x0001_0000
        let size = (w.u64LE(v1 ? 84 : 88) ?? 0) / 512 * 512
        let catalog = UInt64(w.u32LE(72) ?? 0), bitmap = UInt64(w.u32LE(76) ?? 0), extent = UInt64(w.u32LE(80) ?? 0)
        guard catalog <= 0x10_0000 else { throw bad("catalog", "catalog size is too large (\(catalog))") }
        guard extent >= 512 else { throw bad("extent", "extent size \(extent) is too small") }
        guard extent <= 0x80_0000 else { throw bad("extent", "extent size \(extent) is too large") }
        guard catalog >= (size / 512 + extent / 512 - 1) / (extent / 512) else { throw bad("catalog", "catalog size is too small for this disk size") }
        return BochsHeader(size: size, headerSize: UInt64(w.u32LE(68) ?? 0), catalog: catalog,
                           bitmapBlocks: bitmap == 0 ? 1 : 1 + (bitmap - 1) / 512, extentBlocks: 1 + (extent - 1) / 512, extentSize: extent)
    }
}

/// A cloop header, checked as `cloop_open` checks it (the block offsets are checked when read).
struct CloopHeader: Sendable {
    var blockSize: UInt64
    var blocks: UInt64
    var size: UInt64 { blockSize * blocks }

    static func read(_ file: ImageFile) throws(FormatError) -> CloopHeader {
        let w = ByteWindow(try readPadded(file, at: 128, count: 8, format: .cloop, field: "header"))
        func bad(_ field: String, _ reason: String) -> FormatError { FormatError(path: file.path, format: .cloop, field: field, offset: 128, reason: reason) }
        let block = UInt64(w.u32BE(0) ?? 0), n = UInt64(w.u32BE(4) ?? 0)
        guard block % 512 == 0 else { throw bad("block_size", "\(block) must be a multiple of 512") }
        guard block != 0 else { throw bad("block_size", "block_size cannot be zero") }
        guard block <= 64 << 20 else { throw bad("block_size", "\(block) must be 64 MB or less") }
        guard n <= (UInt64(UInt32.max) - 1) / 8 else { throw bad("n_blocks", "\(n) is too many") }
        guard (n + 1) * 8 <= 512 << 20 else { throw bad("n_blocks", "image requires too many offsets, try increasing block size") }
        return CloopHeader(blockSize: block, blocks: n)
    }
}
