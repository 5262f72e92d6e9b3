/// A QED image's header, checked as `bdrv_qed_do_open` checks it.
struct QEDHeader: Sendable {
    var clusterSize: UInt64
    var tableSize: UInt64
    var headerSize: UInt64
    var features: UInt64
    var l1Offset: UInt64
    var imageSize: UInt64
    /// The file size (whole sectors, rounded up, as `bdrv_getlength` gives it) rounded down to a cluster, as QEMU keeps it.
    var fileSize: UInt64

    var tableEntries: UInt64 { clusterSize * tableSize / 8 }
    var tableBytes: UInt64 { clusterSize * tableSize }

    static func read(_ file: ImageFile) throws(FormatError) -> QEDHeader {
        let w = ByteWindow(try readPadded(file, at: 0, count: 64, format: .qed, field: "header"))
        func bad(_ field: String, _ reason: String) -> FormatError { FormatError(path: file.path, format: .qed, field: field, reason: reason) }
        let cluster = UInt64(w.u32LE(4) ?? 0), table = UInt64(w.u32LE(8) ?? 0), header = UInt64(w.u32LE(12) ?? 0)
        let features = w.u64LE(16) ?? 0
        if features & ~UInt64(7) != 0 { throw bad("features", "unsupported QED features 0x\(String(features & ~7, radix: 16))") }
        guard isPowerOfTwo(cluster), cluster >= 4096, cluster <= 64 << 20 else { throw bad("cluster_size", "\(cluster) is not a power of two from 4 KiB to 64 MiB") }
        guard isPowerOfTwo(table), table <= 16 else { throw bad("table_size", "\(table) is not a power of two from 1 to 16") }
        var h = QEDHeader(clusterSize: cluster, tableSize: table, headerSize: header, features: features,
                          l1Offset: w.u64LE(40) ?? 0, imageSize: w.u64LE(48) ?? 0, fileSize: file.qemuLength / cluster * cluster)
        let entries = h.tableEntries
        let (maxSize, o) = entries.multipliedReportingOverflow(by: entries)
        let (maxBytes, o2) = maxSize.multipliedReportingOverflow(by: cluster)
        guard h.imageSize % 512 == 0, o || o2 || h.imageSize <= maxBytes else { throw bad("image_size", "\(h.imageSize) is not a multiple of 512 or larger than the tables can map") }
        guard h.tableOffsetValid(h.l1Offset) else { throw bad("l1_table_offset", "\(h.l1Offset) is not a cluster inside the file past the header") }
        guard header <= UInt64(UInt32.max) / cluster else { throw bad("header_size", "\(header) clusters overflow") }
        if features & 1 != 0, let off = w.u32LE(56), let n = w.u32LE(60), UInt64(off) + UInt64(n) > cluster * header {
            throw bad("backing_filename_offset", "the backing name lies outside the header clusters")
        }
        if file.stat.kind == .blockDevice { h.fileSize = UInt64.max / 2 }
        return h
    }

    /// `qed_check_cluster_offset`: aligned, past the header, inside the file.
    func clusterOffsetValid(_ off: UInt64) -> Bool {
        off % clusterSize == 0 && off >= headerSize * clusterSize && off < fileSize
    }

    /// `qed_check_table_offset`: the table's first and last cluster are valid. QEMU's overflow check (end ≤ start)
    /// also refuses every table of one cluster, so qemu-img cannot open the table_size=1 images it creates; nor can we.
    func tableOffsetValid(_ off: UInt64) -> Bool {
        let (end, o) = off.addingReportingOverflow((tableSize - 1) * clusterSize)
        return !o && end > off && clusterOffsetValid(off) && clusterOffsetValid(end)
    }
}

/// A QED layer: L1 and L2 tables of little-endian offsets; 1 means a zero cluster, 0 the backing file.
final class QEDLayer: MappedLayer {
    let file: ImageFile
    let header: QEDHeader
    let backing: (any GuestLayer)?
    let l1: TableCache
    var l2: [UInt64: TableCache] = [:]
    var size: UInt64 { header.imageSize }

    init(file: ImageFile, header: QEDHeader, backing: (any GuestLayer)?) throws(GuestDisk.Error) {
        self.file = file
        self.header = header
        self.backing = backing
        guard let t = TableCache(file: file, base: header.l1Offset, entrySize: 8, count: header.tableEntries, bigEndian: false, name: "L1") else {
            throw .corrupt(path: file.path, field: "l1_table_offset", offset: header.l1Offset, reason: "table overflows")
        }
        l1 = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        let c = header.clusterSize, n = header.tableEntries
        let cluster = offset / c
        let run = c - offset % c
        let l2Offset = try l1.entry(cluster / n) ?? 0
        if l2Offset == 0 { return (.backing, run) }
        guard header.tableOffsetValid(l2Offset) else {
            throw .corrupt(path: file.path, field: "L1 entry \(cluster / n)", offset: l2Offset, reason: "L2 table offset invalid")
        }
        if l2[l2Offset] == nil {
            if l2.count >= 64 { l2.removeAll(keepingCapacity: true) }
            l2[l2Offset] = TableCache(file: file, base: l2Offset, entrySize: 8, count: n, bigEndian: false, name: "L2")
        }
        let data = try l2[l2Offset]?.entry(cluster % n) ?? 0
        if data == 0 { return (.backing, run) }
        if data == 1 { return (.zero, run) }
        guard header.clusterOffsetValid(data) else {
            throw .corrupt(path: file.path, field: "L2 entry for cluster \(cluster)", offset: data, reason: "data cluster offset invalid")
        }
        return (.host(file, data + offset % c), run)
    }
}
