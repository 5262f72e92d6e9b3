extension GuestDisk {
    /// The layer of a format other than raw and qcow2: its header read again (and checked as QEMU checks it) from
    /// the file opened for reading, so what is read is what was checked.
    static func otherLayer(for info: ImageInfo, file: ImageFile, backing: (any GuestLayer)?) throws(Error) -> any GuestLayer {
        if info.isEncrypted || info.format == .luks { throw .encrypted(path: info.filename) }
        func checked<T>(_ body: () throws(FormatError) -> T) throws(Error) -> T {
            do { return try body() } catch { throw .open(.invalid(error)) }
        }
        switch info.format {
        case .qed: return try QEDLayer(file: file, header: checked { () throws(FormatError) in try QEDHeader.read(file) }, backing: backing)
        case .qcow: return try QCow1Layer(file: file, header: checked { () throws(FormatError) in try QCow1Header.read(file) }, backing: backing)
        case .vdi: return try VDILayer(file: file, header: checked { () throws(FormatError) in try VDIHeader.read(file) })
        case .parallels: return try ParallelsLayer(file: file, header: checked { () throws(FormatError) in try ParallelsHeader.read(file) })
        case .vpc: return try VHDLayer(file: file, header: checked { () throws(FormatError) in try VHDHeader.read(file) })
        case .vhdx: return try VHDXLayer(file: file, header: checked { () throws(FormatError) in try VHDXHeader.read(file) })
        case .vmdk: return try VMDKLayer(file: file, layout: checked { () throws(FormatError) in try VMDKLayout.read(file) }, backing: backing)
        case .bochs: return try BochsLayer(file: file, header: checked { () throws(FormatError) in try BochsHeader.read(file) })
        case .cloop: return try CloopLayer(file: file, header: checked { () throws(FormatError) in try CloopHeader.read(file) })
        case .dmg: return try DMGLayer(file: file, layout: checked { () throws(FormatError) in try DMGLayout.read(file) })
        case .luks, .qcow2, .raw: throw .unsupportedFormat(path: info.filename, format: info.format.rawValue)
        }
    }
}

/// A Bochs growing redolog: a catalog of extents, each a sector bitmap then its sectors; 0xFFFFFFFF and clear bits
/// read as zeros.
final class BochsLayer: MappedLayer {
    let file: ImageFile
    let header: BochsHeader
    let catalog: TableCache
    var backing: (any GuestLayer)? { nil }
    var size: UInt64 { header.size }

    init(file: ImageFile, header: BochsHeader) throws(GuestDisk.Error) {
        self.file = file
        self.header = header
        guard let t = TableCache(file: file, base: header.headerSize, entrySize: 4, count: header.catalog, bigEndian: false, name: "catalog") else {
            throw .corrupt(path: file.path, field: "catalog", offset: header.headerSize, reason: "overflows")
        }
        catalog = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        let run = 512 - offset % 512
        let index = offset / header.extentSize, sector = (offset % header.extentSize) / 512
        let entry = try catalog.entry(index) ?? 0xFFFF_FFFF
        if entry == 0xFFFF_FFFF { return (.zero, run) }
        // The bitmap size comes from the file (up to 2^23 sectors): the products are checked.
        let (perExtent, o1) = (header.extentBlocks + header.bitmapBlocks).multipliedReportingOverflow(by: 512)
        let (into, o2) = perExtent.multipliedReportingOverflow(by: entry)
        let (bitmap, o3) = into.addingReportingOverflow(header.headerSize + header.catalog * 4)
        let (data, o4) = bitmap.addingReportingOverflow(512 * (header.bitmapBlocks + sector) + offset % 512)
        guard !(o1 || o2 || o3 || o4) else {
            throw .corrupt(path: file.path, field: "catalog entry \(index)", offset: header.headerSize + index * 4, reason: "extent offset overflows")
        }
        let bits: [UInt8]
        do { bits = try file.read(at: bitmap + sector / 8, count: 1) } catch { throw .io(error) }
        guard let b = bits.first, (b >> (sector % 8)) & 1 != 0 else { return (.zero, run) }
        return (.host(file, data), run)
    }
}

/// A cloop image: zlib-compressed blocks whose offsets follow the header.
final class CloopLayer: MappedLayer {
    let file: ImageFile
    let header: CloopHeader
    let offsets: TableCache
    var last: (UInt64, [UInt8])?
    var backing: (any GuestLayer)? { nil }
    var size: UInt64 { header.size }

    init(file: ImageFile, header: CloopHeader) throws(GuestDisk.Error) {
        self.file = file
        self.header = header
        guard let t = TableCache(file: file, base: 136, entrySize: 8, count: header.blocks + 1, bigEndian: true, name: "offsets") else {
            throw .corrupt(path: file.path, field: "offsets", offset: 136, reason: "overflow")
        }
        offsets = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        let b = header.blockSize
        let index = offset / b, inBlock = offset % b
        if let last, last.0 == index { return (.buffer(last.1, Int(inBlock)), b - inBlock) }
        let start = try offsets.entry(index) ?? 0, end = try offsets.entry(index + 1) ?? 0
        guard end >= start, end - start <= 2 * (64 << 20), end <= file.stat.size || file.stat.kind == .blockDevice else {
            throw .corrupt(path: file.path, field: "offsets[\(index + 1)]", offset: 136 + (index + 1) * 8, reason: "block offsets not increasing or block too large")
        }
        let input: [UInt8]
        do { input = try file.read(at: start, count: Int(end - start)) } catch { throw .io(error) }
        guard let out = Decompress.zlib(input, outputSize: Int(b)), out.count == Int(b) else {
            throw .corrupt(path: file.path, field: "block \(index)", offset: start, reason: "does not inflate to \(b) bytes")
        }
        last = (index, out)
        return (.buffer(out, Int(inBlock)), b - inBlock)
    }
}
