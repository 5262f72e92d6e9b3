import Glibc

/// The allocation map of a qcow2 layer, read from its tables in one pass: the L1 table in 1 MiB reads, one read per
/// L2 table that exists (unallocated L1 entries are skipped wholesale, so a huge sparse image costs a few reads),
/// then the refcount table and blocks for what the file holds beyond the active guest data.
struct QCow2SpaceReader {
    let file: ImageFile
    let header: QCow2Header
    let path: String

    static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
    /// Bytes of a table read at once: tables are read in large sequential reads, never all at once.
    static let chunk: UInt64 = 1 << 20

    func corrupt(_ table: String, _ offset: UInt64, _ reason: String) -> LayerSpace.Error {
        .corrupt(path: path, table: table, offset: offset, reason: reason)
    }

    func read(_ at: UInt64, _ count: UInt64) throws(LayerSpace.Error) -> [UInt8] {
        var b: [UInt8]
        do { b = try file.read(at: at, count: Int(count)) } catch { throw .read(.io(error)) }
        // Past the end of the file QEMU reads zeros (a table that runs past the end is caught before this).
        if b.count < Int(count) { b += [UInt8](repeating: 0, count: Int(count) - b.count) }
        return b
    }

    var fileSize: UInt64 { file.stat.size }
    var isBlockDevice: Bool { file.stat.kind == .blockDevice }

    /// True when `bytes` at `offset` lie inside the file (a block device's size is its own).
    func inside(_ offset: UInt64, _ bytes: UInt64) -> Bool {
        let (end, o) = offset.addingReportingOverflow(bytes)
        return !o && end <= fileSize
    }

