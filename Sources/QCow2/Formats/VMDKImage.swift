/// A hosted sparse extent's header (KDMV) as `vmdk_open_vmdk4` checks it; for a stream-optimized file whose grain
/// directory is "at end", the footer's copy of the header, as QEMU takes it.
struct VMDKSparseHeader: Sendable {
    var capacity: UInt64
    var grainSectors: UInt64
    var gtes: UInt64
    var gdOffset: UInt64
    var l1Size: UInt64
    var compressed: Bool
    var hasMarker: Bool
    var zeroGrain: Bool
    /// A KDMV file with capacity 0 and a descriptor: QEMU reads it as a descriptor file.
    var descriptorOffset: UInt64?

    static func read(_ file: ImageFile) throws(FormatError) -> VMDKSparseHeader {
        func bad(_ field: String, _ offset: UInt64?, _ reason: String) -> FormatError {
            FormatError(path: file.path, format: .vmdk, field: field, offset: offset, reason: reason)
        }
        var w = ByteWindow(try readPadded(file, at: 0, count: 512, format: .vmdk, field: "sparse header"))
        if w.u64LE(12) == 0, let d = w.u64LE(28), d != 0 {
            return VMDKSparseHeader(capacity: 0, grainSectors: 0, gtes: 0, gdOffset: 0, l1Size: 0, compressed: false, hasMarker: false, zeroGrain: false, descriptorOffset: d)
        }
        if w.u64LE(56) == UInt64.max {
            // The footer: a footer marker sector, the header sector, an end-of-stream marker, from 1536 before the end
            // (the end rounded up to a sector, as QEMU counts it).
            let end = (file.stat.size + 511) / 512 * 512
            guard end >= 1536 else { throw bad("footer", nil, "invalid footer (file too short)") }
            let f = ByteWindow(try readPadded(file, at: end - 1536, count: 1536, format: .vmdk, field: "footer"))
            guard f.starts(with: Array("KDMV".utf8), at: 512), f.u32LE(8) == 0, f.u32LE(12) == 3,
                  f.u64LE(1024) == 0, f.u32LE(1032) == 0, f.u32LE(1036) == 0 else {
                throw bad("footer", end - 1536, "invalid footer")
            }
            w = ByteWindow(Array(f.bytes[512..<1024]))
        }
        let version = w.u32LE(4) ?? 0, flags = w.u32LE(8) ?? 0
        let capacity = w.u64LE(12) ?? 0, grain = w.u64LE(20) ?? 0
        let gtes = UInt64(w.u32LE(44) ?? 0), gd = w.u64LE(56) ?? 0, grainOffset = w.u64LE(64) ?? 0
        guard version <= 3 else { throw bad("version", 4, "unsupported VMDK version \(version)") }
        guard gtes <= 512 else { throw bad("num_gtes_per_gt", 44, "L2 table size too big (\(gtes))") }
        let (l1EntrySectors, o) = gtes.multipliedReportingOverflow(by: grain)
        guard !o, l1EntrySectors != 0 else { throw bad("num_gtes_per_gt", 44, "L1 entry size is invalid (\(gtes) × \(grain))") }
        guard (file.stat.size + 511) / 512 >= grainOffset || file.stat.kind == .blockDevice else {
            throw bad("grain_offset", 64, "file truncated, expecting at least \(grainOffset) sectors")
        }
        guard grain <= 0x20_0000 else { throw bad("granularity", 20, "invalid granularity \(grain), image may be corrupt") }
        let l1Size = capacity / l1EntrySectors + (capacity % l1EntrySectors == 0 ? 0 : 1)
        guard l1Size <= 32 << 20 else { throw bad("capacity", 12, "L1 size too big (\(l1Size) entries)") }
        guard gd <= UInt64.max / 512 else { throw bad("gd_offset", 56, "\(gd) lies beyond any file") }
        return VMDKSparseHeader(capacity: capacity, grainSectors: grain, gtes: gtes, gdOffset: gd * 512, l1Size: l1Size,
                                compressed: w.u16LE(77) == 1, hasMarker: flags & (1 << 17) != 0, zeroGrain: flags & 4 != 0, descriptorOffset: nil)
    }
}

/// The extents of a VMDK as QEMU opens them: one sparse extent for a KDMV file, or the RW extent lines of a
/// descriptor, each file resolved against the descriptor's folder.
struct VMDKLayout: Sendable {
    enum Kind: Sendable {
        case sparse(VMDKSparseHeader)
        case flat(offset: UInt64)
        case unsupported(String)
    }
    struct Extent: Sendable {
        var path: String
        var fileName: String
        var sectors: UInt64
        var kind: Kind
        /// The type on the extent line (FLAT, SPARSE, …); empty for a sparse file opened directly.
        var type: String = ""
    }
    var createType: String?
    var extents: [Extent]

