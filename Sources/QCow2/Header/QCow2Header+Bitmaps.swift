extension QCow2Header {
    /// Reads the bitmap directory and each bitmap's table as QEMU 7.2 does when it opens the image: the extension's
    /// fields (`qcow2_read_extensions`), every directory entry (`bitmap_list_load`, `check_dir_entry`), and for each
    /// bitmap not marked in use its table's size and entries (`load_bitmap`). An extension without the autoclear
    /// "bitmaps" bit is ignored, as QEMU ignores it. Reads are bounded: the directory by QEMU's 64 MiB limit, a table
    /// by QEMU's 512 MiB data limit (checked before it is read: at most 2^20 entries, 8 MiB).
    public func readBitmaps(from file: ImageFile) throws(QCow2Bitmap.Error) -> [QCow2Bitmap] {
        guard let ext = bitmaps, autoclearFeatures & 1 != 0 else { return [] }
        let path = file.path
        func bad(_ offset: UInt64, _ field: String, _ value: UInt64, _ reason: String) -> QCow2Bitmap.Error {
            .invalid(path: path, offset: offset, field: field, value: value, reason: reason)
        }
        func read(_ offset: UInt64, _ count: Int) throws(QCow2Bitmap.Error) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            let r: Result<Void, ImageFile.Error> = out.withUnsafeMutableBytes { raw in
                do throws(ImageFile.Error) { try file.readZeroFilled(at: offset, into: raw); return .success(()) } catch { return .failure(error) }
            }
            if case .failure(let e) = r { throw .io(e) }
            return out
        }
        if ext.reserved != 0 { throw bad(0, "bitmaps extension reserved", UInt64(ext.reserved), "the reserved field is not zero") }
        if ext.count > QCow2Bitmap.maxBitmaps { throw bad(0, "nb_bitmaps", UInt64(ext.count), "more than QEMU's \(QCow2Bitmap.maxBitmaps) bitmaps") }
        if ext.count == 0 { throw bad(0, "nb_bitmaps", 0, "a bitmaps extension with zero bitmaps") }
        let dirOffset = ext.directoryOffset, dirSize = ext.directorySize
        if dirOffset % clusterSize != 0 { throw bad(0, "bitmap_directory_offset", dirOffset, "not cluster aligned") }
        if dirSize > QCow2Bitmap.maxDirectorySize { throw bad(0, "bitmap_directory_size", dirSize, "more than QEMU's \(QCow2Bitmap.maxDirectorySize) bytes") }
        if dirSize == 0 { throw bad(0, "bitmap_directory_size", 0, "the directory size is zero") }
        guard dirOffset <= QCow2Bitmap.maxRequestEnd - dirSize else {
            throw bad(0, "bitmap_directory_offset", dirOffset, "the directory ends beyond QEMU's \(QCow2Bitmap.maxRequestEnd)-byte limit (\"Failed to read bitmap directory: Input/output error\")")
        }
        let dir = ByteWindow(try read(dirOffset, Int(dirSize)))
        // QEMU's length of the disk: whole sectors (bs->total_sectors × 512).
        let length = size / 512 * 512
        var bitmaps: [QCow2Bitmap] = []
        // Each name as QEMU compares it: the bytes before the first NUL (`g_strndup`, then `strcmp`).
        var rawNames: [[UInt8]] = []
        var e = 0
        let end = Int(dirSize)
        // Each entry is at least 24 bytes, so the walk ends after at most 64 MiB / 24 steps, and the count check
        // below stops it after nb_bitmaps entries.
        while e < end {
            let at = dirOffset + UInt64(e)
            guard e + 24 <= end else { throw bad(at, "bitmap directory", UInt64(e), "an entry runs past the directory (\"Broken bitmap directory\")") }
            guard bitmaps.count < Int(ext.count) else { throw bad(at, "nb_bitmaps", UInt64(ext.count), "more bitmaps in the directory than the header extension says") }
            let tableOffset = dir.u64BE(e) ?? 0, tableSize = dir.u32BE(e + 8) ?? 0, flags = dir.u32BE(e + 12) ?? 0
            let type = dir.u8(e + 16) ?? 0, granularity = dir.u8(e + 17) ?? 0
            let nameSize = dir.u16BE(e + 18) ?? 0, extra = dir.u32BE(e + 20) ?? 0
            let entrySize = (24 + UInt64(nameSize) + UInt64(extra) + 7) & ~7
            guard UInt64(e) + entrySize <= UInt64(end) else { throw bad(at, "bitmap entry size", entrySize, "the entry runs past the directory (\"Broken bitmap directory\")") }
            if extra != 0 { throw bad(at, "bitmap extra_data_size", UInt64(extra), "bitmap extra data is not supported") }
            let rawName = Array((dir.slice(e + 24, Int(nameSize)) ?? []).prefix { $0 != 0 })
            let name = decodeText(rawName)
            func entryBad(_ field: String, _ value: UInt64, _ why: String) -> QCow2Bitmap.Error {
                bad(at, "bitmap \(bitmaps.count) \(field)", value, "\(why) (\"Bitmap '\(name)' doesn't satisfy the constraints\")")
            }
            if tableSize == 0 { throw entryBad("bitmap_table_size", 0, "an empty bitmap table") }
            if tableOffset == 0 || tableOffset % clusterSize != 0 { throw entryBad("bitmap_table_offset", tableOffset, "zero or not cluster aligned") }
            if tableSize > QCow2Bitmap.maxTableSize { throw entryBad("bitmap_table_size", UInt64(tableSize), "larger than QEMU's \(QCow2Bitmap.maxTableSize) entries") }
            if !QCow2Bitmap.granularityBitsRange.contains(granularity) { throw entryBad("granularity_bits", UInt64(granularity), "outside 9...31") }
            if flags & ~UInt32(3) != 0 { throw entryBad("flags", UInt64(flags), "reserved flags are set") }
            if nameSize > QCow2Bitmap.maxNameSize { throw entryBad("name_size", UInt64(nameSize), "longer than 1023 bytes") }
            if type != 1 { throw entryBad("type", UInt64(type), "not a dirty tracking bitmap") }
            let physical = UInt64(tableSize) * clusterSize
            if physical > QCow2Bitmap.maxPhysicalSize { throw entryBad("bitmap_table_size", UInt64(tableSize), "its data would exceed 512 MiB") }
            // physical ≤ 2^29, so (physical × 8) << 31 ≤ 2^63: no overflow.
            if flags & QCow2Bitmap.inUse == 0 && length > (physical * 8) << UInt64(granularity) {
                throw entryBad("bitmap_table_size", UInt64(tableSize), "too small for the virtual size")
            }
            rawNames.append(rawName)
            bitmaps.append(QCow2Bitmap(name: name, tableOffset: tableOffset, tableSize: tableSize, flags: flags, granularityBits: granularity, entryOffset: at))
            e += Int(entrySize)
        }
        if bitmaps.count != Int(ext.count) {
            throw bad(dirOffset, "nb_bitmaps", UInt64(ext.count), "fewer bitmaps in the directory (\(bitmaps.count)) than the header extension says")
        }
        // QEMU creates one dirty bitmap per entry, in order (`qcow2_load_dirty_bitmaps`): a name already created
        // fails the open ("Bitmap already exists"), except that an entry marked in use is then skipped. The set
        // holds at most nb_bitmaps names of at most 1023 bytes.
        var created = Set<[UInt8]>()
        for (i, bm) in bitmaps.enumerated() {
            if created.contains(rawNames[i]) {
                if bm.flags & QCow2Bitmap.inUse != 0 { continue }
                throw bad(bm.entryOffset, "bitmap \(i) name", UInt64(rawNames[i].count), "another bitmap already has the name '\(bm.name)' (\"Bitmap already exists\")")
            }
            created.insert(rawNames[i])
            if bm.flags & QCow2Bitmap.inUse != 0 { continue }
            // Then it loads each bitmap not marked in use: its table is read and every entry checked
            // (`bitmap_table_load`), then the table must have the size the virtual disk needs (`load_bitmap_data`).
            // The size is checked first here (either failure refuses the image) so that no table is read beyond
            // what the virtual size needs.
            let needed = length == 0 ? 0 : (((((length - 1) >> UInt64(bm.granularityBits)) >> 6) + 1) * 8 + clusterSize - 1) / clusterSize
            guard needed == UInt64(bm.tableSize) else {
                throw bad(bm.entryOffset, "bitmap \(i) bitmap_table_size", UInt64(bm.tableSize), "the virtual size needs \(needed) entries (\"Could not read bitmap '\(bm.name)' from image\")")
            }
            // tableSize ≤ 2^27 here, so the table is at most 1 GiB and the subtraction cannot wrap.
            let tableBytes = UInt64(bm.tableSize) * 8
            guard bm.tableOffset <= QCow2Bitmap.maxRequestEnd - tableBytes else {
                throw bad(bm.entryOffset, "bitmap \(i) bitmap_table_offset", bm.tableOffset, "the table ends beyond QEMU's \(QCow2Bitmap.maxRequestEnd)-byte limit (\"Could not read bitmap_table table from image for bitmap '\(bm.name)': Input/output error\")")
            }
            let table = ByteWindow(try read(bm.tableOffset, Int(tableBytes)))
            for k in 0..<Int(bm.tableSize) {
                let entry = table.u64BE(k * 8) ?? 0
                let offset = entry & 0x00FF_FFFF_FFFF_FE00
                if entry & 0xFF00_0000_0000_01FE != 0 || (offset != 0 && (entry & 1 != 0 || offset % clusterSize != 0)) {
                    throw bad(bm.tableOffset + UInt64(k) * 8, "bitmap \(i) table entry \(k)", entry, "reserved bits set or data not cluster aligned (\"Could not read bitmap_table table from image for bitmap '\(bm.name)'\")")
                }
            }
        }
        return bitmaps
    }
}
