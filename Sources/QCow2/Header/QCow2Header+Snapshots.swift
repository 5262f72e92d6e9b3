extension QCow2Header {
    /// The snapshot table as read: its entries and the bytes it spans from `snapshots_offset`.
    public struct SnapshotTable: Sendable, Equatable {
        /// The entries, in table order (qemu-img's order).
        public var snapshots: [QCow2Snapshot]
        /// Bytes from the table's start to the end of its last entry.
        public var length: UInt64
    }

    /// Reads the snapshot table of the qcow2 image in `file`, refusing it exactly where QEMU 7.2's open does.
    public func readSnapshots(from file: ImageFile) throws(QCow2Snapshot.Error) -> SnapshotTable {
        try readSnapshots(path: file.path) { (offset, buffer) throws(ImageFile.Error) in
            try file.readZeroFilled(at: offset, into: buffer)
        }
    }

    /// Reads the snapshot table through `fill`, which fills a buffer from a file offset, zeros past the end of the
    /// file (as QEMU's block layer reads: a table past the end reads as zeros, and qemu-img still opens the image).
    /// Checks, in QEMU's order: the entry count and table position (`qcow2_validate_table` in `qcow2_do_open`), then
    /// per entry the extra data size and the running table size (`qcow2_do_read_snapshots`). Reads go through a
    /// 64 KiB window, so a table costs one read per 64 KiB whatever its entry count, and nothing is allocated from a
    /// size the file gives beyond one window and one entry's strings (at most 2 × 64 KiB).
    package func readSnapshots(
        path: String, fill: @escaping (UInt64, UnsafeMutableRawBufferPointer) throws(ImageFile.Error) -> Void
    ) throws(QCow2Snapshot.Error) -> SnapshotTable {
        let count = snapshotCount
        guard count > 0 else { return SnapshotTable(snapshots: [], length: 0) }
        guard count <= QCow2Snapshot.maxSnapshots else {
            throw .invalidPointer(path: path, field: "nb_snapshots", value: UInt64(count), reason: "more than QEMU's \(QCow2Snapshot.maxSnapshots) snapshots (\"Snapshot table too large\")")
        }
        let start = snapshotsOffset
        let (minimalEnd, o) = start.addingReportingOverflow(UInt64(count) * QCow2Snapshot.headerSize)
        guard start % clusterSize == 0, !o, minimalEnd <= UInt64(Int64.max) else {
            throw .invalidPointer(path: path, field: "snapshots_offset", value: start, reason: "not cluster aligned or beyond what QEMU addresses (\"Snapshot table offset invalid\")")
        }
        var reader = WindowReader(fill: fill)
        var snapshots: [QCow2Snapshot] = []
        snapshots.reserveCapacity(Int(count))
        var offset = start
        var tableLength: UInt64 = 0
        // The header allows a table anywhere below 2^63, but QEMU reads each piece of an entry with `bdrv_pread`,
        // which fails with EIO for a request ending past `BDRV_MAX_LENGTH`: qemu-img refuses the image ("Failed to
        // read snapshot table: Input/output error") where a piece would end past it. (Past the end of the file, below
        // the limit, the pieces read as zeros.)
        func readable(_ at: UInt64, _ count: UInt64, entry: Int, from entryOffset: UInt64) throws(QCow2Snapshot.Error) {
            guard at <= QCow2Bitmap.maxRequestEnd, count <= QCow2Bitmap.maxRequestEnd - at else {
                throw .beyondReadLimit(path: path, entry: entry, offset: entryOffset)
            }
        }
        // Every step below adds at most 40 + 1024 + 2 × 65535 bytes, and the loop stops once the table passes
        // 64 MiB: `offset` stays far below 2^63 (start is below 2^63 − 40 × count, checked above).
        for i in 0..<Int(count) {
            tableLength = (tableLength + 7) & ~7
            offset = (offset + 7) & ~7
            let entryOffset = offset
            try readable(offset, QCow2Snapshot.headerSize, entry: i, from: entryOffset)
            let h = ByteWindow(try reader.bytes(at: offset, Int(QCow2Snapshot.headerSize)))
            offset += QCow2Snapshot.headerSize
            let extraSize = h.u32BE(36) ?? 0
            guard extraSize <= QCow2Snapshot.maxExtraData else {
                throw .tooMuchExtraData(path: path, entry: i, offset: entryOffset, size: extraSize)
            }
            let idSize = Int(h.u16BE(12) ?? 0)
            let nameSize = Int(h.u16BE(14) ?? 0)
            // The extra data, ID and name follow one another, read in that order with no other check between.
            try readable(offset, UInt64(extraSize) + UInt64(idSize) + UInt64(nameSize), entry: i, from: entryOffset)
            let knownExtra = min(UInt64(extraSize), QCow2Snapshot.knownExtraSize)
            let extra = ByteWindow(try reader.bytes(at: offset, Int(knownExtra)))
            // Unknown extra data (past the 24 bytes QEMU knows) is kept by QEMU and skipped here.
            offset += UInt64(extraSize)
            let id = try reader.bytes(at: offset, idSize)
            offset += UInt64(idSize)
            let name = try reader.bytes(at: offset, nameSize)
            offset += UInt64(nameSize)
            var sn = QCow2Snapshot(
                id: decodeText(id.prefix { $0 != 0 }), name: decodeText(name.prefix { $0 != 0 }),
                l1TableOffset: h.u64BE(0) ?? 0, l1Size: h.u32BE(8) ?? 0,
                vmStateSize: UInt64(h.u32BE(32) ?? 0),
                dateSeconds: h.u32BE(16) ?? 0, dateNanoseconds: h.u32BE(20) ?? 0,
                vmClockNanoseconds: h.u64BE(24) ?? 0,
                // Without the field QEMU takes the image's size in whole sectors (bs->total_sectors × 512).
                diskSize: size / 512 * 512, icount: nil, extraDataSize: extraSize, entryOffset: entryOffset)
            if extraSize >= 8, let v = extra.u64BE(0) { sn.vmStateSize = v }
            if extraSize >= 16, let v = extra.u64BE(8) { sn.diskSize = v }
            if extraSize >= 24, let v = extra.u64BE(16), v != UInt64.max { sn.icount = v }
            snapshots.append(sn)
            tableLength += QCow2Snapshot.headerSize + UInt64(extraSize) + UInt64(idSize) + UInt64(nameSize)
            guard tableLength <= QCow2Snapshot.maxTableSize, offset - start <= UInt64(Int32.max) else {
                throw .tableTooBig(path: path, entry: i, offset: entryOffset, length: tableLength)
            }
        }
        return SnapshotTable(snapshots: snapshots, length: offset - start)
    }
}

