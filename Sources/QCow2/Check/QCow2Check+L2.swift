extension QCow2Check {
    /// Which L1 table is walked: the active one (counted in `BlockFragInfo`) or a snapshot's.
    struct L1Walk {
        var offset: UInt64
        var size: UInt64
        /// "the active L1 table" or "snapshot 'x' L1 table".
        var name: String
        /// "" or "snapshot 'x' " before "L2 table at …".
        var prefix: String
        var active: Bool
    }

    /// QEMU's `check_refcounts_l1`: the L1 table, each L2 table it points to and every cluster those map.
    mutating func checkL1(_ walk: L1Walk) throws(Abort) {
        guard walk.size > 0 else { return }
        let bytes = walk.size * 8  // at most 32 MiB: the callers check the entry count
        try reference(walk.offset, bytes, walk.name)
        // QEMU reads the table in one request: one that ends beyond what it addresses fails the check. Past that
        // test, `walk.offset + bytes` cannot overflow.
        guard walk.offset <= QCow2Bitmap.maxRequestEnd, bytes <= QCow2Bitmap.maxRequestEnd - walk.offset else {
            throw Abort(reason: "Input/output error", detail: "\(walk.name) at \(qcowHex(walk.offset)) lies beyond what QEMU can address")
        }
        var i: UInt64 = 0
        // Past the end of the file every entry reads as 0: nothing more to walk.
        while i < walk.size && walk.offset + i * 8 < fileLength {
            let n = min(UInt64(Self.chunk / 8), walk.size - i)
            let l1 = try readWords(walk.offset + i * 8, Int(n * 8), what: walk.name)
            for k in 0..<Int(n) {
                let index = i + UInt64(k)
                let entry = l1[k]
                if entry == 0 { continue }
                let at = walk.offset + index * 8
                if entry & Self.l1Reserved != 0 {
                    note(.corruption, offset: at, table: walk.name, "\(walk.name) entry \(index) (at \(qcowHex(at))) has reserved bits set: \(qcowHex(entry))")
                }
                let l2 = entry & Self.offsetMask
                let l2Name = "\(walk.prefix)L2 table at \(qcowHex(l2))"
                try reference(l2, clusterSize, "\(walk.name) entry \(index) (\(l2Name))")
                if l2 % clusterSize != 0 {
                    note(.corruption, cluster: l2 >> clusterBits, offset: at, table: walk.name,
                         "\(walk.name) entry \(index) points at \(qcowHex(l2)), not cluster aligned: the L1 entry is corrupted")
                }
                let record = walk.active && !describing && copiedFlags.begin(l1Index: index, l2: l2)
                try checkL2(l2, name: l2Name, active: walk.active, record: record)
                if record { copiedFlags.end() }
            }
            i += n
        }
    }

    /// QEMU's `check_refcounts_l2`: every entry of one L2 table, its reserved bits and subcluster bitmap, and a
    /// reference to each cluster it maps (data clusters only when the data is in this file).
    /// `record`: keep the entries `checkCopiedFlags` looks at (see `CopiedFlagEntries`).
    mutating func checkL2(_ l2: UInt64, name: String, active: Bool, record: Bool = false) throws(Abort) {
        let w = try tableWords(l2, Int(clusterSize), what: name)
        let step = extendedL2 ? 2 : 1
        let entryBytes = UInt64(step * 8)
        let csizeShift = 62 - (clusterBits - 8)
        let csizeMask = (UInt64(1) << (clusterBits - 8)) - 1
        let coffsetMask = (UInt64(1) << csizeShift) - 1
        var nextContiguous: UInt64 = 0
        for j in Self.nonEmptyEntries(w, step: step) {
            var entry = w[j * step]
            let bitmap = extendedL2 ? w[j * step + 1] : 0
            let at = l2 + UInt64(j) * entryBytes
            // Named only when a finding or reference needs it: built for every entry, the names were most of the
            // check's time.
            func who() -> String { "\(name) entry \(j)" }
            let host = entry & Self.offsetMask
            if entry & Self.compressed != 0 {
                if entry & Self.copied != 0 {
                    note(.corruption, cluster: (entry & coffsetMask) >> clusterBits, offset: at, table: name,
                         "\(who()) (at \(qcowHex(at))) maps a compressed cluster with the copied flag set, which compressed clusters never have")
                    entry &= ~Self.copied
                }
                if hasDataFile {
                    note(.corruption, offset: at, table: name, "\(who()) (at \(qcowHex(at))) maps a compressed cluster, but the image has an external data file")
                    continue
                }
                if bitmap != 0 {
                    note(.corruption, offset: at, table: name, "\(who()) (at \(qcowHex(at))) maps a compressed cluster with a nonzero subcluster bitmap (\(qcowHex(bitmap)))")
                    continue
                }
                let coffset = entry & coffsetMask
                let sectors = ((entry >> csizeShift) & csizeMask) + 1
                let csize = sectors * 512 - (coffset & 511)
                try reference(coffset, csize, "\(who()) (compressed data)")
                if active { allocatedClusters += 1; compressedClusters += 1; fragmentedClusters += 1 }
                continue
            }
            if entry & Self.l2Reserved != 0 {
                note(.corruption, cluster: host >> clusterBits, offset: at, table: name, "\(who()) (at \(qcowHex(at))) has reserved bits set: \(qcowHex(entry))")
            }
            switch clusterType(entry) {
            case .normal, .zeroAllocated:
                if record { copiedFlags.add(index: j, entry: entry) }
                if (bitmap >> 32) & bitmap != 0 {
                    note(.corruption, cluster: host >> clusterBits, offset: at, table: name,
                         "\(who()) (at \(qcowHex(at))): the subcluster bitmap \(qcowHex(bitmap)) marks subclusters both allocated and zero")
                }
                if host % clusterSize != 0 {
                    let data = extendedL2 ? bitmap & 0xFFFF_FFFF != 0 : entry & Self.zero == 0
                    note(.corruption, cluster: host >> clusterBits, offset: at, table: name,
                         "\(who()) (at \(qcowHex(at))) maps \(data ? "data" : "a preallocated zero cluster") at \(qcowHex(host)), not cluster aligned: the L2 entry is corrupted")
                }
                if active {
                    allocatedClusters += 1
                    if nextContiguous != 0 && host != nextContiguous { fragmentedClusters += 1 }
                    nextContiguous = host &+ clusterSize
                }
                if !hasDataFile { try reference(host, clusterSize, who()) }
            case .zeroPlain:
                break
            case .unallocated:
                if bitmap & 0xFFFF_FFFF != 0 {
                    note(.corruption, offset: at, table: name, "\(who()) (at \(qcowHex(at))) has no cluster but its subcluster bitmap marks subclusters allocated (\(qcowHex(bitmap)))")
                }
            }
        }
    }

    /// The indexes of the entries of `words` (entries of `step` words) that are not all zero. Most entries of a
    /// sparse image's tables are empty: finding the others four words at a time, then walking only those, took the
    /// walk of a 100 GiB image's 1.6 million entries from a sixth of `check`'s time to almost nothing (perf).
    static func nonEmptyEntries(_ words: [UInt64], step: Int) -> [Int] {
        words.withUnsafeBufferPointer { w in
            var found: [Int] = []
            let count = w.count / step
            var j = 0
            if step == 1 {
                while j + 4 <= count {
                    if w[j] | w[j + 1] | w[j + 2] | w[j + 3] != 0 {
                        for k in j..<(j + 4) where w[k] != 0 { found.append(k) }
                    }
                    j += 4
                }
            }
            while j < count {
                var any: UInt64 = 0
                for k in 0..<step { any |= w[j * step + k] }
                if any != 0 { found.append(j) }
                j += 1
            }
            return found
        }
    }

    enum ClusterType { case normal, zeroAllocated, zeroPlain, unallocated }

    /// QEMU's `qcow2_get_cluster_type` for an entry that is not compressed.
    func clusterType(_ entry: UInt64) -> ClusterType {
        if entry & Self.zero != 0 && !extendedL2 {
            return entry & Self.offsetMask != 0 ? .zeroAllocated : .zeroPlain
        }
        if entry & Self.offsetMask == 0 {
            // Offset 0 is a real offset in an external data file; the copied flag tells it from unallocated.
            return hasDataFile && entry & Self.copied != 0 ? .normal : .unallocated
        }
        return .normal
    }
}
