extension ImageChecker {
    /// qcow2, as QEMU 7.2's `qcow2_co_check` counts without repair: the snapshot table (`qcow2_check_read_snapshot_table`),
    /// then `qcow2_check_refcounts` (expected refcounts from every reference, the refcount blocks, the comparison,
    /// the copied flags), `image-end-offset` and `BlockFragInfo`. When QEMU would stop (qemu-img: "Check failed"),
    /// `aborted` says why and the counts are those gathered so far.
    static func checkQCow2(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        guard let header = info.qcow2 else {
            throw .unopenable(path: info.filename, reason: "the qcow2 header was not read")
        }
        var out = ImageCheck(filename: info.filename, format: .qcow2)
        let cs = header.clusterSize
        // qemu-img's total-clusters: the virtual size in whole sectors, in clusters.
        let sectorsBytes = header.size / 512 * 512
        out.totalClusters = sectorsBytes / cs + (sectorsBytes % cs == 0 ? 0 : 1)
        out.allocatedClusters = 0
        out.fragmentedClusters = 0
        out.compressedClusters = 0
        notes(header, info: info, into: &out)

        // QEMU's `bdrv_getlength` of the file: its size in whole 512-byte sectors, rounded up.
        let length = file.stat.size / 512 * 512 + (file.stat.size % 512 == 0 ? 0 : 512)
        let clusters = length / cs + (length % cs == 0 ? 0 : 1)
        guard clusters <= UInt64(Int32.max) else {
            out.checkErrors += 1
            out.aborted = "File too large"
            out.findings.append(.init(kind: .checkError, message: "the file has \(clusters) clusters, more than QEMU checks (\(Int32.max)): qemu-img check fails with \"File too large\""))
            return out
        }
        let expected: RefcountArray
        do { expected = try RefcountArray(bits: header.refcountBits, count: clusters) } catch {
            out.checkErrors += 1
            out.aborted = "Cannot allocate memory"
            out.findings.append(.init(kind: .checkError, message: error.message))
            return out
        }
        var check = QCow2Check(
            file: file, header: header, path: info.filename, clusterSize: cs, clusterBits: UInt64(header.clusterBits),
            fileLength: length, hasDataFile: header.hasExternalDataFile, extendedL2: header.hasExtendedL2,
            expected: expected, stored: StoredRefcounts(table: [], bits: header.refcountBits, clusterSize: cs), result: out)
        do throws(QCow2Check.Abort) {
            // The refcount table as QEMU reads it at open (at most 8 MiB: the header reader checks its size).
            let tableBytes = UInt64(header.refcountTableClusters) * cs
            let table = try check.tableWords(header.refcountTableOffset, Int(tableBytes), what: "the refcount table")
            check.stored = StoredRefcounts(table: table, bits: header.refcountBits, clusterSize: cs)
            let snapshots = try check.readSnapshotTable()
            try check.calculateRefcounts(snapshots)
            let (highest, mismatched) = check.compareRefcounts()
            // The mismatches are described after the copied flags are checked (the words need a second walk), but
            // listed where QEMU reports them: before the copied flags' findings.
            let comparedAt = check.result.findings.count
            try check.checkCopiedFlags()
            check.result.imageEndOffset = (highest + 1) * cs
            if !mismatched.isEmpty { check.describe(mismatched, snapshots, at: comparedAt) }
        } catch {
            check.result.checkErrors += 1
            check.result.aborted = error.reason
            check.result.findings.append(.init(kind: .checkError, message: "the check stopped where qemu-img check stops (\"Check failed: \(error.reason)\"): \(error.detail)"))
        }
        check.result.allocatedClusters = check.allocatedClusters
        check.result.fragmentedClusters = check.fragmentedClusters
        check.result.compressedClusters = check.compressedClusters
        check.result.capFindings()
        return check.result
    }

    /// The dirty and corrupt bits, and what qemu-img check cannot open: said, not counted.
    static func notes(_ header: QCow2Header, info: ImageInfo, into out: inout ImageCheck) {
        if header.isDirty {
            out.findings.append(.init(kind: .note, offset: 72, table: "header",
                message: "the image is marked dirty\(header.lazyRefcounts ? " (lazy refcounts)" : ""): its refcounts were not brought up to date before it was closed. QEMU repairs them (as qemu-img check -r all) the next time it opens the image read-write; qemu-img check itself counts them as stored, as here"))
        }
        if header.isCorrupt {
            out.findings.append(.init(kind: .note, offset: 72, table: "header",
                message: "the image is marked corrupt: QEMU found an inconsistency while writing and refuses to open it read-write until qemu-img check -r repairs it"))
        }
        if header.encryptionName != nil {
            out.findings.append(.init(kind: .note, table: "header",
                message: "the image is encrypted (\(header.encryptionName ?? "")): qemu-img check needs its key to open it; imgtool checks the tables without it"))
        }
    }
}

