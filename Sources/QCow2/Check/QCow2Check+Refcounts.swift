/// Refcounts packed at the image's own width (1 to 64 bits), as QEMU packs its in-memory refcount table: a 1-bit
/// image costs a bit per cluster, a 64-bit one 8 bytes. Values saturate at `max`, QEMU's `refcount_max`.
struct RefcountArray {
    let bits: UInt64
    let max: UInt64
    private let perWord: UInt64
    private(set) var count: UInt64
    private var words: [UInt64]

    /// The most memory the expected refcounts may take: a sparse file of absurd length must not make the checker
    /// allocate gigabytes (QEMU would try; imgtool refuses with a check error).
    static let limitBytes: UInt64 = 1 << 30

    struct TooLarge: Swift.Error {
        var message: String
    }

    init(bits: UInt64, count: UInt64) throws(TooLarge) {
        self.bits = bits
        max = bits == 64 ? UInt64.max : (UInt64(1) << bits) - 1
        perWord = 64 / bits
        self.count = 0
        words = []
        try grow(to: count)
    }

    /// Room for `n` entries, the new ones 0.
    mutating func grow(to n: UInt64) throws(TooLarge) {
        guard n > count else { return }
        let needed = (n + perWord - 1) / perWord
        guard needed <= Self.limitBytes / 8 else {
            throw TooLarge(message: "the expected refcounts of \(n) clusters at \(bits) bits would take \(needed * 8) bytes, more than imgtool's limit of \(Self.limitBytes)")
        }
        if needed > UInt64(words.count) { words += [UInt64](repeating: 0, count: Int(needed) - words.count) }
        count = n
    }

    subscript(_ i: UInt64) -> UInt64 {
        get {
            guard i < count else { return 0 }
            let shift = (i % perWord) * bits
            return bits == 64 ? words[Int(i)] : (words[Int(i / perWord)] >> shift) & max
        }
        set {
            guard i < count else { return }
            if bits == 64 { words[Int(i)] = newValue; return }
            let shift = (i % perWord) * bits, w = Int(i / perWord)
            words[w] = (words[w] & ~(max << shift)) | ((newValue & max) << shift)
        }
    }
}

/// The refcounts the image stores: the refcount table (read whole, as QEMU reads it at open: at most 8 MiB, checked
/// by the header reader) and one refcount block at a time, as `qcow2_get_refcount` reads them.
struct StoredRefcounts {
    let table: [UInt64]
    let bits: UInt64
    let clusterSize: UInt64
    /// Refcounts per block: cluster size × 8 / width.
    let perBlock: UInt64
    private var cachedOffset: UInt64 = 0
    private var cached: [UInt8] = []

    /// Why a refcount could not be read (`qcow2_get_refcount` returned an error).
    struct Unreadable: Swift.Error {
        var block: UInt64
        var offset: UInt64
        var reason: String
    }

    init(table: [UInt64], bits: UInt64, clusterSize: UInt64) {
        self.table = table
        self.bits = bits
        self.clusterSize = clusterSize
        perBlock = clusterSize * 8 / bits
    }

    /// The stored refcount of cluster `i`: 0 past the table or where no block is allocated; an error for an unaligned
    /// block offset or one QEMU cannot read.
    mutating func get(_ i: UInt64, read: (UInt64) throws(QCow2Check.Abort) -> [UInt8]) throws(Unreadable) -> UInt64 {
        let index = i / perBlock
        guard index < UInt64(table.count) else { return 0 }
        let offset = table[Int(index)] & QCow2Check.refTableOffsetMask
        if offset == 0 { return 0 }
        guard offset % clusterSize == 0 else {
            throw Unreadable(block: index, offset: offset, reason: "its offset is not cluster aligned")
        }
        if cached.isEmpty || cachedOffset != offset {
            do { cached = try read(offset) } catch { throw Unreadable(block: index, offset: offset, reason: error.detail) }
            cachedOffset = offset
        }
        return Self.entry(cached, bits: bits, index: Int(i % perBlock))
    }

    /// Refcount `index` of a block, as QEMU's `get_refcount_ro0…6` read it (sub-byte widths from the low bits up).
    static func entry(_ block: [UInt8], bits: UInt64, index: Int) -> UInt64 {
        if bits >= 8 {
            let n = Int(bits / 8), at = index * n
            guard at + n <= block.count else { return 0 }
            var v: UInt64 = 0
            for b in block[at..<(at + n)] { v = v << 8 | UInt64(b) }
            return v
        }
        let per = 8 / Int(bits)
        guard index / per < block.count else { return 0 }
        return UInt64(block[index / per] >> UInt8((index % per) * Int(bits))) & ((1 << bits) - 1)
    }
}

