/// The previews: what a commit writes and how much its target grows, and how large a flattened image would be.
/// They follow QEMU 7.2: `qemu-img commit` runs an active commit (block/mirror.c), which marks dirty every
/// bitmap granule the layer maps (granularity: the target's cluster size within 4 KiB...64 KiB, 64 KiB when it has
/// none), copies granules holding data and writes zeros (no data cluster in a qcow2 v3 target) for granules that
/// read as zeros and are whole target clusters; a qcow2 target takes new clusters from free space inside its file
/// first. The flatten is a `qemu-img convert -O qcow2` with default options: header, refcount table and block,
/// L1, then an L2 table for each 512 MiB that holds data and a cluster for each 64 KiB that does (read, when the
/// ledger is read from a path: convert leaves out a cluster that reads as zeros, whatever the map says).
extension SpaceLedger {
    static func commitPreview(_ top: LayerSpace, into target: LayerSpace, index: Int) -> CommitPreview {
        let tcs = target.clusterSize
        let g: UInt64 = tcs > 0 ? min(max(tcs, 4096), 65536) : 65536
        let length = top.virtualSize
        // Granules the layer maps, in order: whether any byte holds data, and how many bytes it maps.
        var granules: [(index: UInt64, data: Bool, covered: UInt64)] = []
        for r in top.runs where r.start < length {
            let end = min(r.end, length)
            var at = r.start
            while at < end {
                let gi = at / g
                // Virtual sizes come from headers: no product or sum here may pass 2^64.
                let room = g - at % g
                let stop = end - at <= room ? end : at + room
                if let last = granules.last, last.index == gi {
                    granules[granules.count - 1].data = last.data || r.kind.isData
                    granules[granules.count - 1].covered += stop - at
                } else {
                    granules.append((gi, r.kind.isData, stop - at))
                }
                at = stop
            }
        }
        let zeroClusters = target.format == .qcow2 ? target.hasZeroClusters : target.format == .raw
        var writes: UInt64 = 0, zeroWrites: UInt64 = 0
        var copied: [(UInt64, UInt64)] = []  // guest ranges copied as data, in order
        for gr in granules {
            let start = gr.index * g  // ≤ a run's start
            let bytes = min(g, length - start)
            // A granule the layer maps only in part reads the rest from below: copied, to be safe.
            let aligned = tcs == 0 || (start % tcs == 0 && (bytes % tcs == 0 || start + bytes == length))
            if !gr.data && gr.covered == bytes && zeroClusters && aligned {
                zeroWrites += bytes
            } else {
                writes += bytes
                if let last = copied.last, last.1 == start { copied[copied.count - 1].1 = start + bytes } else { copied.append((start, start + bytes)) }
            }
        }
        let grows = growth(of: target, writing: copied)
        return CommitPreview(layer: index, into: index + 1, writes: writes, zeroWrites: zeroWrites, targetGrows: grows,
                             needsResize: top.virtualSize > target.virtualSize,
                             frees: Int64(clamping: top.fileSize) - Int64(clamping: grows))
    }

    /// How much `target` grows when `ranges` (sorted guest ranges) are written to it as data.
    static func growth(of target: LayerSpace, writing ranges: [(UInt64, UInt64)]) -> UInt64 {
        if target.format == .raw {
            // A raw file takes blocks where it had holes (or ended).
            var grows: UInt64 = 0
            var j = 0
            let runs = target.runs
            for (s, e) in ranges {
                var covered: UInt64 = 0
                while j < runs.count && runs[j].end <= s { j += 1 }
                var k = j
                while k < runs.count && runs[k].start < e {
                    if runs[k].kind == .data { covered += min(runs[k].end, e) - max(runs[k].start, s) }
                    k += 1
                }
                grows += (e - s) - covered
            }
            return grows
        }
        let cs = target.clusterSize > 0 ? target.clusterSize : 65536
        var newClusters: UInt64 = 0
        var newTables: Set<UInt64> = []
        let present = Set(target.l2Present)
        var lastCluster = UInt64.max
        var j = 0
        let runs = target.runs
        for (s, e) in ranges {
            var c = s / cs
            while c <= (e - 1) / cs {
                defer { c += 1 }
                if c == lastCluster { continue }
                lastCluster = c
                let cStart = c * cs, cEnd = cStart + min(cs, UInt64.max - cStart)
                while j < runs.count && runs[j].end <= cStart { j += 1 }
                var k = j, hasHost = false
                while k < runs.count && runs[k].start < cEnd {
                    if runs[k].kind == .data || runs[k].kind == .zeroAllocated || runs[k].kind == .preallocated { hasHost = true; break }
                    k += 1
                }
                if hasHost { continue }
                newClusters += 1
                if target.l2Coverage > 0 {
                    let t = cStart / target.l2Coverage
                    if !present.contains(t) { newTables.insert(t) }
                }
            }
        }
        var clusters = newClusters + UInt64(newTables.count)
        if target.format == .qcow2 {
            // Refcount blocks (16-bit refcounts: cluster_size * 8 / 16 clusters each) for the clusters added.
            let per = cs * 8 / 16
            let before = target.fileSize / cs
            clusters += (before + clusters + per - 1) / per - (before + per - 1) / per
            // Free clusters inside the file are taken first.
            let free = target.unused / cs
            clusters = clusters > free ? clusters - free : 0
            // New clusters start on a cluster boundary: a file that ends inside one (compressed data) is padded first.
            if clusters > 0 && target.fileSize % cs != 0 { return clusters * cs + (cs - target.fileSize % cs) }
        }
        return clusters * cs
    }

    /// The size of the qcow2 file `qemu-img convert -O qcow2` writes for the chain (64 KiB clusters, 16-bit
    /// refcounts): data clusters where the chain reads data, zero ranges left out. `readsZero(cluster)`, when given,
    /// reads a 64 KiB cluster the map calls data: convert finds the zeros in what it reads and writes no cluster for them.
    static func flattenSize(_ map: [MapEntry], virtualSize: UInt64, readsZero: (UInt64) -> Bool = { _ in false }) -> UInt64 {
        let cs: UInt64 = 65536, l2Entries: UInt64 = 8192
        var data: UInt64 = 0, tables: UInt64 = 0
        var lastCluster = UInt64.max, lastTable = UInt64.max
        // convert skips what reads as zeros, data or not (a preallocated cluster over a hole).
        for e in map where e.data && !e.zero {
            var c = e.start / cs
            let last = (e.start + e.length - 1) / cs
            while c <= last {
                if c != lastCluster && !readsZero(c) {
                    data += 1
                    if c / l2Entries != lastTable { tables += 1; lastTable = c / l2Entries }
                }
                lastCluster = c
                c += 1
            }
        }
        let l1Entries = virtualSize == 0 ? 0 : (virtualSize - 1) / (cs * l2Entries) + 1
        let l1Bytes = l1Entries * 8
        let l1Clusters = (l1Bytes + cs - 1) / cs
        if data == 0 { return 3 * cs + l1Bytes }
        // Header, refcount table, the first refcount block; one more block per 32768 clusters.
        var n = 3 + l1Clusters + tables + data
        var blocks: UInt64 = 1
        while (n + 32767) / 32768 > blocks {
            let more = (n + 32767) / 32768 - blocks
            blocks += more
            n += more
        }
        return n * cs
    }
}
