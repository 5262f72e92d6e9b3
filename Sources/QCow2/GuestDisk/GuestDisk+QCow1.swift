/// A qcow (version 1) header, checked as `qcow_open` checks it.
struct QCow1Header: Sendable {
    var size: UInt64
    var clusterBits: UInt64
    var l2Bits: UInt64
    var cryptMethod: UInt32
    var l1Offset: UInt64
    var l1Size: UInt64

    static func read(_ file: ImageFile) throws(FormatError) -> QCow1Header {
        let w = ByteWindow(try readPadded(file, at: 0, count: 48, format: .qcow, field: "header"))
        func bad(_ field: String, _ reason: String) -> FormatError { FormatError(path: file.path, format: .qcow, field: field, reason: reason) }
        let size = w.u64BE(24) ?? 0
        let cb = UInt64(w.u8(32) ?? 0), l2b = UInt64(w.u8(33) ?? 0)
        guard size <= UInt64(Int64.max) / 512 else { throw bad("size", "image size too large") }
        guard cb >= 9, cb <= 16 else { throw bad("cluster_bits", "cluster size must be between 512 and 64k (\(cb))") }
        guard l2b >= 6, l2b <= 13 else { throw bad("l2_bits", "L2 table size must be between 512 and 64k (\(l2b))") }
        let crypt = w.u32BE(36) ?? 0
        guard crypt <= 1 else { throw bad("crypt_method", "invalid encryption method \(crypt)") }
        if let bo = w.u64BE(8), bo != 0, (w.u32BE(16) ?? 0) > 1023 { throw bad("backing_file_size", "backing file name too long") }
        let shift = cb + l2b
        guard size <= UInt64.max - (1 << shift) else { throw bad("size", "image too large") }
        let l1Size = (size + (1 << shift) - 1) >> shift
        guard l1Size <= UInt64(Int32.max) / 8 else { throw bad("size", "image too large") }
        return QCow1Header(size: size, clusterBits: cb, l2Bits: l2b, cryptMethod: crypt, l1Offset: w.u64BE(40) ?? 0, l1Size: l1Size)
    }
}

/// A qcow v1 layer: big-endian L1/L2 tables of byte offsets; bit 63 marks a deflate-compressed cluster.
final class QCow1Layer: MappedLayer {
    let file: ImageFile
    let header: QCow1Header
    let backing: (any GuestLayer)?
    let l1: TableCache
    var l2: [UInt64: TableCache] = [:]
    var lastCompressed: (UInt64, [UInt8])?
    var size: UInt64 { header.size & ~511 }

    init(file: ImageFile, header: QCow1Header, backing: (any GuestLayer)?) throws(GuestDisk.Error) {
        if header.cryptMethod != 0 { throw .encrypted(path: file.path) }
        self.file = file
        self.header = header
        self.backing = backing
        guard let t = TableCache(file: file, base: header.l1Offset, entrySize: 8, count: header.l1Size, bigEndian: true, name: "L1") else {
            throw .corrupt(path: file.path, field: "l1_table_offset", offset: header.l1Offset, reason: "table overflows")
        }
        l1 = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        let c = UInt64(1) << header.clusterBits, n = UInt64(1) << header.l2Bits
        let cluster = offset / c, inCluster = offset % c
        let run = c - inCluster
        let l2Offset = try l1.entry(cluster / n) ?? 0
        if l2Offset == 0 { return (.backing, run) }
        if l2[l2Offset] == nil {
            if l2.count >= 64 { l2.removeAll(keepingCapacity: true) }
            guard let t = TableCache(file: file, base: l2Offset, entrySize: 8, count: n, bigEndian: true, name: "L2") else {
                throw .corrupt(path: file.path, field: "L1 entry \(cluster / n)", offset: l2Offset, reason: "L2 table offset overflows")
            }
            l2[l2Offset] = t
        }
        let entry = try l2[l2Offset]?.entry(cluster % n) ?? 0
        if entry == 0 { return (.backing, run) }
        if entry & (1 << 63) == 0 {
            let (at, o) = entry.addingReportingOverflow(inCluster)
            guard !o else { throw .corrupt(path: file.path, field: "L2 entry for cluster \(cluster)", offset: entry, reason: "offset overflows") }
            return (.host(file, at), run)
        }
        if let last = lastCompressed, last.0 == entry { return (.buffer(last.1, Int(inCluster)), run) }
        let shift = 63 - header.clusterBits
        let coffset = entry & ((UInt64(1) << shift) - 1)
        let csize = (entry >> shift) & (c - 1)
        let input: [UInt8]
        let size = file.stat.size
        guard file.stat.kind == .blockDevice || (coffset < size && csize <= size - coffset) else {
            throw .corrupt(path: file.path, field: "compressed cluster \(cluster)", offset: coffset, reason: "beyond the end of the file")
        }
        do { input = try file.read(at: coffset, count: Int(csize)) } catch { throw .io(error) }
        guard input.count == Int(csize), let out = Decompress.deflate(input, outputSize: Int(c)) else {
            throw .corrupt(path: file.path, field: "compressed cluster \(cluster)", offset: coffset, reason: "does not decompress")
        }
        lastCompressed = (entry, out)
        return (.buffer(out, Int(inCluster)), run)
    }
}