extension QCow2Check {
    /// The stored refcount of cluster `i`, or why it cannot be read.
    mutating func storedRefcount(_ i: UInt64) -> Result<UInt64, StoredRefcounts.Unreadable> {
        let file = self.file, size = Int(clusterSize)
        do {
            return .success(try stored.get(i) { (o: UInt64) throws(Abort) -> [UInt8] in try Self.read(file, o, size, what: "refcount block") })
        } catch {
            return .failure(error)
        }
    }

    /// QEMU's `check_refblocks`: every refcount table entry is checked, and each refcount block counted as a reference
    /// once everything else has been; a block whose expected refcount is then not exactly 1 overlaps other metadata.
    mutating func checkRefblocks() throws(Abort) {
        for i in 0..<stored.table.count {
            let raw = stored.table[i]
            let offset = raw & Self.refTableOffsetMask
            let cluster = offset >> clusterBits
            if raw == 0 && expected.count > 0 { continue }  // empty: nothing to check or count (most entries; no name built)
            let table = "refcount table entry \(i)"
            let at = header.refcountTableOffset + UInt64(i) * 8
            if raw & Self.refTableReserved != 0 {
                note(.corruption, offset: at, table: table, "refcount table entry \(i) (at \(qcowHex(at))) has reserved bits set (\(qcowHex(raw)))")
                continue
            }
            if offset % clusterSize != 0 {
                note(.corruption, offset: at, table: table, "refcount block \(i) at \(qcowHex(offset)) is not cluster aligned: the refcount table entry is corrupted")
                continue
            }
            if cluster >= expected.count {
                note(.corruption, cluster: cluster, offset: offset, table: table,
                     "refcount block \(i) at \(qcowHex(offset)) is outside the image (the file has \(fileLength) bytes)")
                continue
            }
            if offset != 0 {
                try reference(offset, clusterSize, "refcount block \(i)")
                if !describing, expected[cluster] != 1 {
                    note(.corruption, cluster: cluster, offset: offset, table: table,
                         "refcount block \(i) at \(qcowHex(offset)) (cluster \(cluster)) is referenced \(expected[cluster]) times: it overlaps other metadata")
                }
            }
        }
    }

    /// QEMU's `compare_refcounts` without repair: every cluster's stored refcount against the expected one. A stored
    /// refcount below the references is a corruption, above a leak; one that cannot be read is a check error.
    /// Returns the highest cluster either side counts (for `image-end-offset`) and the mismatched clusters.
    mutating func compareRefcounts() -> (highest: UInt64, mismatched: [(cluster: UInt64, stored: UInt64, expected: UInt64)]) {
        var highest: UInt64 = 0
        var mismatched: [(cluster: UInt64, stored: UInt64, expected: UInt64)] = []
        var unreadable: (block: UInt64, first: UInt64, last: UInt64, offset: UInt64, reason: String)?
        func flushUnreadable(_ check: inout QCow2Check) {
            guard let u = unreadable else { return }
            let n = u.last - u.first + 1
            check.result.checkErrors += n
            check.result.findings.append(ImageCheck.Finding(
                kind: .checkError, cluster: u.first, offset: u.offset, table: "refcount table entry \(u.block)",
                message: "refcount block \(u.block) at \(qcowHex(u.offset)) cannot be read (\(u.reason)): the refcounts of clusters \(u.first) to \(u.last) are unknown (\(n) check errors)"))
            unreadable = nil
        }
        var i: UInt64 = 0
        while i < expected.count {
            let want = expected[i]
            switch storedRefcount(i) {
            case .failure(let e):
                if let u = unreadable, u.block == e.block, u.last + 1 == i { unreadable?.last = i } else {
                    flushUnreadable(&self)
                    unreadable = (e.block, i, i, e.offset, e.reason)
                }
            case .success(let have):
                if have > 0 || want > 0 { highest = i }
                if have != want {
                    if have < want { result.corruptions += 1 } else { result.leaks += 1 }
                    // The first 100,000 are described in words; beyond that they are counted only.
                    if mismatched.count < 100_000 { mismatched.append((i, have, want)) }
                }
            }
            i += 1
        }
        flushUnreadable(&self)
        return (highest, mismatched)
    }
}