/// Reads through a 64 KiB window, refilled as the reads move on: a snapshot table is read front to back in small
/// pieces, and one pread per piece would cost a system call per field.
struct WindowReader {
    let fill: (UInt64, UnsafeMutableRawBufferPointer) throws(ImageFile.Error) -> Void
    var base: UInt64 = 0
    var window: [UInt8] = []
    static let size = 64 * 1024

    init(fill: @escaping (UInt64, UnsafeMutableRawBufferPointer) throws(ImageFile.Error) -> Void) {
        self.fill = fill
    }

    /// `count` bytes at `offset` (zeros past the end of the file). `count` is at most 65535 here.
    mutating func bytes(at offset: UInt64, _ count: Int) throws(QCow2Snapshot.Error) -> [UInt8] {
        guard count > 0 else { return [] }
        if offset >= base, offset - base <= UInt64(window.count), UInt64(count) <= UInt64(window.count) - (offset - base) {
            let s = Int(offset - base)
            return Array(window[s..<(s + count)])
        }
        let length = max(count, Self.size)
        var fresh = [UInt8](repeating: 0, count: length)
        let result: Result<Void, ImageFile.Error> = fresh.withUnsafeMutableBytes { raw in
            do throws(ImageFile.Error) { try fill(offset, raw); return .success(()) } catch { return .failure(error) }
        }
        if case .failure(let e) = result { throw .io(e) }
        base = offset
        window = fresh
        return Array(window[0..<count])
    }
}
