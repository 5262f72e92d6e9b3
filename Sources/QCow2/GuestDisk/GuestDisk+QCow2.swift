/// A qcow2 layer: guest offsets mapped through L1 and L2 to host clusters, zero clusters, compressed clusters,
/// subclusters, and the backing layer for what is unallocated.
final class QCow2Layer: GuestLayer {
    let file: ImageFile
    let data: ImageFile
    let header: QCow2Header
    let backing: (any GuestLayer)?
    /// Whole sectors: QEMU's qcow2 driver keeps `size / 512` sectors of a header's size.
    var size: UInt64 { header.size & ~511 }

    let clusterSize: UInt64
    let l2Entries: UInt64
    let entryBytes: Int
    /// L1 entries read so far.
    var l1: [UInt64: UInt64] = [:]
    /// L2 tables read so far, by host offset; dropped wholesale when it grows past `l2CacheLimit`.
    var l2: [UInt64: [UInt8]] = [:]
    let l2CacheLimit = 64
    /// The last compressed cluster decompressed (partition tables read a few sectors of one cluster many times).
    var lastCompressed: (entry: UInt64, bytes: [UInt8])?

    static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
    static let copied: UInt64 = 1 << 63
    static let compressed: UInt64 = 1 << 62

    init(file: ImageFile, data: ImageFile, header: QCow2Header, backing: (any GuestLayer)?) {
        self.file = file
        self.data = data
        self.header = header
        self.backing = backing
        clusterSize = header.clusterSize
        entryBytes = header.hasExtendedL2 ? 16 : 8
        l2Entries = header.clusterSize / UInt64(entryBytes)
    }

    func corrupt(_ field: String, _ offset: UInt64, _ reason: String) -> GuestDisk.Error {
        .corrupt(path: file.path, field: field, offset: offset, reason: reason)
    }

    func l1Entry(_ index: UInt64) throws(GuestDisk.Error) -> UInt64 {
        if let e = l1[index] { return e }
        guard index < UInt64(header.l1Size) else { return 0 }
        let at = header.l1TableOffset + index * 8  // validated at open: the table ends below 2^56
        let bytes: [UInt8]
        do { bytes = try file.read(at: at, count: 8) } catch { throw .io(error) }
        let e = ByteWindow(bytes).u64BE(0) ?? 0  // past the end of the file: unallocated, as QEMU reads zeros
        l1[index] = e
        return e
    }

