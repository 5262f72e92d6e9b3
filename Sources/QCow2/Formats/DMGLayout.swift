/// One run of guest sectors of a dmg and where its bytes are, from a `mish` block's chunk table.
struct DMGChunk: Sendable, Equatable {
    /// The block type: `DMGLayout.zeros`, `.raw`, `.ignore`, `.zlib`, `.bzip2` or `.lzfse`.
    var type: UInt32
    /// The first guest sector (the mish block's first sector added).
    var sector: UInt64
    /// How many guest sectors.
    var sectors: UInt64
    /// Where its data starts in the file (data fork, mish and chunk offsets added); nil when that sum overflows,
    /// which matters only if the chunk is read.
    var offset: UInt64?
    /// How many bytes of the file hold it.
    var length: UInt64
}

/// A dmg (UDIF) as QEMU 7.2's `dmg_open` reads it: the `koly` trailer, then the chunk tables of the `mish` blocks
/// in the resource fork or, when there is none, in the `<data>` elements of the XML property list.
struct DMGLayout: Sendable {
    /// The guest disk's size in sectors (`SectorCount`).
    var sectors: UInt64
    /// Every chunk QEMU keeps, in file order (QEMU binary-searches them in that order).
    var chunks: [DMGChunk]
    /// Where the table was read from, for messages.
    var tableOffset: UInt64

    static let zeros: UInt32 = 0, raw: UInt32 = 1, ignore: UInt32 = 2
    static let zlib: UInt32 = 0x8000_0005, bzip2: UInt32 = 0x8000_0006, lzfse: UInt32 = 0x8000_0007
    /// QEMU's DMG_LENGTHS_MAX and DMG_SECTORCOUNTS_MAX: no chunk holds more than 64 MiB of file or guest data.
    static let lengthsMax: UInt64 = 64 << 20, sectorCountsMax: UInt64 = lengthsMax / 512
    /// QEMU's cap on the XML property list.
    static let xmlMax: UInt64 = 16 << 20
    /// Our cap on the chunk table (QEMU has none but memory): 40 MiB of entries, a 1 TiB disk in Apple's 1 MiB chunks.
    static let chunksMax = 1 << 20
    /// Our cap on the resource data read at once (QEMU reads it resource by resource, each up to 4 GiB).
    static let resourceMax: UInt64 = 64 << 20

    /// Reads and checks the trailer and the chunk tables; refuses what `dmg_open` refuses.
    static func read(_ file: ImageFile) throws(FormatError) -> DMGLayout {
        func bad(_ field: String, _ offset: UInt64?, _ reason: String) -> FormatError {
            FormatError(path: file.path, format: .dmg, field: field, offset: offset, reason: reason)
        }
        let koly = try findKoly(file)
        let t = ByteWindow(try readPadded(file, at: koly, count: 512, format: .dmg, field: "UDIF trailer"))
        let dataFork = t.u64BE(0x18) ?? 0
        guard dataFork <= koly else { throw bad("DataForkOffset", koly + 0x18, "\(dataFork) lies past the trailer at \(koly)") }
        let rsrc = t.u64BE(0x28) ?? 0, rsrcLength = t.u64BE(0x30) ?? 0
        guard rsrc < koly, rsrcLength <= koly - rsrc else {
            throw bad("RsrcForkOffset", koly + 0x28, "resource fork \(rsrc)+\(rsrcLength) does not end before the trailer at \(koly)")
        }
        let xml = t.u64BE(0xD8) ?? 0, xmlLength = t.u64BE(0xE0) ?? 0
        guard xml < koly, xmlLength <= koly - xml else {
            throw bad("XMLOffset", koly + 0xD8, "property list \(xml)+\(xmlLength) does not end before the trailer at \(koly)")
        }
        let sectors = t.u64BE(0x1EC) ?? 0
        guard sectors <= UInt64(Int64.max) / 512 else { throw bad("SectorCount", koly + 0x1EC, "\(sectors) sectors is too large") }
        var table = ChunkTable(path: file.path, dataFork: dataFork)
        if rsrcLength != 0 {
            try table.readResourceFork(file, at: rsrc, length: rsrcLength)
        } else if xmlLength != 0 {
            try table.readPropertyList(file, at: xml, length: xmlLength)
        } else {
            throw bad("RsrcForkLength", koly + 0x30, "neither a resource fork nor an XML property list holds the chunk table")
        }
        return DMGLayout(sectors: sectors, chunks: table.chunks, tableOffset: rsrcLength != 0 ? rsrc : xml)
    }

