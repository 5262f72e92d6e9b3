extension Verification {
    /// Each bitmap's table judged as `qemu-img check` judges it (`qcow2_check_bitmaps_refcounts`, then
    /// `qcow2_inc_refcounts_imrt`): a table with a cluster starting at or past the end of the file is corruption,
    /// even though QEMU opens the image (it reads zeros there). In-use bitmaps count too: check reads every table.
    static func verifyBitmapTables(_ h: QCow2Header, _ bitmaps: [QCow2Bitmap], path: String, size: UInt64, _ v: inout Verification) {
        for (i, bm) in bitmaps.enumerated() {
            // tableSize ≥ 1 and ≤ 2^27 (readBitmaps checked), so the table is 8 bytes to 1 GiB long.
            let (last, o) = bm.tableOffset.addingReportingOverflow(UInt64(bm.tableSize) * 8 - 1)
            let lastCluster = last & ~(h.clusterSize - 1)
            if o || lastCluster >= size {
                v.findings.append(Finding(check: "bitmap \(i) bitmap_table_offset", unsafe: true, message:
                    "\(path): bitmap \(i) '\(bm.name)' (entry at offset \(bm.entryOffset)): its table (offset \(bm.tableOffset), \(bm.tableSize) entries) lies past the end of the file (\(size) bytes); qemu-img check: corrupt"))
            }
        }
    }
}
