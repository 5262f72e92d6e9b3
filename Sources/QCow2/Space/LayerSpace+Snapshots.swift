/// What a qcow2 image's internal snapshots and persistent bitmaps hold: for each snapshot the clusters only it
/// references (its L1 table, and the L2 tables and data clusters whose refcount is 1 that it points at), and the
/// bitmaps' directory, tables and data clusters.
public struct HeldBySnapshots: Sendable, Equatable {
    /// One internal snapshot.
    public struct Snapshot: Sendable, Equatable {
        /// Its ID, as `qemu-img snapshot -l` shows it.
        public var id: String
        /// Its name (text from the image: shown escaped).
        public var name: String
        /// Bytes of the file only this snapshot references: deleting it would free them.
        public var alone: UInt64
    }
    /// The snapshots, in table order.
    public var snapshots: [Snapshot] = []
    /// Bytes the persistent bitmaps take (directory, tables, data clusters).
    public var bitmaps: UInt64 = 0
}

extension QCow2SpaceReader {
    /// Limits QEMU keeps too (qcow2.h): no more snapshots or larger tables than QEMU itself opens.
    static let maxSnapshots: UInt64 = 65536
    static let maxSnapshotTable: UInt64 = 64 << 20
    /// Table entries looked at, over every snapshot and bitmap: a hostile image may point thousands of snapshots at
    /// one huge table, and the walk must end.
    static let maxHeldEntries: UInt64 = 1 << 26

    /// The snapshots' and bitmaps' holdings. Refcounts are looked up through a small cache of refcount blocks.
    func held() throws(LayerSpace.Error) -> HeldBySnapshots {
        var out = HeldBySnapshots()
        let cs = header.clusterSize
        var refs = RefcountLookup(reader: self)
        var budget = Self.maxHeldEntries
        func spend(_ n: UInt64) throws(LayerSpace.Error) {
            guard n <= budget else {
                throw .tooLarge(path: path, table: "snapshot and bitmap tables", bytes: Self.maxHeldEntries * 8, limit: Self.maxHeldEntries * 8)
            }
            budget -= n
        }
        let count = UInt64(header.snapshotCount)
        if count > 0 {
            guard count <= Self.maxSnapshots else { throw .tooLarge(path: path, table: "snapshot table", bytes: count, limit: Self.maxSnapshots) }
            var at = header.snapshotsOffset
            let end = at.addingReportingOverflow(Self.maxSnapshotTable)
            for index in 0..<count {
                let table = "snapshot table entry \(index)"
                guard !end.overflow, at < end.partialValue, inside(at, 40) else { throw corrupt(table, at, "runs past the end of the file or the 64 MiB QEMU allows") }
                let w = ByteWindow(try read(at, 40))
                let l1Offset = w.u64BE(0) ?? 0, l1Size = UInt64(w.u32BE(8) ?? 0)
                let idSize = UInt64(w.u16BE(12) ?? 0), nameSize = UInt64(w.u16BE(14) ?? 0), extra = UInt64(w.u32BE(36) ?? 0)
                guard extra <= 1024 else { throw corrupt(table, at, "extra data of \(extra) bytes (QEMU allows 1024)") }
                let text = try read(at + 40 + extra, idSize + nameSize)
                let id = decodeText(text.prefix(Int(idSize))), name = decodeText(text.dropFirst(Int(idSize)))
                let entryBytes = (40 + extra + idSize + nameSize + 7) / 8 * 8
                at += entryBytes
                guard l1Size <= 1 << 22, l1Offset % cs == 0, inside(l1Offset, l1Size * 8) else {
                    throw corrupt(table, l1Offset, "snapshot L1 table of \(l1Size) entries is misplaced or too large")
                }
                var alone: UInt64 = 0
                // Only the bytes in the file: an L1 table written last sits in a cluster the file ends inside, and
                // deleting the snapshot frees no more than those (inside() checked l1Offset ≤ fileSize).
                if try refs.count(l1Offset) == 1 { alone += min((l1Size * 8 + cs - 1) / cs * cs, fileSize - l1Offset) }
                var i: UInt64 = 0
                while i < l1Size {
                    let n = min(Self.chunk / 8, l1Size - i)
                    try spend(n)
                    let l1 = ByteWindow(try read(l1Offset + i * 8, n * 8))
                    for k in 0..<n {
                        let l2 = (l1.u64BE(Int(k * 8)) ?? 0) & Self.offsetMask
                        guard l2 != 0 else { continue }
                        guard l2 % cs == 0, inside(l2, cs) else { throw corrupt("\(table): L1 entry \(i + k)", l2, "L2 table misplaced") }
                        // A table shared with the active image or another snapshot holds nothing this one alone does.
                        guard try refs.count(l2) == 1 else { continue }
                        alone += cs
                        try spend(cs / 8)
                        let t = try read(l2, cs)
                        var words = [UInt64](repeating: 0, count: Int(cs / 8))
                        words.withUnsafeMutableBytes { dst in t.withUnsafeBytes { dst.copyMemory(from: $0) } }
                        let step = header.hasExtendedL2 ? 2 : 1
                        for e in stride(from: 0, to: words.count, by: step) {
                            let entry = UInt64(bigEndian: words[e])
                            guard entry != 0, entry & (1 << 62) == 0, !header.hasExternalDataFile else { continue }
                            let host = entry & Self.offsetMask
                            if host != 0, host % cs == 0, try refs.count(host) == 1 { alone += cs }
                        }
                    }
                    i += n
                }
                out.snapshots.append(.init(id: id, name: name, alone: alone))
            }
        }
        if let b = header.bitmaps, b.count > 0 {
            guard b.directorySize <= 64 << 20, inside(b.directoryOffset, b.directorySize) else {
                throw corrupt("bitmap directory", b.directoryOffset, "\(b.directorySize) bytes misplaced or too large")
            }
            out.bitmaps += min((b.directorySize + cs - 1) / cs * cs, fileSize - b.directoryOffset)  // in the file only
            let dir = ByteWindow(try read(b.directoryOffset, b.directorySize))
            var at = 0
            for index in 0..<Int(b.count) {
                guard dir.has(at, 24) else { throw corrupt("bitmap directory entry \(index)", b.directoryOffset + UInt64(at), "runs past the directory") }
                let tableOffset = dir.u64BE(at) ?? 0, tableSize = UInt64(dir.u32BE(at + 8) ?? 0)
                let nameSize = Int(dir.u16BE(at + 18) ?? 0), extra = Int(dir.u32BE(at + 20) ?? 0)
                guard extra <= 1 << 20, tableSize <= 1 << 22, tableOffset % cs == 0, inside(tableOffset, tableSize * 8) else {
                    throw corrupt("bitmap directory entry \(index)", b.directoryOffset + UInt64(at), "bitmap table misplaced or too large")
                }
                at += (24 + extra + nameSize + 7) / 8 * 8
                out.bitmaps += (tableSize * 8 + cs - 1) / cs * cs
                try spend(tableSize + 1)
                let t = ByteWindow(try read(tableOffset, tableSize * 8))
                for k in 0..<Int(tableSize) where (t.u64BE(k * 8) ?? 0) & 0x00FF_FFFF_FFFF_FE00 != 0 { out.bitmaps += cs }
            }
        }
        return out
    }
}