extension QCow2Check {
    /// QEMU's `calculate_refcounts`: a reference from the header, the active L1 and L2 tables, the snapshots, the
    /// snapshot table, the refcount table, the encryption header, the bitmaps, then the refcount blocks.
    mutating func calculateRefcounts(_ snapshots: QCow2Header.SnapshotTable) throws(Abort) {
        try reference(0, clusterSize, "the header")
        try checkL1(L1Walk(offset: header.l1TableOffset, size: UInt64(header.l1Size), name: "the active L1 table", prefix: "", active: true))
        try checkSnapshots(snapshots)
        try reference(header.refcountTableOffset, UInt64(header.refcountTableClusters) * clusterSize, "the refcount table")
        if let c = header.cryptoHeader, c.length > 0 { try reference(c.offset, c.length, "the encryption header") }
        try checkBitmaps()
        try checkRefblocks()
    }

    /// The words for every mismatched cluster: a second walk records who references each (up to 8 referrers), then
    /// one finding per run of consecutive clusters with the same stored and expected refcounts.
    mutating func describe(_ mismatched: [(cluster: UInt64, stored: UInt64, expected: UInt64)], _ snapshots: QCow2Header.SnapshotTable, at position: Int) {
        // Enough to name the referrers of the first 4096 mismatches; the rest are counted and summarised by runs.
        var pass = self
        pass.describing = true
        pass.watch = Set(mismatched.prefix(4096).map(\.cluster))
        pass.referrers = [:]
        try? pass.calculateRefcounts(snapshots)
        let who = pass.referrers
        var words: [ImageCheck.Finding] = []
        var k = 0
        // Sentences only while they can still be kept (`capFindings` trims what the insertion pushes past the cap).
        while k < mismatched.count, words.count < ImageCheck.maxFindings {
            let m = mismatched[k]
            var end = k
            while end + 1 < mismatched.count, mismatched[end + 1].cluster == mismatched[end].cluster + 1,
                  mismatched[end + 1].stored == m.stored, mismatched[end + 1].expected == m.expected,
                  who[mismatched[end + 1].cluster] == nil, who[m.cluster] == nil {
                end += 1
            }
            let kind: ImageCheck.Finding.Kind = m.stored < m.expected ? .corruption : .leak
            let first = m.cluster, last = mismatched[end].cluster
            let refs = m.expected == 1 ? "1 reference" : "\(m.expected) references"
            let names = who[first].map { " (" + $0.joined(separator: ", ") + (UInt64($0.count) < m.expected ? ", …" : "") + ")" } ?? ""
            let what = kind == .leak ? (m.expected == 0 ? ": leaked" : ": leaked references") : ": too few (a corruption: freeing one reference would free data still in use)"
            let message: String
            if first == last {
                message = "cluster \(first) (\(qcowHex(first << clusterBits))) has refcount \(m.stored) but \(refs)\(names)\(what)"
            } else {
                message = "clusters \(first) to \(last) (\(qcowHex(first << clusterBits)) to \(qcowHex(((last + 1) << clusterBits) - 1)), \(last - first + 1) clusters) each have refcount \(m.stored) but \(refs)\(what)"
            }
            words.append(ImageCheck.Finding(kind: kind, cluster: first, offset: first << clusterBits, table: "refcount block \(first / stored.perBlock)", message: message))
            k = end + 1
        }
        // Every mismatch is counted already; the ones left without a sentence are said in the cap's note.
        var rest = UInt64(0)
        while k < mismatched.count {
            var end = k
            while end + 1 < mismatched.count, mismatched[end + 1].cluster == mismatched[end].cluster + 1,
                  mismatched[end + 1].stored == mismatched[k].stored, mismatched[end + 1].expected == mismatched[k].expected,
                  who[mismatched[end + 1].cluster] == nil, who[mismatched[k].cluster] == nil {
                end += 1
            }
            rest += 1
            k = end + 1
        }
        result.omittedFindings += rest
        result.findings.insert(contentsOf: words, at: min(position, result.findings.count))
    }
}