    func space(filename: String) throws(LayerSpace.Error) -> LayerSpace {
        let cs = header.clusterSize
        let extended = header.hasExtendedL2
        let entryBytes: UInt64 = extended ? 16 : 8
        let l2Entries = cs / entryBytes
        let coverage = l2Entries * cs  // ≤ 2^21 · 2^18: no overflow
        let size = header.size
        let l1Needed = size == 0 ? 0 : (size - 1) / coverage + 1
        let l1Count = min(UInt64(header.l1Size), l1Needed)
        let l1Bytes = UInt64(header.l1Size) * 8
        guard inside(header.l1TableOffset, l1Bytes) || isBlockDevice else {
            throw corrupt("L1 table", header.l1TableOffset, "\(l1Bytes) bytes run past the end of the file (\(fileSize) bytes)")
        }
        let external = header.hasExternalDataFile
        // QEMU's qcow2_detect_metadata_preallocation: when the refcounts claim clearly more clusters than the file
        // has allocated, data clusters are looked up in the file too, and its holes read as zeros.
        let (refcounted, refBlocks, pastEnd) = try refcounts()
        let real = file.stat.allocated / cs
        let preallocated = !external && file.stat.kind == .regular && refcounted >= max(real * 10 / 9, real + 2)
        let extents = preallocated ? dataExtents() : []
        var builder = RunBuilder()
        /// A data range at `host`: split where the file has holes, when the metadata is preallocated.
        func addData(_ guest: UInt64, _ length: UInt64, host: UInt64) {
            guard preallocated else { builder.add(guest, length, .data); return }
            var at: UInt64 = 0
            // The first extent ending past `host` (binary search: extents are sorted and disjoint).
            var lo = 0, hi = extents.count
            while lo < hi { let mid = (lo + hi) / 2; if extents[mid].1 <= host { lo = mid + 1 } else { hi = mid } }
            var k = lo
            while at < length {
                let h = host + at
                while k < extents.count && extents[k].1 <= h { k += 1 }
                if k < extents.count && extents[k].0 <= h {
                    let n = min(length - at, extents[k].1 - h)
                    builder.add(guest + at, n, .data)
                    at += n
                } else {
                    let n = k < extents.count ? min(length - at, extents[k].0 - h) : length - at
                    builder.add(guest + at, n, .preallocated)
                    at += n
                }
            }
        }
        var l2Seen: [UInt64: UInt64] = [:]  // L2 offset → L1 index, for tables used twice
        var l2Present: [UInt64] = []
        var dataClusters: UInt64 = 0
        var compressedClusters: UInt64 = 0
        var lastCompressedCluster = UInt64.max
        let l1Start = header.l1TableOffset, l1End = l1Start + l1Bytes
        let compressedBits = UInt64(62) - (UInt64(header.clusterBits) - 8)

        var i: UInt64 = 0
        while i < l1Count {
            let n = min(Self.chunk / 8, l1Count - i)
            let l1 = ByteWindow(try read(l1Start + i * 8, n * 8))
            for k in 0..<n {
                let l1Index = i + k
                let e = l1.u64BE(Int(k * 8)) ?? 0
                let l2 = e & Self.offsetMask
                if l2 == 0 { continue }
                let table = "L1 entry \(l1Index)"
                guard l2 % cs == 0 else { throw corrupt(table, l2, "L2 table offset not cluster aligned") }
                guard inside(l2, cs) || isBlockDevice else {
                    throw corrupt(table, l2, "L2 table runs past the end of the file (\(fileSize) bytes)")
                }
                guard l2 >= cs else { throw corrupt(table, l2, "L2 table overlaps the header") }
                guard l2 + cs <= l1Start || l2 >= l1End else { throw corrupt(table, l2, "L2 table overlaps the L1 table") }
                if let other = l2Seen[l2] { throw corrupt(table, l2, "L2 table is also L1 entry \(other)'s: tables overlap") }
                l2Seen[l2] = l1Index
                l2Present.append(l1Index)
                // The table as 64-bit words (a cluster is a multiple of 8 bytes): the loop below runs once per guest
                // cluster, so it reads words, not checked byte windows.
                let bytes = try read(l2, cs)
                var words = [UInt64](repeating: 0, count: Int(cs / 8))
                words.withUnsafeMutableBytes { dst in bytes.withUnsafeBytes { dst.copyMemory(from: $0) } }
                let step = Int(entryBytes / 8)
                let firstCluster = l1Index * l2Entries
                for j in 0..<l2Entries {
                    let entry = UInt64(bigEndian: words[Int(j) * step])
                    // Unallocated, with no subcluster bits: nothing to record (most entries of a sparse table).
                    if entry == 0 && (!extended || words[Int(j) * step + 1] == 0) { continue }
                    let cluster = firstCluster + j
                    let guest = cluster * cs
                    guard guest < size else { break }
                    let clusterLength = min(cs, size - guest)
                    let host = entry & Self.offsetMask
                    if entry & (1 << 62) != 0 {
                        builder.add(guest, clusterLength, .compressed)
                        // Compressed clusters share host clusters: count each host cluster once, in write order.
                        let start = entry & ((UInt64(1) << compressedBits) - 1)
                        let sectors = ((entry >> compressedBits) & ((UInt64(1) << (UInt64(header.clusterBits) - 8)) - 1)) + 1
                        let first = start / cs, last = (start + sectors * 512 - 1) / cs
                        for c in first...last where lastCompressedCluster == .max || c > lastCompressedCluster {
                            compressedClusters += 1
                            lastCompressedCluster = c
                        }
                        continue
                    }
                    let allocated = host != 0 || (external && entry & (1 << 63) != 0)
                    if extended {
                        let bitmap = UInt64(bigEndian: words[Int(j) * step + 1])
                        if bitmap >> 32 & bitmap & 0xFFFF_FFFF != 0 {
                            throw corrupt("L2 entry for cluster \(cluster)", l2 + j * entryBytes, "a subcluster is marked both allocated and zero")
                        }
                        if !allocated && bitmap & 0xFFFF_FFFF != 0 {
                            throw corrupt("L2 entry for cluster \(cluster)", l2 + j * entryBytes, "subclusters allocated in a cluster with no host offset")
                        }
                        if allocated && !external { dataClusters += 1 }
                        let sub = cs / 32
                        for s in UInt64(0)..<32 {
                            let at = guest + s * sub
                            guard at < size else { break }
                            let length = min(sub, size - at)
                            if bitmap & (UInt64(1) << (32 + s)) != 0 {
                                builder.add(at, length, allocated ? .zeroAllocated : .zero)
                            } else if bitmap & (UInt64(1) << s) != 0 {
                                addData(at, length, host: host + s * sub)
                            }
                        }
                        continue
                    }
                    if header.version >= 3 && entry & 1 != 0 {
                        builder.add(guest, clusterLength, host != 0 ? .zeroAllocated : .zero)
                        if host != 0 && !external { dataClusters += 1 }
                    } else if allocated {
                        addData(guest, clusterLength, host: host)
                        if !external { dataClusters += 1 }
                    }
                }
            }
            i += n
        }

        let l1Clusters = (l1Bytes + cs - 1) / cs
        var metadata = (1 + l1Clusters + UInt64(l2Present.count) + UInt64(header.refcountTableClusters) + refBlocks) * cs
        let hostData = (dataClusters + compressedClusters) * cs
        let usedBytes = refcounted.multipliedReportingOverflow(by: cs)
        let used = usedBytes.overflow ? UInt64.max : usedBytes.partialValue
        var others = used > metadata + hostData ? used - metadata - hostData : 0
        // Without snapshots or bitmaps what is left is the format's other tables (snapshot table, extensions).
        if header.snapshotCount == 0 && header.bitmaps == nil { metadata += others; others = 0 }
        // What the file holds of the clusters in use: a cluster the file ends inside (a bitmap directory of 32 bytes
        // written last) is in use with only its bytes in the file, so the rest is not "unused".
        let inFile = min(used > pastEnd ? used - pastEnd : 0, fileSize)
        var space = LayerSpace(filename: filename, format: .qcow2, virtualSize: size, fileSize: fileSize, runs: builder.runs,
                               supportsBacking: true, hostData: hostData, metadata: metadata, snapshots: others,
                               unused: fileSize - inFile, clusterSize: cs)
        space.l2Coverage = coverage
        space.l2Present = l2Present
        space.hasZeroClusters = header.version >= 3
        if header.snapshotCount > 0 || (header.bitmaps?.count ?? 0) > 0 { space.held = try held() }
        return space
    }

