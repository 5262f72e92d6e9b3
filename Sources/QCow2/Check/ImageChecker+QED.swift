extension ImageChecker {
    /// QED, as QEMU 7.2's `qed_check` (block/qed-check.c) counts, read-only:
    /// - `total-clusters` is the image size in clusters, rounded up;
    /// - the L1 table's clusters are marked used; an L1 entry that is not a valid table offset (aligned, past the
    ///   header, the table inside the file) is a corruption; an L2 table whose clusters are already used counts a
    ///   corruption per such cluster and is skipped;
    /// - every L2 entry other than 0 (backing) and 1 (zero) is an allocated cluster, fragmented when it does not
    ///   follow the previous allocated entry of the same table; an invalid offset is a corruption, and a valid one
    ///   already used is a corruption too;
    /// - every cluster of the file (its size rounded down to clusters) past the header that nothing uses is a leak.
    /// The need-check feature bit is not counted by qemu-img's read-only check (only `-r` clears it): a note says it.
    static func checkQED(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        var h: QEDHeader
        do { h = try QEDHeader.read(file) } catch { throw .unopenable(path: info.filename, reason: error.description) }
        // QEMU's file size is the file's (or device's) length rounded down to a cluster.
        h.fileSize = file.qemuLength / h.clusterSize * h.clusterSize
        var r = ImageCheck(filename: info.filename, format: .qed)
        let c = h.clusterSize, n = h.tableEntries
        // QEMU 7.2's `qed_bytes_to_clusters` rounds up to a cluster, then divides by cluster_size - 1: from cluster
        // c - 1 on, its indices run ahead of the clusters and skip one every c - 1 clusters. The skipped indices
        // are never marked, so qemu-img counts each as a leak (a 20 MiB file of 4 KiB clusters: 1). Counted so.
        func index(_ offset: UInt64) -> UInt64 { (offset / c + (offset % c == 0 ? 0 : 1)) * c / (c - 1) }
        let clusters = index(h.fileSize)
        // One bit an index: the file's own size bounds it (a 1 TiB file of 4 KiB clusters: 32 MiB).
        var used = CheckBits(count: clusters)

        if h.features & 2 != 0 {
            r.record(.note, offset: 16, table: "header",
                     "The need-check feature bit is set: the image was not closed cleanly. qemu-img counts nothing for it; `qemu-img check -r` clears it when the image is otherwise clean.")
        }
        r.totalClusters = h.imageSize / c + (h.imageSize % c == 0 ? 0 : 1)

        /// `qed_set_used_clusters`: marks `count` clusters from `offset`; every one already marked is a corruption.
        func use(_ offset: UInt64, _ count: UInt64, _ what: String) -> Bool {
            var clean = true
            let first = index(offset)
            for k in 0..<count where used.insert(first + k) {
                r.record(.corruption, cluster: offset / c + k, offset: offset + k * c, table: what,
                         "Cluster at \(hex(offset + k * c)) of the \(what) is already used by another table or cluster.")
                clean = false
            }
            return clean
        }

        guard let l1 = TableCache(file: file, base: h.l1Offset, entrySize: 8, count: n, bigEndian: false, name: "L1") else {
            throw .unopenable(path: info.filename, reason: "the L1 table at \(hex(h.l1Offset)) overflows")
        }
        _ = use(h.l1Offset, h.tableSize, "L1 table")
        var allocated: UInt64 = 0, fragmented: UInt64 = 0
        for i in 0..<n {
            let l2Offset: UInt64
            do { l2Offset = try l1.entry(i) ?? 0 } catch { throw checkError(error, info.filename) }
            if l2Offset == 0 { continue }
            guard h.tableOffsetValid(l2Offset) else {
                r.record(.corruption, offset: h.l1Offset + i * 8, table: "L1 table",
                         "L1 entry \(i) points to \(hex(l2Offset)), not a valid L2 table offset (cluster-aligned, past the header, the whole table inside the file of \(h.fileSize) bytes).")
                continue
            }
            if !use(l2Offset, h.tableSize, "L2 table at \(hex(l2Offset))") { continue }
            guard let l2 = TableCache(file: file, base: l2Offset, entrySize: 8, count: n, bigEndian: false, name: "L2") else { continue }
            var last: UInt64 = 0
            for j in 0..<n {
                let data: UInt64
                do { data = try l2.entry(j) ?? 0 } catch { throw checkError(error, info.filename) }
                if data == 0 || data == 1 { continue }
                allocated += 1
                // Wrapping as QEMU's unsigned sum wraps; only equality matters.
                if last != 0 && last &+ c != data { fragmented += 1 }
                last = data
                guard h.clusterOffsetValid(data) else {
                    r.record(.corruption, cluster: i * n + j, offset: l2Offset + j * 8, table: "L2 table at \(hex(l2Offset))",
                             "L2 entry \(j) (guest cluster \(i * n + j)) points to \(hex(data)), not a valid data cluster (cluster-aligned, past the header, inside the file of \(h.fileSize) bytes).")
                    continue
                }
                _ = use(data, 1, "data cluster of guest cluster \(i * n + j)")
            }
        }
        r.allocatedClusters = allocated
        r.fragmentedClusters = fragmented

        // Leaks, reported as runs of unused clusters; an index no cluster has (see `index`) on its own.
        var run: (start: UInt64, count: UInt64)?
        func flush() {
            guard let (s, k) = run else { return }
            r.record(.leak, count: k, cluster: s, offset: s * c, table: "file",
                     k == 1 ? "Cluster \(s) (offset \(hex(s * c))) is used by no table: leaked."
                            : "Clusters \(s)–\(s + k - 1) (offsets \(hex(s * c))–\(hex((s + k) * c - 1))) are used by no table: \(k) leaked clusters.")
            run = nil
        }
        var i = h.headerSize, cluster = h.headerSize
        while i < clusters {
            // The cluster whose index is i, if one is: index(cluster · c) grows by 1 or 2 a cluster.
            while index(cluster * c) < i { cluster += 1 }
            if used.contains(i) {
                flush()
            } else if index(cluster * c) != i {
                flush()
                r.record(.leak, cluster: i, table: "file",
                         "qemu-img counts a leak at its cluster index \(i), which no cluster has: QEMU 7.2 numbers clusters by offset / (cluster size − 1), skipping an index every \(c - 1) clusters (no data is lost).")
            } else if let (s, m) = run {
                run = (s, m + 1)
            } else {
                run = (cluster, 1)
            }
            i += 1
        }
        flush()
        r.finish()
        return r
    }
}