    func l2Table(_ offset: UInt64, l1Index: UInt64) throws(GuestDisk.Error) -> [UInt8] {
        if let t = l2[offset] { return t }
        guard offset % clusterSize == 0 else { throw corrupt("L1 entry \(l1Index)", offset, "L2 table offset not cluster aligned") }
        guard offset < file.stat.size || file.stat.kind == .blockDevice else {
            throw corrupt("L1 entry \(l1Index)", offset, "L2 table beyond the end of the file (\(file.stat.size) bytes)")
        }
        var table: [UInt8]
        do { table = try file.read(at: offset, count: Int(clusterSize)) } catch { throw .io(error) }
        if table.count < Int(clusterSize) { table += [UInt8](repeating: 0, count: Int(clusterSize) - table.count) }
        if l2.count >= l2CacheLimit { l2.removeAll(keepingCapacity: true) }
        l2[offset] = table
        return table
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(GuestDisk.Error) {
        var done = 0
        while done < buffer.count {
            let (off, o) = offset.addingReportingOverflow(UInt64(done))
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            guard !o, off < size else { zero(rest); return }
            let n = try readChunk(into: rest, at: off)
            done += n
        }
    }

    /// Reads from `off` up to the end of its cluster (or subcluster) or of `buffer`; returns how many bytes.
    func readChunk(into buffer: UnsafeMutableRawBufferPointer, at off: UInt64) throws(GuestDisk.Error) -> Int {
        let clusterIndex = off / clusterSize
        let inCluster = off % clusterSize
        var n = Int(min(UInt64(buffer.count), clusterSize - inCluster, size - off))
        let l1Index = clusterIndex / l2Entries
        let l2Index = Int(clusterIndex % l2Entries)
        let l1e = try l1Entry(l1Index)
        let l2Offset = l1e & Self.offsetMask
        if l2Offset == 0 {
            try fallThrough(UnsafeMutableRawBufferPointer(rebasing: buffer[..<n]), at: off)
            return n
        }
        let table = try l2Table(l2Offset, l1Index: l1Index)
        let w = ByteWindow(table)
        let entry = w.u64BE(l2Index * entryBytes) ?? 0
        let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[..<n])

        if entry & Self.compressed != 0 {
            let cluster = try decompressed(entry, clusterIndex: clusterIndex)
            cluster.withUnsafeBytes { src in
                chunk.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(inCluster)..<(Int(inCluster) + n)]))
            }
            return n
        }
        let host = entry & Self.offsetMask
        if header.hasExtendedL2 {
            let bitmap = w.u64BE(l2Index * entryBytes + 8) ?? 0
            let subSize = clusterSize / 32
            let sub = inCluster / subSize
            n = Int(min(UInt64(n), subSize - inCluster % subSize))
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[..<n])
            if bitmap & (UInt64(1) << (32 + sub)) != 0 {
                zero(chunk)
            } else if bitmap & (UInt64(1) << sub) != 0 {
                try readHost(host, inCluster: inCluster, into: chunk, clusterIndex: clusterIndex)
            } else {
                try fallThrough(chunk, at: off)
            }
            return n
        }
        if header.version >= 3 && entry & 1 != 0 {
            zero(chunk)
        } else if host == 0 && !(header.hasExternalDataFile && entry & Self.copied != 0) {
            try fallThrough(chunk, at: off)
        } else {
            try readHost(host, inCluster: inCluster, into: chunk, clusterIndex: clusterIndex)
        }
        return n
    }

    func fallThrough(_ chunk: UnsafeMutableRawBufferPointer, at off: UInt64) throws(GuestDisk.Error) {
        if let backing { try backing.read(into: chunk, at: off) } else { zero(chunk) }
    }

    func readHost(_ host: UInt64, inCluster: UInt64, into chunk: UnsafeMutableRawBufferPointer, clusterIndex: UInt64) throws(GuestDisk.Error) {
        guard host % clusterSize == 0 else { throw corrupt("L2 entry for cluster \(clusterIndex)", host, "data cluster not aligned") }
        do { try data.readZeroFilled(at: host + inCluster, into: chunk) } catch { throw .io(error) }
    }

    func decompressed(_ entry: UInt64, clusterIndex: UInt64) throws(GuestDisk.Error) -> [UInt8] {
        if let last = lastCompressed, last.entry == entry { return last.bytes }
        let bits = UInt64(header.clusterBits)
        let x = 62 - (bits - 8)
        let host = entry & ((UInt64(1) << x) - 1)
        let sectors = ((entry >> x) & ((UInt64(1) << (bits - 8)) - 1)) + 1
        let length = sectors * 512 - (host & 511)
        // At most one cluster plus a sector of slack by construction of the fields.
        guard length <= clusterSize + 512 else { throw corrupt("compressed L2 entry for cluster \(clusterIndex)", host, "length \(length)") }
        var input: [UInt8]
        do { input = try file.read(at: host, count: Int(length)) } catch { throw .io(error) }
        if input.isEmpty { throw corrupt("compressed L2 entry for cluster \(clusterIndex)", host, "beyond the end of the file") }
        let out = header.compressionType == 1
            ? Decompress.zstd(input, outputSize: Int(clusterSize))
            : Decompress.deflate(input, outputSize: Int(clusterSize))
        input.removeAll()
        guard let out else { throw corrupt("compressed cluster \(clusterIndex)", host, "does not decompress (\(header.compressionName))") }
        lastCompressed = (entry, out)
        return out
    }
}