    /// `dmg_find_koly_offset`: the length rounded up to sectors, as `bdrv_getlength` gives it, and "koly" in the 515
    /// bytes that end 508 bytes before it (the trailer is 512 bytes but may end in a partial sector).
    static func findKoly(_ file: ImageFile) throws(FormatError) -> UInt64 {
        let (rounded, o) = file.stat.size.addingReportingOverflow(511)
        guard !o else { throw FormatError(path: file.path, format: .dmg, field: "file size", reason: "too large") }
        let length = rounded / 512 * 512
        guard length >= 512 else { throw FormatError(path: file.path, format: .dmg, field: "file size", reason: "dmg file must be at least 512 bytes long") }
        let start = length > 1023 ? length - 1023 : 0
        let tail = try readPadded(file, at: start, count: Int(min(length, 515)), format: .dmg, field: "UDIF trailer")
        guard let i = tail.firstOffset(of: Array("koly".utf8)) else {
            throw FormatError(path: file.path, format: .dmg, field: "UDIF trailer", reason: "could not locate the UDIF trailer (koly) in the dmg file")
        }
        return start + UInt64(i)
    }
}

/// The chunk table as `dmg_read_mish_block` builds it, one mish block at a time.
struct ChunkTable: Sendable {
    let path: String
    let dataFork: UInt64
    var chunks: [DMGChunk] = []

    init(path: String, dataFork: UInt64) {
        self.path = path
        self.dataFork = dataFork
    }

    func bad(_ field: String, _ offset: UInt64?, _ reason: String) -> FormatError {
        FormatError(path: path, format: .dmg, field: field, offset: offset, reason: reason)
    }

    /// `dmg_read_resource_fork`: the offset of the resource data and its length, then resources of a 32-bit length
    /// and that many bytes each, until the data ends.
    mutating func readResourceFork(_ file: ImageFile, at begin: UInt64, length: UInt64) throws(FormatError) {
        let head = ByteWindow(try readPadded(file, at: begin, count: 12, format: .dmg, field: "resource fork"))
        let dataOffset = UInt64(head.u32BE(0) ?? 0), count = UInt64(head.u32BE(8) ?? 0)
        guard dataOffset <= length else { throw bad("resource data offset", begin, "\(dataOffset) lies past the fork's \(length) bytes") }
        guard count != 0, count <= length - dataOffset else { throw bad("resource data length", begin + 8, "\(count) bytes do not fit the fork") }
        guard count <= DMGLayout.resourceMax else { throw bad("resource data length", begin + 8, "\(count) bytes is more than the 64 MiB imgtool reads") }
        // Both within the fork, which ends before the trailer: the sum cannot overflow and the size is the file's.
        let start = begin + dataOffset
        // QEMU checks each resource's size against the data left before its 4-byte length field, then reads the
        // size bytes after that field: the last resource may take 4 bytes past the data, so those are read too.
        let end = Int(count)
        let data = try readPadded(file, at: start, count: end + 4, format: .dmg, field: "resource data")
        let w = ByteWindow(data)
        var at = 0
        // Each pass consumes at least 5 bytes of the `end` bytes.
        while at < end {
            let size = Int(w.u32BE(at) ?? 0)
            guard size != 0, size <= end - at else {
                throw bad("resource length", start + UInt64(at), "\(size) bytes do not fit the \(end - at) left of the resource data")
            }
            at += 4
            try readMish(Array(data[at..<(at + size)]), at: start + UInt64(at))
            at += size
        }
    }

