/// A VHDX image as `vhdx_open` reads it: the current header (valid checksum, higher sequence number), the region
/// table (BAT and metadata regions), the metadata items, and the log, which must not need replaying: QEMU opens such
/// an image read-only only to refuse it ("contains a log that needs to be replayed").
struct VHDXHeader: Sendable {
    var virtualSize: UInt64
    var blockSize: UInt64
    var logicalSectorSize: UInt64
    var chunkRatio: UInt64
    var batOffset: UInt64
    var batEntries: UInt64
    /// The regions `vhdx_open` registers, as (start, end) with QEMU's wrapping end: the current header's log, then
    /// every region table entry. A BAT entry's block must not overlap one (`vhdx_region_check`).
    var regions: [(start: UInt64, end: UInt64)] = []

    static let batRegion: [UInt8] = [0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08]
    static let metadataRegion: [UInt8] = [0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E]
    static let fileParameters: [UInt8] = [0x37, 0x67, 0xA1, 0xCA, 0x36, 0xFA, 0x43, 0x4D, 0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B]
    static let virtualDiskSize: [UInt8] = [0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8]
    static let logicalSector: [UInt8] = [0x1D, 0xBF, 0x41, 0x81, 0x6F, 0xA9, 0x09, 0x47, 0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F]
    static let physicalSector: [UInt8] = [0xC7, 0x48, 0xA3, 0xCD, 0x5D, 0x44, 0x71, 0x44, 0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56]
    static let page83: [UInt8] = [0xAB, 0x12, 0xCA, 0xBE, 0xE6, 0xB2, 0x23, 0x45, 0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46]
    static let parentLocator: [UInt8] = [0x2D, 0x5F, 0xD3, 0xA8, 0x0B, 0xB3, 0x4D, 0x45, 0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C]
    /// The log is read whole to look for a valid entry; QEMU's default is 1 MiB.
    static let maxLog: UInt64 = 64 << 20

    static func read(_ file: ImageFile) throws(FormatError) -> VHDXHeader {
        func bad(_ field: String, _ offset: UInt64?, _ reason: String) -> FormatError {
            FormatError(path: file.path, format: .vhdx, field: field, offset: offset, reason: reason)
        }
        func bytes(_ at: UInt64, _ n: Int, _ field: String) throws(FormatError) -> [UInt8] {
            try readPadded(file, at: at, count: n, format: .vhdx, field: field)
        }
        // The two headers: a valid one has the signature and its CRC-32C; the higher sequence number wins.
        let h1 = try bytes(64 << 10, 4096, "header 1"), h2 = try bytes(128 << 10, 4096, "header 2")
        // `vhdx_parse_header` also wants version 1.
        func valid(_ h: [UInt8]) -> Bool {
            ByteWindow(h).starts(with: Array("head".utf8)) && ByteWindow(h).u16LE(66) == 1 && CRC32C.checksum(h, zeroedAt: 4) == ByteWindow(h).u32LE(4)
        }
        let header: [UInt8]
        switch (valid(h1), valid(h2)) {
        case (false, false): throw bad("header", 64 << 10, "no valid VHDX header found")
        case (true, false): header = h1
        case (false, true): header = h2
        case (true, true):
            let s1 = ByteWindow(h1).u64LE(8) ?? 0, s2 = ByteWindow(h2).u64LE(8) ?? 0
            if s1 == s2 && h1 != h2 { throw bad("header", 64 << 10, "two valid headers with one sequence number differ") }
            header = s1 >= s2 ? h1 : h2
        }
        let hw = ByteWindow(header)
        try checkLog(file, hw)
        // `vhdx_parse_header` registers the log region; `vhdx_open_region_tables` checks each entry against every
        // region registered before it and registers it.
        var regions: [(start: UInt64, end: UInt64)] = []
        let logOffset = hw.u64LE(72) ?? 0, logLength = UInt64(hw.u32LE(68) ?? 0)
        regions.append((logOffset, logOffset &+ logLength))

        // Region table.
        let rt = try bytes(192 << 10, 64 << 10, "region table")
        let rw = ByteWindow(rt)
        guard rw.starts(with: Array("regi".utf8)), CRC32C.checksum(rt, zeroedAt: 4) == rw.u32LE(4) else {
            throw bad("region table", 192 << 10, "signature or checksum invalid")
        }
        let count = Int(rw.u32LE(8) ?? 0)
        guard count <= 2047 else { throw bad("region table entry_count", 192 << 10 + 8, "\(count) entries") }
        var bat: (UInt64, UInt64)?, meta: (UInt64, UInt64)?
        for i in 0..<count {
            let e = 16 + i * 32
            guard let id = rw.slice(e, 16), let off = rw.u64LE(e + 16), let len = rw.u32LE(e + 24), let bits = rw.u32LE(e + 28) else { break }
            let end = off &+ UInt64(len)
            if let r = regions.first(where: { overlaps(off, end, $0) }) {
                throw bad("region table", 192 << 10 + UInt64(e), "region \(off)-\(end) overlaps with region \(r.start)-\(r.end)")
            }
            regions.append((off, end))
            if id.elementsEqual(batRegion) {
                guard bat == nil else { throw bad("region table", 192 << 10 + UInt64(e), "a second BAT region") }
                bat = (off, UInt64(len))
            } else if id.elementsEqual(metadataRegion) {
                guard meta == nil else { throw bad("region table", 192 << 10 + UInt64(e), "a second metadata region") }
                meta = (off, UInt64(len))
            }
            else if bits & 1 != 0 { throw bad("region table", 192 << 10 + UInt64(e), "unknown required region") }
        }
        guard let bat, let meta else { throw bad("region table", 192 << 10, "BAT or metadata region missing") }

        // Metadata.
        let mt = try bytes(meta.0, 64 << 10, "metadata table")
        let mw = ByteWindow(mt)
        guard mw.starts(with: Array("metadata".utf8)), let items = mw.u16LE(10), items <= 2047 else { throw bad("metadata table", meta.0, "signature or entry count invalid") }
        var values: [[UInt8]: (UInt64, UInt32)] = [:]
        for i in 0..<Int(items) {
            let e = 32 + i * 32
            guard let id = mw.slice(e, 16), let off = mw.u32LE(e + 16), let len = mw.u32LE(e + 20), let bits = mw.u32LE(e + 24) else { break }
            let known = [fileParameters, virtualDiskSize, logicalSector, physicalSector, page83, parentLocator].contains { id.elementsEqual($0) }
            if !known && bits & 4 != 0 { throw bad("metadata table", meta.0 + UInt64(e), "unknown required metadata item") }
            values[Array(id)] = (meta.0 + UInt64(off), len)
        }
        func item(_ id: [UInt8], _ name: String, _ n: Int) throws(FormatError) -> ByteWindow {
            guard let (at, len) = values[id], len >= UInt32(n) else { throw bad(name, meta.0, "required metadata item missing") }
            return ByteWindow(try bytes(at, n, name))
        }
        let params = try item(fileParameters, "file parameters", 8)
        let block = UInt64(params.u32LE(0) ?? 0)
        if (params.u32LE(4) ?? 0) & 2 != 0 { throw bad("file parameters", nil, "has_parent: differencing VHDX images are not supported by QEMU") }
        let size = try item(virtualDiskSize, "virtual disk size", 8).u64LE(0) ?? 0
        let logical = UInt64(try item(logicalSector, "logical sector size", 4).u32LE(0) ?? 0)
        _ = try item(physicalSector, "physical sector size", 4)
        // The spec allows 4096 too; QEMU 7.2 opens only 512 ("Currently we only support 512": ENOTSUP).
        guard logical == 512 else { throw bad("logical sector size", nil, "\(logical) bytes: QEMU supports only 512-byte logical sectors") }
        guard isPowerOfTwo(block), block >= 1 << 20, block <= 256 << 20 else { throw bad("block size", nil, "\(block) is not a power of two from 1 MiB to 256 MiB") }
        guard size <= 64 << 40 else { throw bad("virtual disk size", nil, "\(size) is larger than 64 TiB") }
        let chunk = (UInt64(1) << 23) * logical / block
        guard isPowerOfTwo(chunk) else { throw bad("block size", nil, "chunk ratio \(chunk) is not a power of two") }
        let blocks = (size + block - 1) / block
        let entries = blocks == 0 ? 0 : blocks + (blocks - 1) / chunk
        guard entries <= bat.1 / 8 else { throw bad("BAT region", bat.0, "invalid BAT entry count (\(entries) entries, region of \(bat.1) bytes)") }
        return VHDXHeader(virtualSize: size, blockSize: block, logicalSectorSize: logical, chunkRatio: chunk, batOffset: bat.0, batEntries: entries,
                          regions: regions)
    }

