extension Verification {
    /// The snapshot table checked as QEMU reads it when it opens the image (`qcow2_read_snapshots`: refused there
    /// means refused here) and as `qemu-img check` judges each entry (L1 table aligned, not too large, inside the
    /// file), plus what an untrusted image must not do: metadata that overlaps other metadata. `size` is the file's.
    static func verifySnapshots(_ h: QCow2Header, _ file: ImageFile, size: UInt64, _ v: inout Verification) {
        func add(_ check: String, _ message: String) { v.findings.append(Finding(check: check, unsafe: true, message: message)) }
        guard h.snapshotCount > 0 else { return }
        let table: QCow2Header.SnapshotTable
        do { table = try h.readSnapshots(from: file) } catch {
            add("snapshot table: \(error.field)", error.description)
            return
        }
        let path = file.path
        let (tableEnd, o) = h.snapshotsOffset.addingReportingOverflow(table.length)
        if o || tableEnd > size {
            add("snapshot table", "\(path): the snapshot table (offset \(h.snapshotsOffset), \(table.length) bytes) runs past the end of the file (\(size) bytes)")
        }
        if h.hasExternalDataFile {
            add("snapshot table", "\(path): \(table.snapshots.count) internal snapshots in an image with an external data file (qemu-img check: corrupt)")
        }
        // The regions every snapshot L1 table must stay clear of.
        var regions: [(name: String, start: UInt64, length: UInt64)] = [
            ("the header cluster", 0, h.clusterSize),
            ("the active L1 table", h.l1TableOffset, UInt64(h.l1Size) * 8),
            ("the refcount table", h.refcountTableOffset, UInt64(h.refcountTableClusters) * h.clusterSize),
            ("the snapshot table", h.snapshotsOffset, table.length),
        ]
        for (i, sn) in table.snapshots.enumerated() {
            let which = "snapshot \(i) (id \(sn.id), entry at offset \(sn.entryOffset))"
            if sn.l1TableOffset % h.clusterSize != 0 {
                add("snapshot \(i) l1_table_offset", "\(path): \(which): l1_table_offset = \(sn.l1TableOffset) is not cluster aligned; snapshot table entry corrupted (qemu-img check)")
                continue
            }
            if sn.l1Size > QCow2Snapshot.maxL1Entries {
                add("snapshot \(i) l1_size", "\(path): \(which): l1_size = \(sn.l1Size) entries: L1 table is too large (QEMU's limit is \(QCow2Snapshot.maxL1Entries)); snapshot table entry corrupted (qemu-img check)")
                continue
            }
            let bytes = UInt64(sn.l1Size) * 8
            let (end, over) = sn.l1TableOffset.addingReportingOverflow(bytes)
            if over || end > size {
                add("snapshot \(i) l1_table_offset", "\(path): \(which): its L1 table (offset \(sn.l1TableOffset), \(sn.l1Size) entries) lies outside the file (\(size) bytes)")
                continue
            }
            if bytes > 0, let hit = regions.first(where: { overlaps(sn.l1TableOffset, bytes, $0.start, $0.length) }) {
                add("snapshot \(i) l1_table_offset", "\(path): \(which): its L1 table (offset \(sn.l1TableOffset), \(bytes) bytes) overlaps \(hit.name)")
                continue
            }
            if bytes > 0 { regions.append(("the L1 table of snapshot \(i)", sn.l1TableOffset, bytes)) }
        }
        if let hit = regions.prefix(3).first(where: { overlaps(h.snapshotsOffset, table.length, $0.start, $0.length) }) {
            add("snapshot table", "\(path): the snapshot table (offset \(h.snapshotsOffset), \(table.length) bytes) overlaps \(hit.name)")
        }
    }

    /// True when the byte ranges [a, a+al) and [b, b+bl) share a byte (empty ranges share none).
    static func overlaps(_ a: UInt64, _ al: UInt64, _ b: UInt64, _ bl: UInt64) -> Bool {
        guard al > 0, bl > 0 else { return false }
        let (ae, o1) = a.addingReportingOverflow(al)
        let (be, o2) = b.addingReportingOverflow(bl)
        return a < (o2 ? UInt64.max : be) && b < (o1 ? UInt64.max : ae)
    }
}
