extension QCow2Header {
    /// Reads the bitmap directory and each bitmap's table as QEMU 7.2 does when it opens the image: the extension's
    /// fields (`qcow2_read_extensions`), every directory entry (`bitmap_list_load`, `check_dir_entry`), and for each
    /// bitmap not marked in use its table's size and entries (`load_bitmap`). An extension without the autoclear
    /// "bitmaps" bit is ignored, as QEMU ignores it. Reads are bounded: the directory by QEMU's 64 MiB limit, a table
    /// by the size the virtual disk needs (checked before it is read).
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
        guard dirOffset <= UInt64(Int64.max) - dirSize else { throw bad(0, "bitmap_directory_offset", dirOffset, "beyond what QEMU addresses") }
        let dir = ByteWindow(try read(dirOffset, Int(dirSize)))
        // QEMU's length of the disk: whole sectors (bs->total_sectors × 512).
        let length = size / 512 * 512
        var bitmaps: [QCow2Bitmap] = []
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
            let name = decodeText((dir.slice(e + 24, Int(nameSize)) ?? []).prefix { $0 != 0 })
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
            bitmaps.append(QCow2Bitmap(name: name, tableOffset: tableOffset, tableSize: tableSize, flags: flags, granularityBits: granularity, entryOffset: at))
            e += Int(entrySize)
        }
        if bitmaps.count != Int(ext.count) {
            throw bad(dirOffset, "nb_bitmaps", UInt64(ext.count), "fewer bitmaps in the directory (\(bitmaps.count)) than the header extension says")
        }
        // QEMU loads every bitmap not marked in use: its table must have the size the virtual disk needs, and every
        // entry must be valid (`bitmap_table_load`, `load_bitmap_data`).
        for (i, bm) in bitmaps.enumerated() where bm.flags & QCow2Bitmap.inUse == 0 {
            let needed = length == 0 ? 0 : (((((length - 1) >> UInt64(bm.granularityBits)) >> 6) + 1) * 8 + clusterSize - 1) / clusterSize
            guard needed == UInt64(bm.tableSize) else {
                throw bad(bm.entryOffset, "bitmap \(i) bitmap_table_size", UInt64(bm.tableSize), "the virtual size needs \(needed) entries (\"Could not read bitmap '\(bm.name)' from image\")")
            }
            let table = ByteWindow(try read(bm.tableOffset, Int(bm.tableSize) * 8))
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