    /// `dmg_read_plist_xml`: every `<data>` … `</data>` base64-decoded and read as a mish block; text after a NUL
    /// byte is not seen (QEMU searches with `strstr`).
    mutating func readPropertyList(_ file: ImageFile, at begin: UInt64, length: UInt64) throws(FormatError) {
        guard length <= DMGLayout.xmlMax else { throw bad("XMLLength", nil, "\(length) bytes is more than the 16 MiB QEMU reads") }
        var text = try readPadded(file, at: begin, count: Int(length), format: .dmg, field: "XML property list")
        if let nul = text.firstIndex(of: 0) { text.removeSubrange(nul...) }
        let open = Array("<data>".utf8), close = Array("</data>".utf8)
        var from = 0
        // Each pass moves `from` forward by at least 13 bytes.
        while let o = text[from...].firstOffset(of: open) {
            let body = o + open.count
            guard let e = text[body...].firstOffset(of: close) else {
                throw bad("XML property list", begin + UInt64(o), "<data> without </data> (malformed XML)")
            }
            guard let mish = Base64.decode(text[body..<e]) else {
                throw bad("XML <data>", begin + UInt64(body), "not valid base64")
            }
            try readMish(mish, at: begin + UInt64(body))
            from = e + close.count
        }
    }

    /// `dmg_read_mish_block`: a block without the `mish` magic or under 244 bytes is skipped; chunks of a type QEMU
    /// does not read (ADC, comments, the last-entry marker, unknown) are left out, so their sectors lie in no chunk.
    /// bzip2 and lzfse chunks are kept, as QEMU keeps them when its modules are there, and refused when read.
    mutating func readMish(_ block: [UInt8], at offset: UInt64) throws(FormatError) {
        let w = ByteWindow(block)
        guard w.u32BE(0) == 0x6D69_7368, block.count >= 244 else { return }
        let firstSector = w.u64BE(8) ?? 0
        let (base, o1) = dataFork.addingReportingOverflow(w.u64BE(0x18) ?? 0)
        let count = (block.count - 204) / 40
        guard count <= DMGLayout.chunksMax - chunks.count else {
            throw bad("mish block", offset, "more than \(DMGLayout.chunksMax) chunks in all (imgtool's limit)")
        }
        for k in 0..<count {
            let e = 204 + 40 * k
            let type = w.u32BE(e) ?? 0
            switch type {
            case DMGLayout.zeros, DMGLayout.raw, DMGLayout.ignore, DMGLayout.zlib, DMGLayout.bzip2, DMGLayout.lzfse: break
            default: continue
            }
            let index = chunks.count, at = offset + UInt64(e)
            let (sector, o2) = (w.u64BE(e + 8) ?? 0).addingReportingOverflow(firstSector)
            guard !o2 else { throw bad("chunk \(index) sector number", at + 8, "overflows 64 bits") }
            let sectors = w.u64BE(e + 0x10) ?? 0
            if type != DMGLayout.zeros, type != DMGLayout.ignore, sectors > DMGLayout.sectorCountsMax {
                throw bad("chunk \(index) sector count", at + 0x10, "sector count \(sectors) for chunk \(index) is larger than max (\(DMGLayout.sectorCountsMax))")
            }
            let (data, o3) = base.addingReportingOverflow(w.u64BE(e + 0x18) ?? 0)
            let length = w.u64BE(e + 0x20) ?? 0
            guard length <= DMGLayout.lengthsMax else {
                throw bad("chunk \(index) length", at + 0x20, "length \(length) for chunk \(index) is larger than max (\(DMGLayout.lengthsMax))")
            }
            // Appended one at a time (no reserveCapacity per block): growth stays geometric over thousands of blocks.
            chunks.append(DMGChunk(type: type, sector: sector, sectors: sectors, offset: o1 || o3 ? nil : data, length: length))
        }
    }
}
