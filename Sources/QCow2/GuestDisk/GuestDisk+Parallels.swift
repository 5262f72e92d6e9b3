/// A Parallels header, checked as `parallels_open` checks it.
struct ParallelsHeader: Sendable {
    var sectors: UInt64
    var tracks: UInt64
    var batEntries: UInt64
    /// BAT entries count in sectors for the old magic, in clusters for the new one.
    var offsetMultiplier: UInt64
    /// The `inuse` field holds 0x746F6E59: the image was not closed cleanly (QEMU's check counts a corruption).
    var inUse: Bool = false

    static func read(_ file: ImageFile) throws(FormatError) -> ParallelsHeader {
        let w = ByteWindow(try readPadded(file, at: 0, count: 64, format: .parallels, field: "header"))
        func bad(_ field: String, _ reason: String) -> FormatError { FormatError(path: file.path, format: .parallels, field: field, reason: reason) }
        let old = w.starts(with: Array("WithoutFreeSpace".utf8))
        let tracks = UInt64(w.u32LE(28) ?? 0)
        var sectors = w.u64LE(36) ?? 0
        if old { sectors &= 0xFFFF_FFFF }
        guard tracks != 0 else { throw bad("tracks", "invalid image: zero sectors per track") }
        guard tracks <= UInt64(Int32.max) / 513 else { throw bad("tracks", "invalid image: too big cluster") }
        let bat = UInt64(w.u32LE(32) ?? 0)
        guard bat <= UInt64(Int32.max) / 4 else { throw bad("bat_entries", "catalog too large") }
        guard sectors <= UInt64(Int64.max) / 512 else { throw bad("nb_sectors", "image too large") }
        // A read-only open reads the format extension cluster (`parallels_read_format_extension`) and refuses it
        // without its magic. (Its MD5 checksum and features are not checked here.) QEMU asserts the offset, in
        // bytes as a signed number, is positive: past 2^54 sectors qemu-img aborts.
        if let ext = w.u64LE(56), ext != 0 {
            let at = ext &<< 9
            guard Int64(bitPattern: at) > 0 else { throw bad("ext_off", "\(ext) sectors overflows (qemu-img aborts on it)") }
            let magic = ByteWindow(try readPadded(file, at: at, count: 8, format: .parallels, field: "format extension")).u64LE(0) ?? 0
            guard magic == 0xAB23_4CEF_23DC_EA87 else {
                throw bad("ext_off", "wrong parallels Format Extension magic: 0x\(String(magic, radix: 16)), expected: 0xab234cef23dcea87")
            }
        }
        return ParallelsHeader(sectors: sectors, tracks: tracks, batEntries: bat, offsetMultiplier: old ? 1 : tracks,
                               inUse: w.u32LE(44) == 0x746F_6E59)
    }
}

/// A Parallels layer: a BAT of little-endian cluster (or sector) numbers right after the 64-byte header.
final class ParallelsLayer: MappedLayer {
    let file: ImageFile
    let header: ParallelsHeader
    let bat: TableCache
    var backing: (any GuestLayer)? { nil }
    var size: UInt64 { header.sectors * 512 }

    init(file: ImageFile, header: ParallelsHeader) throws(GuestDisk.Error) {
        self.file = file
        self.header = header
        guard let t = TableCache(file: file, base: 64, entrySize: 4, count: header.batEntries, bigEndian: false, name: "BAT") else {
            throw .corrupt(path: file.path, field: "bat_entries", offset: 32, reason: "table overflows")
        }
        bat = t
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        let c = header.tracks * 512
        let index = offset / c, inCluster = offset % c
        let entry = try bat.entry(index) ?? 0
        if entry == 0 { return (.backing, c - inCluster) }
        // entry < 2^32 and the multiplier < 2^22: no overflow.
        return (.host(file, entry * header.offsetMultiplier * 512 + inCluster), c - inCluster)
    }
}