/// Refcounts of single clusters, through the refcount table and a bounded cache of refcount blocks.
struct RefcountLookup {
    let reader: QCow2SpaceReader
    var blocks: [UInt64: [UInt8]] = [:]

    /// The refcount of the cluster at host offset `offset` (0 past the table's reach).
    mutating func count(_ offset: UInt64) throws(LayerSpace.Error) -> UInt64 {
        let h = reader.header
        let cs = h.clusterSize, bits = h.refcountBits
        let perBlock = cs * 8 / bits
        let cluster = offset / cs
        let index = cluster / perBlock
        guard index < UInt64(h.refcountTableClusters) * cs / 8 else { return 0 }
        if blocks[index] == nil {
            let entry = ByteWindow(try reader.read(h.refcountTableOffset + index * 8, 8)).u64BE(0) ?? 0
            let block = entry & ~UInt64(511)
            if block == 0 { return 0 }
            guard block % cs == 0, reader.inside(block, cs) else {
                throw reader.corrupt("refcount table entry \(index)", block, "refcount block misplaced")
            }
            if blocks.count >= 64 { blocks.removeAll(keepingCapacity: true) }
            blocks[index] = try reader.read(block, cs)
        }
        let b = blocks[index] ?? []
        let slot = cluster % perBlock
        let bitOffset = slot * bits
        var v: UInt64 = 0
        if bits >= 8 {
            let at = Int(bitOffset / 8)
            for i in 0..<Int(bits / 8) where at + i < b.count { v = v << 8 | UInt64(b[at + i]) }
        } else if Int(bitOffset / 8) < b.count {
            // Sub-byte refcounts: the lowest slot in the lowest bits (QEMU's get_refcount_ro0..2).
            v = UInt64(b[Int(bitOffset / 8)] >> UInt8(bitOffset % 8)) & ((1 << bits) - 1)
        }
        return v
    }
}