    /// `vhdx_region_check`'s test, with its unsigned ends: [start, end) meets region `r`.
    static func overlaps(_ start: UInt64, _ end: UInt64, _ r: (start: UInt64, end: UInt64)) -> Bool {
        !(start >= r.end || end <= r.start)
    }

    /// The log: with a non-zero log GUID and length, a valid entry (signature, this GUID, CRC-32C) means the image
    /// needs a replay that a read-only open refuses to do.
    static func checkLog(_ file: ImageFile, _ hw: ByteWindow) throws(FormatError) {
        func bad(_ field: String, _ reason: String) -> FormatError { FormatError(path: file.path, format: .vhdx, field: field, reason: reason) }
        // `vhdx_parse_log`'s order: the offset and version are checked before it looks whether a log is present.
        let length = UInt64(hw.u32LE(68) ?? 0), offset = hw.u64LE(72) ?? 0
        guard offset >= 1 << 20, offset % (1 << 20) == 0 else { throw bad("log_offset", "\(offset) is not a non-zero multiple of 1 MiB") }
        guard hw.u16LE(64) == 0 else { throw bad("log_version", "\(hw.u16LE(64) ?? 0) is not 0") }
        guard let guid = hw.slice(48, 16), guid.contains(where: { $0 != 0 }) else { return }
        if length == 0 { return }
        guard length % (1 << 20) == 0 else { throw bad("log_length", "\(length) is not a multiple of 1 MiB") }
        guard length <= maxLog else { throw bad("log_length", "a log of \(length) bytes with a GUID set: imgtool does not search logs over 64 MiB") }
        // Past the end of the file the log reads as zeros and holds no entry: only the bytes the file has are searched.
        let have = file.stat.kind == .blockDevice ? length : offset < file.stat.size ? min(length, file.stat.size - offset) : 0
        let log = try readPadded(file, at: offset, count: Int(have), format: .vhdx, field: "log")
        let lw = ByteWindow(log)
        var at = 0
        while at + 64 <= log.count {
            if lw.starts(with: Array("loge".utf8), at: at), lw.slice(at + 32, 16)?.elementsEqual(guid) == true,
               let n = lw.u32LE(at + 8), n >= 4096, n % 4096 == 0, Int(n) <= log.count - at {
                let entry = Array(log[at..<(at + Int(n))])
                if CRC32C.checksum(entry, zeroedAt: 4) == lw.u32LE(at + 4) {
                    throw bad("log", "the image contains a log that needs to be replayed; QEMU refuses to open it read-only (run qemu-img check -r all on a copy)")
                }
            }
            at += 4096
        }
    }
}
