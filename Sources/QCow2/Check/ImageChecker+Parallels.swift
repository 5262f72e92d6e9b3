extension ImageChecker {
    /// Parallels, as QEMU 7.2's `parallels_co_check` (block/parallels.c) counts, read-only:
    /// - the `inuse` magic (not closed cleanly) is one corruption;
    /// - `total-clusters` is the BAT's entry count; each non-zero entry is an allocated cluster, and one whose offset
    ///   is past the end of the file (strictly: an entry at exactly the end is not) is a corruption as well;
    /// - a cluster that does not follow the previous entry's (when that one is allocated) is fragmented;
    /// - `image-end-offset` is the highest cluster's offset plus one cluster (one cluster when none is allocated),
    ///   and the bytes of the file past it are leaks, counted in clusters rounded up.
    static func checkParallels(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        let h: ParallelsHeader
        do { h = try ParallelsHeader.read(file) } catch { throw .unopenable(path: info.filename, reason: error.description) }
        let layer: ParallelsLayer
        do { layer = try ParallelsLayer(file: file, header: h) } catch { throw checkError(error, info.filename) }
        var r = ImageCheck(filename: info.filename, format: .parallels)
        let size = file.qemuLength
        // tracks ≤ INT32_MAX / 513 (the header reader refuses more): a cluster fits in 32 bits.
        let cluster = h.tracks * 512

        if h.inUse {
            r.record(.corruption, offset: 44, table: "header",
                     "The header's inuse field says the image was not closed correctly (qemu-img check -r all clears it).")
        }
        r.totalClusters = h.batEntries
        r.compressedClusters = 0

        var high: UInt64 = 0, prev: UInt64 = 0, allocated: UInt64 = 0, fragmented: UInt64 = 0
        // Entries past the end of the file read as 0 (unallocated): only the ones in the file can count.
        let inFile = entriesInFile(file, base: 64, entrySize: 4, count: h.batEntries)
        for i in 0..<inFile {
            let entry: UInt64
            do { entry = try layer.bat.entry(i) ?? 0 } catch { throw checkError(error, info.filename) }
            // entry < 2^32, multiplier ≤ tracks < 2^22, × 512: below 2^63, as QEMU's int64 holds it.
            let (sectors, o1) = entry.multipliedReportingOverflow(by: h.offsetMultiplier)
            let (off, o2) = sectors.multipliedReportingOverflow(by: 512)
            guard !o1, !o2 else { throw .unopenable(path: info.filename, reason: "BAT entry \(i) overflows") }
            if off == 0 {
                prev = 0
                continue
            }
            if off > size {
                r.record(.corruption, cluster: i, offset: off, table: "BAT",
                         "BAT entry \(i) (at byte \(64 + i * 4)) points to offset \(hex(off)), past the end of the file (\(size) bytes).")
            }
            allocated += 1
            high = max(high, off)
            // Both below 2^63 (above): the sum cannot overflow.
            if prev != 0 && prev + cluster != off { fragmented += 1 }
            prev = off
        }
        r.allocatedClusters = allocated
        r.fragmentedClusters = fragmented

        let end = high + cluster
        r.imageEndOffset = end
        if size > end {
            let bytes = size - end
            let count = bytes / cluster + (bytes % cluster == 0 ? 0 : 1)
            r.record(.leak, count: count, offset: end, table: "file",
                     "\(bytes) bytes after the last cluster the BAT uses (which ends at \(hex(end))) are used by nothing: \(count) leaked cluster\(count == 1 ? "" : "s").")
        }
        r.finish()
        return r
    }
}