    /// The sum of the extents' sectors in bytes.
    var size: UInt64? {
        var total: UInt64 = 0
        for e in extents {
            let (s, o) = total.addingReportingOverflow(e.sectors)
            if o { return nil }
            total = s
        }
        return total <= UInt64.max / 512 ? total * 512 : nil
    }

    static func read(_ file: ImageFile) throws(FormatError) -> VMDKLayout {
        let head = try readPadded(file, at: 0, count: 4, format: .vmdk, field: "magic")
        let sparse = head == Array("KDMV".utf8) || head == Array("COWD".utf8)
        try checkCIDs(file, descriptorAt: sparse ? 512 : 0)
        if head == Array("COWD".utf8) {
            return VMDKLayout(createType: nil, extents: [Extent(path: file.path, fileName: "", sectors: 0, kind: .unsupported("VMDK3 (COWD) sparse extents"))])
        }
        if head == Array("KDMV".utf8) {
            let h = try VMDKSparseHeader.read(file)
            guard let d = h.descriptorOffset else {
                return VMDKLayout(createType: h.compressed ? "streamOptimized" : "monolithicSparse",
                                  extents: [Extent(path: file.path, fileName: BackingPath.fileName(file.path), sectors: h.capacity, kind: .sparse(h))])
            }
            guard d <= UInt64.max / 512 else { throw FormatError(path: file.path, format: .vmdk, field: "desc_offset", offset: 28, reason: "beyond any file") }
            return try descriptorFile(file, at: d * 512)
        }
        return try descriptorFile(file, at: 0)
    }

    /// `vmdk_read_cid`: QEMU's open needs `CID` and `parentCID` in the 10 KiB descriptor (at byte 512 of a sparse
    /// file, whatever its header says), each followed after one character by a hexadecimal number.
    static func checkCIDs(_ file: ImageFile, descriptorAt offset: UInt64) throws(FormatError) {
        let text = try readPadded(file, at: offset, count: 10240 - 1, format: .vmdk, field: "descriptor").prefix { $0 != 0 }
        for (name, skip) in [("CID", 4), ("parentCID", 10)] {
            guard let at = text.firstOffset(of: Array(name.utf8)) else {
                throw FormatError(path: file.path, format: .vmdk, field: name, offset: offset, reason: "missing from the descriptor (QEMU cannot open the image)")
            }
            var p = at + skip
            while p < text.endIndex, VMDKDescriptor.isSpace(text[p]) { p += 1 }
            if p < text.endIndex, text[p] == UInt8(ascii: "+") || text[p] == UInt8(ascii: "-") { p += 1 }
            let hex: (UInt8) -> Bool = { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) }
            guard p < text.endIndex, hex(text[p]) else {
                throw FormatError(path: file.path, format: .vmdk, field: name, offset: offset, reason: "not followed by a hexadecimal number (QEMU cannot open the image)")
            }
        }
    }

    static func descriptorFile(_ file: ImageFile, at offset: UInt64) throws(FormatError) -> VMDKLayout {
        func bad(_ field: String, _ reason: String) -> FormatError { FormatError(path: file.path, format: .vmdk, field: field, offset: offset, reason: reason) }
        let n = offset < file.stat.size ? min(file.stat.size - offset, UInt64(VMDKDescriptor.maxBytes)) : 0
        let text: [UInt8]
        do { text = try file.read(at: offset, count: Int(n)) } catch { throw bad("descriptor", error.description) }
        let d = VMDKDescriptor.parse(text)
        guard let type = d.createType else { throw bad("createType", "invalid VMDK image descriptor (no createType)") }
        guard VMDKDescriptor.descriptorFileTypes.contains(type) else { throw bad("createType", "unsupported image type '\(type)'") }
        if let line = d.invalidLine { throw bad("extent", "invalid extent line: \(line)") }
        var extents: [Extent] = []
        for e in d.extents {
            let path = BackingPath.resolve(e.fileName, relativeTo: file.path)
            // `vmdk_parse_extents` opens every extent but a ZERO one; one that is not there fails the whole open.
            if e.type != "ZERO", FileIdentity.of(path: path) == nil {
                throw bad("extent", "extent file \(e.fileName)\(path == e.fileName ? "" : " (\(path))"): no such file (QEMU cannot open the image)")
            }
            var kind: Kind
            switch e.type {
            case "FLAT", "VMFS":
                guard e.flatOffset <= UInt64.max / 512 else { throw bad("extent", "offset \(e.flatOffset) too large") }
                kind = .flat(offset: e.flatOffset * 512)
            case "SPARSE": kind = .unsupported("")  // opened by the layer, which reads the extent's own header
            default: kind = .unsupported("\(e.type) extents")
            }
            extents.append(Extent(path: path, fileName: e.fileName, sectors: e.sectors, kind: kind, type: e.type))
        }
        return VMDKLayout(createType: type, extents: extents)
    }
}
