import Glibc

/// The host clusters of a qcow2 file that hold guest data, as its L2 tables (active and every snapshot's) reference
/// them: the clusters `qemu-img check -r` never writes. A repair rewrites the header, L1 and L2 tables, the refcount
/// table and blocks, and may build new refcount structures in clusters nothing references (free or leaked ones) or
/// past the end; it never writes a cluster an L2 entry references as data. So everything else is what a repair's save
/// must hold for `undo` to give the damaged image back byte for byte.
///
/// Read tolerantly: an entry that is misaligned or points past the end of the file is simply not data (its cluster,
/// if any, is saved). A cluster referenced as data and also as metadata (an overlap, a corruption) is not data either:
/// qemu-img may rewrite it as metadata. One bit per cluster of the file; table reads are bounded by `budget`.
public struct QCow2DataClusters: Sendable {
    /// The image's cluster size.
    public let clusterSize: UInt64
    /// The file's size when it was read.
    public let fileSize: UInt64
    /// Bit `c` set: cluster `c` is referenced as guest data only.
    var data: [UInt64]

    /// More table bytes than this is no image qemu-img makes; a header naming more is refused, not read for minutes.
    public static let budget: UInt64 = 1 << 30
    /// Files of more clusters than this are refused (the bitmaps would pass 64 MiB).
    public static let maxClusters: UInt64 = 1 << 29

    /// Why the map could not be built (the repair is then refused: the save could not be bounded).
    public enum Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        /// The header could not be read.
        case header(path: String, reason: String)
        /// A table could not be read.
        case read(path: String, table: String, offset: UInt64)
        /// Over the budget, or too many clusters.
        case tooLarge(path: String, what: String)