    /// The file's data extents (start, end), from `SEEK_DATA`/`SEEK_HOLE`; one extent over the whole file when the
    /// file system cannot tell.
    func dataExtents() -> [(UInt64, UInt64)] {
        var out: [(UInt64, UInt64)] = []
        var at: UInt64 = 0
        let fd = file.rawDescriptor
        while at < fileSize {
            let d = lseek(fd, off_t(at), 3)  // SEEK_DATA
            if d < 0 { if errno == ENXIO { break }; return [(0, fileSize)] }
            let h = lseek(fd, off_t(d), 4)  // SEEK_HOLE
            if h < 0 { return [(0, fileSize)] }
            let end = min(max(UInt64(h), UInt64(d) + 1), fileSize)
            out.append((UInt64(d), end))
            at = end
        }
        return out
    }

    /// Clusters with a nonzero refcount, how many refcount blocks there are, and the bytes of those clusters past the
    /// end of the file. The table is at most 8 MiB (checked at open); each block is one cluster, read once.
    func refcounts() throws(LayerSpace.Error) -> (UInt64, UInt64, UInt64) {
        let cs = header.clusterSize
        let bits = header.refcountBits
        let tableBytes = UInt64(header.refcountTableClusters) * cs
        guard tableBytes <= 8 << 20 else { throw .tooLarge(path: path, table: "refcount table", bytes: tableBytes, limit: 8 << 20) }
        guard inside(header.refcountTableOffset, tableBytes) || isBlockDevice else {
            throw corrupt("refcount table", header.refcountTableOffset, "\(tableBytes) bytes run past the end of the file (\(fileSize) bytes)")
        }
        var count: UInt64 = 0, blocks: UInt64 = 0, pastEnd: UInt64 = 0
        let perBlock = cs * 8 / bits
        let firstPartial = fileSize / cs  // the first cluster not wholly inside the file
        var seen: Set<UInt64> = []
        var i: UInt64 = 0
        while i < tableBytes {
            let n = min(Self.chunk, tableBytes - i)
            let t = ByteWindow(try read(header.refcountTableOffset + i, n))
            for k in stride(from: 0, to: Int(n), by: 8) {
                let block = (t.u64BE(k) ?? 0) & ~UInt64(511)
                if block == 0 { continue }
                let table = "refcount table entry \((i + UInt64(k)) / 8)"
                guard block % cs == 0 else { throw corrupt(table, block, "refcount block not cluster aligned") }
                guard inside(block, cs) || isBlockDevice else { throw corrupt(table, block, "refcount block runs past the end of the file (\(fileSize) bytes)") }
                guard seen.insert(block).inserted else { throw corrupt(table, block, "refcount block used twice") }
                blocks += 1
                let b = try read(block, cs)
                count += Self.nonzero(b, bits: bits)
                // Only the block covering the file's end (or blocks past it) can describe clusters outside the file.
                let first = ((i + UInt64(k)) / 8).multipliedReportingOverflow(by: perBlock)
                guard !first.overflow, first.partialValue + perBlock > firstPartial else { continue }
                // Entries for clusters before the file's last partial one add nothing; that one adds its part past
                // the end, every later one a whole cluster.
                var from: UInt64 = 0
                if firstPartial >= first.partialValue {
                    from = firstPartial - first.partialValue
                    if Self.referenced(b, bits: bits, entry: Int(from)) { pastEnd += cs - fileSize % cs }
                    from += 1
                }
                pastEnd += Self.nonzero(b, bits: bits, fromEntry: from) * cs
            }
            i += n
        }
        return (count, blocks, pastEnd)
    }
}
