extension QCow2Check {
    /// QEMU's `qcow2_check_read_snapshot_table` without repair: the table is read as at open (a table QEMU cannot
    /// read stops the check), then every version 3 entry must carry at least 16 bytes of extra data (the large VM
    /// state size and the disk size), else it is a corruption.
    mutating func readSnapshotTable() throws(Abort) -> QCow2Header.SnapshotTable {
        let table: QCow2Header.SnapshotTable
        // `qcow2_validate_table` runs on the header's pointer even with no snapshots: an unaligned or unaddressable
        // offset fails the check (the reader below returns early for a count of 0).
        if header.snapshotCount == 0, header.snapshotsOffset % clusterSize != 0 || header.snapshotsOffset > UInt64(Int64.max) {
            throw Abort(reason: "Invalid argument", detail: "the snapshot table offset \(qcowHex(header.snapshotsOffset)) is not cluster aligned or beyond what QEMU addresses")
        }
        do { table = try header.readSnapshots(from: file) } catch {
            // The errno of `qcow2_validate_table` (EFBIG for too many entries, EINVAL for the place) or of
            // `qcow2_do_read_snapshots` (EFBIG for too much extra data or a table past 64 MiB).
            let reason: String
            switch error {
            case .tooMuchExtraData, .tableTooBig: reason = "File too large"
            case .io, .beyondReadLimit: reason = "Input/output error"
            case .invalidPointer(_, let field, _, _): reason = field == "nb_snapshots" ? "File too large" : "Invalid argument"
            }
            throw Abort(reason: reason, detail: "the snapshot table cannot be read: \(error)")
        }
        if header.version >= 3 {
            for (i, sn) in table.snapshots.enumerated() where sn.extraDataSize < 16 {
                note(.corruption, offset: sn.entryOffset, table: "snapshot table",
                     "snapshot table entry \(i) ('\(sn.name)', at \(qcowHex(sn.entryOffset))) is incomplete: a version 3 entry needs 16 bytes of extra data, it has \(sn.extraDataSize)")
            }
        }
        return table
    }

    /// The snapshots part of QEMU's `calculate_refcounts`: each snapshot's L1 table and what it maps (a misaligned or
    /// oversized L1 table is a corruption and skipped), then the snapshot table itself.
    mutating func checkSnapshots(_ table: QCow2Header.SnapshotTable) throws(Abort) {
        if hasDataFile && !table.snapshots.isEmpty {
            note(.corruption, table: "snapshot table", "the image has \(table.snapshots.count) internal snapshots and an external data file, which cannot go together")
        }
        for sn in table.snapshots {
            let label = "snapshot '\(sn.name)' (id \(sn.id))"
            if sn.l1TableOffset % clusterSize != 0 {
                note(.corruption, offset: sn.entryOffset, table: "snapshot table",
                     "\(label): its L1 table offset \(qcowHex(sn.l1TableOffset)) is not cluster aligned: the snapshot table entry is corrupted")
                continue
            }
            if sn.l1Size > QCow2Snapshot.maxL1Entries {
                note(.corruption, offset: sn.entryOffset, table: "snapshot table",
                     "\(label): its L1 table has \(sn.l1Size) entries, more than QEMU's \(QCow2Snapshot.maxL1Entries): the snapshot table entry is corrupted")
                continue
            }
            try checkL1(L1Walk(offset: sn.l1TableOffset, size: UInt64(sn.l1Size), name: "\(label) L1 table",
                               prefix: "snapshot '\(sn.name)' ", active: false))
        }
        try reference(header.snapshotsOffset, table.length, "the snapshot table")
    }

    /// QEMU's `qcow2_check_bitmaps_refcounts`: the bitmap directory, each bitmap's table and its data clusters. A
    /// directory or table QEMU cannot load is a corruption that stops the check.
    mutating func checkBitmaps() throws(Abort) {
        guard let ext = header.bitmaps, header.autoclearFeatures & 1 != 0, ext.count > 0 else { return }
        try reference(ext.directoryOffset, ext.directorySize, "the bitmap directory")
        let bitmaps: [QCow2Bitmap]
        do { bitmaps = try header.readBitmaps(from: file) } catch {
            note(.corruption, offset: ext.directoryOffset, table: "bitmap directory", "the bitmap directory cannot be loaded: \(error)")
            throw Abort(reason: "Invalid argument", detail: "the bitmap directory cannot be loaded")
        }
        for bm in bitmaps {
            let name = "bitmap '\(bm.name)' table"
            // At most 2^20 entries (the directory reader bounds a table's data at 512 MiB), so at most 8 MiB.
            let bytes = UInt64(bm.tableSize) * 8
            try reference(bm.tableOffset, bytes, name)
            let entries: [UInt64]
            do { entries = try tableWords(bm.tableOffset, Int(bytes), what: name) } catch {
                note(.corruption, offset: bm.tableOffset, table: name, "\(name) at \(qcowHex(bm.tableOffset)) cannot be read: \(error.detail)")
                throw error
            }
            // `bitmap_table_load` refuses the whole table at its first bad entry.
            for (k, entry) in entries.enumerated() {
                let offset = entry & Self.offsetMask
                if entry & 0xFF00_0000_0000_01FE != 0 || (offset != 0 && (entry & 1 != 0 || offset % clusterSize != 0)) {
                    let at = bm.tableOffset + UInt64(k) * 8
                    note(.corruption, offset: at, table: name, "\(name) entry \(k) (at \(qcowHex(at))) is invalid: \(qcowHex(entry)) (reserved bits set or data not cluster aligned)")
                    throw Abort(reason: "Invalid argument", detail: "\(name) cannot be loaded")
                }
            }
            for (k, entry) in entries.enumerated() {
                let offset = entry & Self.offsetMask
                if offset != 0 { try reference(offset, clusterSize, "\(name) entry \(k) (bitmap data)") }
            }
        }
    }
}
