/// A VMDK layer: its extents one after another; sparse extents through their grain directory and tables (grain 1
/// is a zero grain when the header allows it), compressed grains of stream-optimized files inflated, flat extents
/// read at their offset. Extent files must lie in the descriptor's own folder: a descriptor that names a file
/// elsewhere is refused rather than read (it is how a hostile image makes a reader disclose host files).
final class VMDKLayer: MappedLayer {
    let file: ImageFile
    let backing: (any GuestLayer)?
    let size: UInt64
    var extents: [(start: UInt64, bytes: UInt64, reader: VMDKExtentReader)] = []

    init(file: ImageFile, layout: VMDKLayout, backing: (any GuestLayer)?) throws(GuestDisk.Error) {
        self.file = file
        self.backing = backing
        var start: UInt64 = 0
        for e in layout.extents {
            let reader: VMDKExtentReader
            var sectors = e.sectors
            switch e.kind {
            case .unsupported(let what) where !what.isEmpty:
                throw .unsupportedFormat(path: file.path, format: "vmdk with \(what)")
            case .sparse(let h) where e.path == file.path:
                reader = try VMDKExtentReader(file: file, sparse: h)
            default:
                guard !e.fileName.contains("/"), !BackingPath.isProtocol(e.fileName), !e.fileName.isEmpty else {
                    throw .corrupt(path: file.path, field: "extent \"\(e.fileName)\"", offset: 0, reason: "names a file outside the image's folder; imgtool reads only extents beside the descriptor")
                }
                let f: ImageFile
                do { f = try ImageFile.open(e.path) } catch { throw .io(error) }
                if case .flat(let offset) = e.kind {
                    reader = VMDKExtentReader(flat: f, offset: offset)
                } else {
                    let h: VMDKSparseHeader
                    do { h = try VMDKSparseHeader.read(f) } catch { throw .open(.invalid(error)) }
                    guard h.descriptorOffset == nil else { throw .unsupportedFormat(path: e.path, format: "vmdk extent that is itself a descriptor") }
                    reader = try VMDKExtentReader(file: f, sparse: h)
                    sectors = h.capacity  // QEMU sizes a sparse extent by its own header
                }
            }
            guard sectors <= (UInt64.max - start) / 512 else { throw .corrupt(path: file.path, field: "extent sizes", offset: 0, reason: "overflow") }
            extents.append((start, sectors * 512, reader))
            start += sectors * 512
        }
        size = start
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        for e in extents where offset >= e.start && offset - e.start < e.bytes {
            let (x, run) = try e.reader.map(offset - e.start)
            return (x, min(run, e.bytes - (offset - e.start)))
        }
        return (.zero, 512)
    }
}

/// One extent's mapping.
final class VMDKExtentReader {
    let file: ImageFile
    let sparse: VMDKSparseHeader?
    let flatOffset: UInt64
    let gd: TableCache?
    var gts: [UInt64: TableCache] = [:]
    var lastGrain: (UInt64, [UInt8])?
    /// The largest grain imgtool inflates (QEMU allows 1 GiB; qemu-img writes 64 KiB).
    static let maxCompressedGrain: UInt64 = 32 << 20

    init(flat: ImageFile, offset: UInt64) {
        file = flat
        sparse = nil
        flatOffset = offset
        gd = nil
    }

    init(file: ImageFile, sparse h: VMDKSparseHeader) throws(GuestDisk.Error) {
        self.file = file
        sparse = h
        flatOffset = 0
        guard let t = TableCache(file: file, base: h.gdOffset, entrySize: 4, count: h.l1Size, bigEndian: false, name: "grain directory") else {
            throw .corrupt(path: file.path, field: "gd_offset", offset: h.gdOffset, reason: "grain directory overflows")
        }
        gd = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        guard let h = sparse, let gd else {
            let (at, o) = flatOffset.addingReportingOverflow(offset)
            return o ? (.zero, 512) : (.host(file, at), UInt64.max)
        }
        let grainBytes = h.grainSectors * 512
        let grain = offset / grainBytes, inGrain = offset % grainBytes
        let run = grainBytes - inGrain
        // A failed lookup reads as unallocated, as in QEMU (get_cluster_offset's errors fall through to the parent).
        let gtSector = try gd.entry(grain / h.gtes) ?? 0
        if gtSector == 0 { return (.backing, run) }
        if gts[gtSector] == nil {
            if gts.count >= 64 { gts.removeAll(keepingCapacity: true) }
            gts[gtSector] = TableCache(file: file, base: gtSector * 512, entrySize: 4, count: h.gtes, bigEndian: false, name: "grain table")
        }
        let sector = try gts[gtSector]?.entry(grain % h.gtes) ?? 0
        if sector == 1 && h.zeroGrain { return (.zero, run) }
        if sector == 0 { return (.backing, run) }
        if !h.compressed { return (.host(file, sector * 512 + inGrain), run) }
        if let last = lastGrain, last.0 == sector { return (.buffer(last.1, Int(inGrain)), run) }
        let out = try inflateGrain(h, at: sector * 512, grainBytes: grainBytes)
        guard out.count >= Int(grainBytes) || UInt64(out.count) > inGrain else {
            throw .corrupt(path: file.path, field: "compressed grain \(grain)", offset: sector * 512, reason: "inflates to \(out.count) bytes")
        }
        lastGrain = (sector, out)
        return (.buffer(out, Int(inGrain)), min(run, UInt64(out.count) - inGrain))
    }

    /// `vmdk_read_extent` for a compressed grain: two grains' worth read, a marker (LBA, size) first when the
    /// header says so, then zlib data.
    func inflateGrain(_ h: VMDKSparseHeader, at: UInt64, grainBytes: UInt64) throws(GuestDisk.Error) -> [UInt8] {
        guard grainBytes <= Self.maxCompressedGrain else {
            throw .corrupt(path: file.path, field: "granularity", offset: 20, reason: "compressed grains of \(grainBytes) bytes are larger than imgtool inflates")
        }
        // Two grains' worth, as QEMU reads, but never more than the file holds (past its end QEMU reads zeros,
        // which add nothing a marker or a zlib stream could use).
        let have = file.stat.kind == .blockDevice ? 2 * grainBytes : at < file.stat.size ? min(2 * grainBytes, file.stat.size - at) : 0
        var buf: [UInt8]
        do { buf = try file.read(at: at, count: Int(have)) } catch { throw .io(error) }
        var data = buf[...]
        if h.hasMarker {
            let w = ByteWindow(buf)
            guard let n = w.u32LE(8), n > 0, Int(n) <= buf.count - 12 else {
                throw .corrupt(path: file.path, field: "grain marker", offset: at, reason: "compressed size out of bounds")
            }
            data = buf[12..<(12 + Int(n))]
        }
        guard let out = Decompress.zlib(Array(data), outputSize: Int(grainBytes)) else {
            throw .corrupt(path: file.path, field: "compressed grain", offset: at, reason: "does not inflate")
        }
        buf.removeAll()
        return out
    }
}