        /// The message, naming the file.
        public var description: String {
            switch self {
            case .header(let path, let reason): return "\(path): its qcow2 header cannot be read: \(reason)"
            case .read(let path, let table, let offset): return "\(path): its \(table) at offset \(offset) cannot be read"
            case .tooLarge(let path, let what): return "\(path): \(what)"
            }
        }
    }

    /// True when cluster `c` holds guest data only (never rewritten by a repair).
    public func isData(_ c: UInt64) -> Bool {
        let w = Int(c / 64)
        return w < data.count && data[w] & (1 << (c % 64)) != 0
    }

    /// How many clusters the file spans (the last one may be partial).
    public var clusterCount: UInt64 { fileSize == 0 ? 0 : (fileSize - 1) / clusterSize + 1 }

    /// Reads `file`'s tables and builds the map.
    public static func read(_ file: ImageFile) throws(Error) -> QCow2DataClusters {
        let header: QCow2Header
        do { header = try QCow2Header.read(from: file) } catch { throw .header(path: file.path, reason: "\(error)") }
        let size = FileIdentity.of(path: "/proc/self/fd/\(file.rawDescriptor)")?.size ?? file.stat.size
        var walker = Walker(file: file, header: header, fileSize: size)
        try walker.walk()
        var data = walker.data
        for i in data.indices { data[i] &= ~walker.meta[i] }
        try walker.dropUnrefcounted(&data)
        return QCow2DataClusters(clusterSize: header.clusterSize, fileSize: size, data: data)
    }

    /// One pass over every L1 and L2 table.
    struct Walker {
        let file: ImageFile
        let header: QCow2Header
        let fileSize: UInt64
        let cs: UInt64
        let clusters: UInt64
        var data: [UInt64]
        var meta: [UInt64]
        var spent: UInt64 = 0
        /// L2 tables already walked (a table shared by snapshots is walked once).
        var seenL2: Set<UInt64> = []
        /// The refcount table's block offsets, as read.
        var refBlocks: [UInt64] = []

        static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00

        init(file: ImageFile, header: QCow2Header, fileSize: UInt64) {
            self.file = file
            self.header = header
            self.fileSize = fileSize
            cs = header.clusterSize
            clusters = fileSize == 0 ? 0 : (fileSize - 1) / header.clusterSize + 1
            let words = Int(min(clusters, QCow2DataClusters.maxClusters) / 64 + 1)
            data = [UInt64](repeating: 0, count: words)
            meta = [UInt64](repeating: 0, count: words)
        }

        /// Marks the clusters `[offset, offset + length)` touches in `bits` (nothing past the end of the file).
        static func mark(_ bits: inout [UInt64], _ offset: UInt64, _ length: UInt64, cs: UInt64, clusters: UInt64) {
            guard length > 0, offset < clusters * cs else { return }
            let (end, o) = offset.addingReportingOverflow(length)
            let last = min(o ? clusters - 1 : (end - 1) / cs, clusters - 1)
            var c = offset / cs
            while c <= last {
                bits[Int(c / 64)] |= 1 << (c % 64)
                c += 1
            }
        }

        mutating func markMeta(_ offset: UInt64, _ length: UInt64) { Self.mark(&meta, offset, length, cs: cs, clusters: clusters) }
        mutating func markData(_ offset: UInt64, _ length: UInt64) { Self.mark(&data, offset, length, cs: cs, clusters: clusters) }

        /// Reads `count` bytes at `offset` within the budget; past the end of the file reads as zeros (as QEMU does).
        mutating func read(_ table: String, _ offset: UInt64, _ count: UInt64) throws(Error) -> [UInt8] {
            let (total, over) = spent.addingReportingOverflow(count)
            guard !over, total <= QCow2DataClusters.budget else {
                throw .tooLarge(path: file.path, what: "its tables hold more than 1 GiB (the \(table) at offset \(offset)); a repair's save is refused")
            }
            spent = total
            guard offset < fileSize else { return [UInt8](repeating: 0, count: Int(count)) }
            var bytes: [UInt8]
            do { bytes = try file.read(at: offset, count: Int(min(count, fileSize - offset))) } catch {
                throw .read(path: file.path, table: table, offset: offset)
            }
            if bytes.count < Int(count) { bytes += [UInt8](repeating: 0, count: Int(count) - bytes.count) }
            return bytes
        }

        mutating func walk() throws(Error) {
            guard clusters <= QCow2DataClusters.maxClusters else {
                throw .tooLarge(path: file.path, what: "the file spans \(clusters) clusters, more than a repair's save is made for")
            }
            markMeta(0, cs)
            // The external data file holds the guest data: every cluster of this file is metadata.
            let external = header.hasExternalDataFile
            let (rtBytes, o1) = UInt64(header.refcountTableClusters).multipliedReportingOverflow(by: cs)
            if !o1 {
                markMeta(header.refcountTableOffset, rtBytes)
                // Refcount blocks are rewritten by a repair: one that overlaps a data cluster makes it not data.
                if header.refcountTableOffset < fileSize {
                    let table = try read("refcount table", header.refcountTableOffset, rtBytes)
                    let window = ByteWindow(table)
                    var at = 0
                    while let e = window.u64BE(at) {
                        at += 8
                        let block = e & ~UInt64(0x1ff)
                        refBlocks.append(block)
                        if block != 0 { markMeta(block, cs) }
                    }
                }
            }
            if let bitmaps = header.bitmaps { markMeta(bitmaps.directoryOffset, bitmaps.directorySize) }
            if header.snapshotCount > 0 { markMeta(header.snapshotsOffset, cs) }
            try walkL1(header.l1TableOffset, entries: UInt64(header.l1Size), external: external)
            if header.snapshotCount > 0, let table = try? header.readSnapshots(from: file) {
                markMeta(header.snapshotsOffset, table.length)
                for s in table.snapshots { try walkL1(s.l1TableOffset, entries: UInt64(s.l1Size), external: external) }
            }
        }

        /// Clears the data clusters whose stored refcount is 0 (or that no refcount block covers): not properly
        /// referenced, so a repair may allocate them for its own structures (QEMU allocates from the stored counts).
        mutating func dropUnrefcounted(_ data: inout [UInt64]) throws(Error) {
            guard header.refcountOrder <= 6 else {
                for w in data.indices { data[w] = 0 }
                return
            }
            let bits = UInt64(1) << UInt64(header.refcountOrder)
            let perBlock = cs * 8 / bits
            var loaded = UInt64.max
            var block: [UInt8] = []
            for w in data.indices where data[w] != 0 {
                var word = data[w]
                while word != 0 {
                    let bit = UInt64(word.trailingZeroBitCount)
                    word &= word - 1
                    let c = UInt64(w) * 64 + bit
                    let index = c / perBlock
                    var count: UInt64 = 0
                    if index < UInt64(refBlocks.count), refBlocks[Int(index)] != 0, refBlocks[Int(index)] % cs == 0 {
                        if loaded != index {
                            block = try read("refcount block", refBlocks[Int(index)], cs)
                            loaded = index
                        }
                        let entry = c % perBlock
                        if bits >= 8 {
                            let bytes = Int(bits / 8), at = Int(entry) * bytes
                            for k in 0..<bytes { count = count << 8 | UInt64(block[at + k]) }
                        } else {
                            // Sub-byte refcounts: the lowest bits first, as QEMU's get_refcount_ro0..2 read them.
                            let byte = block[Int(entry * bits / 8)]
                            count = UInt64(byte >> UInt8((entry * bits) % 8)) & ((1 << bits) - 1)
                        }
                    }
                    if count == 0 { data[w] &= ~(UInt64(1) << bit) }
                }
            }
        }

        mutating func walkL1(_ offset: UInt64, entries: UInt64, external: Bool) throws(Error) {
            guard entries > 0, offset % 512 == 0 else { return }
            let (bytes, o) = entries.multipliedReportingOverflow(by: 8)
            guard !o else { return }
            markMeta(offset, bytes)
            let chunk: UInt64 = 1 << 17  // entries per read (1 MiB)
            var i: UInt64 = 0
            while i < entries {
                let n = min(chunk, entries - i)
                guard offset < fileSize else { return }
                let l1 = try read("L1 table", offset + i * 8, n * 8)
                for k in 0..<Int(n) {
                    let e = ByteWindow(l1).u64BE(k * 8) ?? 0
                    let l2 = e & Self.offsetMask
                    guard l2 != 0, l2 % cs == 0, l2 < fileSize else { continue }
                    markMeta(l2, cs)
                    if seenL2.insert(l2).inserted { try walkL2(l2, external: external) }
                }
                i += n
            }
        }

        mutating func walkL2(_ offset: UInt64, external: Bool) throws(Error) {
            let bytes = try read("L2 table", offset, cs)
            if external { return }
            let extended = header.hasExtendedL2
            let step = extended ? 16 : 8
            let window = ByteWindow(bytes)
            let compressedBits = UInt64(62) - (UInt64(header.clusterBits) - 8)
            var at = 0
            while let entry = window.u64BE(at) {
                at += step
                if entry == 0 { continue }
                if entry & (1 << 62) != 0 {
                    // Compressed: the sectors it spans are data, shared by other compressed clusters perhaps.
                    let start = entry & ((UInt64(1) << compressedBits) - 1)
                    let sectors = ((entry >> compressedBits) & ((UInt64(1) << (UInt64(header.clusterBits) - 8)) - 1)) + 1
                    markData(start, sectors * 512)
                    continue
                }
                let host = entry & Self.offsetMask
                // Misaligned or past the end: not data qemu-img keeps (it may zero the entry); the cluster is saved.
                guard host != 0, host % cs == 0, host < fileSize else { continue }
                markData(host, cs)
            }
        }
    }
}
