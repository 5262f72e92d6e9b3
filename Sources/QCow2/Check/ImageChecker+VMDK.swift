extension ImageChecker {
    /// VMDK, as QEMU 7.2's `vmdk_co_check` (block/vmdk.c) walks: from sector 0, a step of the current extent's grain
    /// (a flat extent's whole size) at a time, it looks each sector's cluster up (`get_cluster_offset`); the first
    /// one allocated at or after the end of its extent file (a flat extent: its start offset) stops the check, and
    /// so does a lookup that fails (past the grain directory). Then qemu-img prints no counts, only
    /// "Check failed: Invalid argument" (or "Operation not permitted" for the failed lookup), and exits 1; the
    /// result here says so in `aborted`, with one corruption as QEMU's result holds. Otherwise the check is clean:
    /// qemu-img counts nothing else for VMDK.
    ///
    /// QEMU visits every grain; here an unallocated grain table's whole span is stepped over at once and each grain
    /// table is scanned once (its bad entries kept), so the work follows the tables in the file, not the disk size.
    static func checkVMDK(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        let layout: VMDKLayout
        do { layout = try VMDKLayout.read(file) } catch { throw .unopenable(path: info.filename, reason: error.description) }
        let layer: VMDKLayer
        do { layer = try VMDKLayer(file: file, layout: layout, backing: nil) } catch { throw checkError(error, info.filename) }
        var r = ImageCheck(filename: info.filename, format: .vmdk)
        var scan = VMDKGrainTableScan()
        let total = layer.size / 512
        var sector: UInt64 = 0
        var index = 0
        walk: while sector < total {
            // `find_extent` from the last one found on.
            while index < layer.extents.count && sector >= (layer.extents[index].start + layer.extents[index].bytes) / 512 { index += 1 }
            guard index < layer.extents.count else { break }
            let e = layer.extents[index], reader = e.reader
            let start = e.start / 512, end = (e.start + e.bytes) / 512
            let fileSize = reader.file.qemuLength
            guard let h = reader.sparse, let gd = reader.gd else {
                // A flat extent: one step of its whole size, its start offset against its file's length.
                if reader.flatOffset >= fileSize {
                    pointsAfterEOF(&r, sector, "extent \(index + 1) (flat, \(reader.file.path))", reader.flatOffset, fileSize)
                    break walk
                }
                sector += e.bytes / 512
                continue
            }
            let grain = h.grainSectors, perTable = h.gtes * grain
            let rel = sector - start
            let l1 = rel / perTable
            guard l1 < h.l1Size else {
                r.record(.corruption, offset: sector * 512, table: "grain directory",
                         "Sector \(sector): grain directory entry \(l1) is past the directory's \(h.l1Size) entries; the lookup fails.")
                r.fail("Operation not permitted")
                break walk
            }
            // The positions left in this grain table's span (and this extent), one a grain.
            let spanEnd = min(start + (l1 + 1) * perTable, end)
            let steps = (spanEnd - sector + grain - 1) / grain
            // Directory entries past the end of the file read as 0: no table, nothing further to find here.
            if entriesInFile(reader.file, base: h.gdOffset, entrySize: 4, count: h.l1Size) <= l1 {
                sector += (end - sector + grain - 1) / grain * grain
                continue
            }
            let gtSector: UInt64
            do { gtSector = try gd.entry(l1) ?? 0 } catch { throw checkError(error, info.filename) }
            if gtSector != 0 {
                let first = (rel / grain) % h.gtes
                let bad: [UInt16]
                do throws(GuestDisk.Error) { bad = try scan.badEntries(index, reader, h, gtSector) } catch { throw checkError(error, info.filename) }
                if let j = bad.first(where: { UInt64($0) >= first && UInt64($0) < first + steps }) {
                    let s = sector + (UInt64(j) - first) * grain
                    let value = scan.lastValue(reader, h, gtSector, UInt64(j))
                    pointsAfterEOF(&r, s, "grain table at sector \(gtSector) entry \(j) (\(reader.file.path))", value << 9, fileSize)
                    break walk
                }
                if scan.exhausted {
                    r.record(.checkError, table: "grain directory",
                             "More than \(VMDKGrainTableScan.maxTables) distinct grain tables: imgtool stops here (qemu-img would go on).")
                    break walk
                }
            }
            sector += steps * grain
        }
        r.finish()
        return r
    }

    /// `vmdk_co_check`'s "cluster offset for sector N points after EOF".
    private static func pointsAfterEOF(_ r: inout ImageCheck, _ sector: UInt64, _ what: String, _ offset: UInt64, _ size: UInt64) {
        r.record(.corruption, offset: offset, table: what,
                 "Sector \(sector) maps through \(what) to offset \(hex(offset)), at or after the end of the extent file (\(size) bytes).")
        r.fail("Invalid argument")
    }
}

/// The grain tables met by a VMDK check, each scanned once for entries pointing at or after the end of its file.
struct VMDKGrainTableScan {
    /// The most distinct grain tables scanned: a 2 TiB extent of 64 KiB grains has 65,536; a directory whose
    /// entries point at a million distinct (overlapping) tables is built to make a checker work, and is stopped.
    static let maxTables = 1 << 20
    private struct Key: Hashable { var extent: Int; var sector: UInt64 }
    private var seen: [Key: [UInt16]] = [:]
    private(set) var scanned = 0
    var exhausted: Bool { scanned > Self.maxTables }

    /// The indices of the table's entries that are allocated (not 0, not the zero grain 1 when the header allows
    /// it) at or after the end of the file, ascending.
    mutating func badEntries(_ extent: Int, _ reader: VMDKExtentReader, _ h: VMDKSparseHeader, _ gtSector: UInt64) throws(GuestDisk.Error) -> [UInt16] {
        let key = Key(extent: extent, sector: gtSector)
        if let b = seen[key] { return b }
        scanned += 1
        // One read of the whole table (at most 2 KiB), zeros past the end of the file, as QEMU reads it.
        let count = Int(h.gtes) * 4
        var bytes: [UInt8]
        do { bytes = try reader.file.read(at: gtSector * 512, count: count) } catch { throw .io(error) }
        if bytes.count < count { bytes += [UInt8](repeating: 0, count: count - bytes.count) }
        let size = reader.file.qemuLength
        var bad: [UInt16] = []
        bytes.withUnsafeBytes { raw in
            for j in 0..<Int(h.gtes) {
                let v = UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: j * 4, as: UInt32.self)))
                if v == 0 || (v == 1 && h.zeroGrain) { continue }
                if v << 9 >= size { bad.append(UInt16(j)) }
            }
        }
        if seen.count >= 1 << 16 { seen.removeAll(keepingCapacity: true) }
        seen[key] = bad
        return bad
    }

    /// Entry `j` of a table already scanned (for the message).
    func lastValue(_ reader: VMDKExtentReader, _ h: VMDKSparseHeader, _ gtSector: UInt64, _ j: UInt64) -> UInt64 {
        guard let t = TableCache(file: reader.file, base: gtSector * 512, entrySize: 4, count: h.gtes, bigEndian: false, name: "grain table") else { return 0 }
        return (try? t.entry(j)).flatMap { $0 } ?? 0
    }
}
