/// The entries of the active L2 tables that QEMU's `check_oflag_copied` looks at (not compressed; normal or
/// preallocated zero), kept while `checkL1` walks the active table, so the copied-flag pass reads no L2 table twice.
/// Both passes read the same table at the same offset and length from a file nothing writes, so the kept entries are
/// the ones a second read would give; a table that is not kept (past the limit, or never walked) is read again.
/// On a 100 GiB image with 200 mostly empty L2 tables, the second read and walk of all 1.6 million entries was a
/// third of `check`'s time (perf).
struct CopiedFlagEntries {
    /// One kept table: the L1 entry that named it and where its entries are in `slots` and `entries`.
    struct Table {
        var l1Index: UInt64
        var l2: UInt64
        var range: Range<Int>
    }

    /// At most this many entries (12 bytes each: 3 MiB) and tables (32 bytes each: 8 MiB) are kept. Past it, tables
    /// are read again.
    static let limit = 1 << 18

    private(set) var tables: [Table] = []
    /// Each kept entry's index in its table, and the entry.
    private(set) var slots: [UInt32] = []
    private(set) var entries: [UInt64] = []
    private var open: (l1Index: UInt64, l2: UInt64, start: Int)?
    private var full = false
    private var cursor = 0

    /// Starts keeping the entries of the table `l2` that active L1 entry `l1Index` names; false once the limit is met.
    mutating func begin(l1Index: UInt64, l2: UInt64) -> Bool {
        // Tables count against the limit too: a hostile L1 of 4 Mi entries naming empty tables would otherwise keep
        // 4 Mi records (128 MiB) holding no entry at all.
        guard !full, tables.count < Self.limit else { return false }
        open = (l1Index, l2, slots.count)
        return true
    }

    /// Keeps entry `index` (its table's entry number) of the table begun.
    mutating func add(index: Int, entry: UInt64) {
        guard let o = open else { return }
        guard slots.count < Self.limit else {
            // This table is only partly kept: drop it, and keep no more.
            slots.removeSubrange(o.start...)
            entries.removeSubrange(o.start...)
            open = nil
            full = true
            return
        }
        slots.append(UInt32(truncatingIfNeeded: index))
        entries.append(entry)
    }

    /// Ends the table begun: it is now whole.
    mutating func end() {
        guard let o = open else { return }
        tables.append(Table(l1Index: o.l1Index, l2: o.l2, range: o.start..<slots.count))
        open = nil
    }

    /// The kept entries of the table `l2` that active L1 entry `l1Index` names, or nil if it must be read. The
    /// copied-flag pass asks in increasing `l1Index` order, the order they were kept in.
    mutating func kept(l1Index: UInt64, l2: UInt64) -> Range<Int>? {
        while cursor < tables.count && tables[cursor].l1Index < l1Index { cursor += 1 }
        guard cursor < tables.count, tables[cursor].l1Index == l1Index, tables[cursor].l2 == l2 else { return nil }
        return tables[cursor].range
    }
}

extension QCow2Check {
    /// QEMU's `check_oflag_copied`: in the active tables the copied flag must be set exactly where the stored
    /// refcount is 1 (an L2 table's, a data cluster's; data in an external file always counts 1). A refcount that
    /// cannot be read skips the entry (its error was counted when the refcounts were compared).
    mutating func checkCopiedFlags() throws(Abort) {
        let size = UInt64(header.l1Size)
        let step = extendedL2 ? 2 : 1
        var i: UInt64 = 0
        // The header reader bounds the table (at most 32 MiB, below 2^56); past the end of the file it reads as 0.
        while i < size && header.l1TableOffset + i * 8 < fileLength {
            let n = min(UInt64(Self.chunk / 8), size - i)
            let l1 = try readWords(header.l1TableOffset + i * 8, Int(n * 8), what: "the active L1 table")
            for k in 0..<Int(n) {
                let index = i + UInt64(k)
                let entry = l1[k]
                let l2 = entry & Self.offsetMask
                if l2 == 0 { continue }
                guard case .success(let refcount) = storedRefcount(l2 >> clusterBits) else { continue }
                let at = header.l1TableOffset + index * 8
                if (refcount == 1) != (entry & Self.copied != 0) {
                    note(.corruption, cluster: l2 >> clusterBits, offset: at, table: "the active L1 table",
                         "active L1 entry \(index) (at \(qcowHex(at))): the L2 table at \(qcowHex(l2)) has refcount \(refcount) but the copied flag is \(entry & Self.copied != 0 ? "set" : "clear") (it must be set exactly when the refcount is 1)")
                }
                if let kept = copiedFlags.kept(l1Index: index, l2: l2) {
                    for m in kept { checkCopiedFlag(copiedFlags.entries[m], index: Int(copiedFlags.slots[m]), l2: l2) }
                    continue
                }
                let w = try tableWords(l2, Int(clusterSize), what: "L2 table at \(qcowHex(l2))")
                for j in 0..<(w.count / step) {
                    let e = w[j * step]
                    guard e & Self.compressed == 0 else { continue }
                    let type = clusterType(e)
                    guard type == .normal || type == .zeroAllocated else { continue }
                    checkCopiedFlag(e, index: j, l2: l2)
                }
            }
            i += n
        }
    }

    /// One L2 entry of the copied-flag pass: a data cluster (normal or preallocated zero) and its stored refcount.
    private mutating func checkCopiedFlag(_ e: UInt64, index j: Int, l2: UInt64) {
        let data = e & Self.offsetMask
        let rc: UInt64
        if hasDataFile { rc = 1 } else {
            guard case .success(let r) = storedRefcount(data >> clusterBits) else { return }
            rc = r
        }
        if (rc == 1) != (e & Self.copied != 0) {
            let name = "L2 table at \(qcowHex(l2))"
            let eat = l2 + UInt64(j * (extendedL2 ? 16 : 8))
            note(.corruption, cluster: data >> clusterBits, offset: eat, table: name,
                 "\(name) entry \(j) (at \(qcowHex(eat))): the data cluster at \(qcowHex(data)) has refcount \(rc) but the copied flag is \(e & Self.copied != 0 ? "set" : "clear") (it must be set exactly when the refcount is 1)")
        }
    }
}
