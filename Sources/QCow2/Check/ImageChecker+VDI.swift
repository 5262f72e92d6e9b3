extension ImageChecker {
    /// VDI, as QEMU 7.2's `vdi_co_check` (block/vdi.c) counts: a block map entry below 0xFFFFFFFE but not below
    /// `blocks_in_image` is a corruption (and not counted allocated); one below is allocated, and a corruption too
    /// when it names an image block an earlier entry names (still counted allocated); then the allocated count must equal the header's
    /// `blocks_allocated`, else one more corruption. Entries past the end of the file read as 0 (block 0), as QEMU
    /// reads them. No leaks, no cluster counts, no image end offset: qemu-img reports none for VDI.
    static func checkVDI(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        let h: VDIHeader
        do { h = try VDIHeader.read(file) } catch { throw .unopenable(path: info.filename, reason: error.description) }
        let layer: VDILayer
        do { layer = try VDILayer(file: file, header: h) } catch { throw checkError(error, info.filename) }
        var r = ImageCheck(filename: info.filename, format: .vdi)
        // blocks ≤ 0x1FFFFF8 (the header reader refuses more): at most 4 MiB of bits.
        var used = CheckBits(count: h.blocks)
        var allocated: UInt64 = 0

        func take(_ i: UInt64, _ entry: UInt64) {
            let at = h.bmapOffset + i * 4
            guard entry < 0xFFFF_FFFE else { return }
            if entry >= h.blocks {
                r.record(.corruption, cluster: i, offset: at, table: "block map",
                         "Block map entry \(i) (at byte \(at)) names image block \(entry), past the \(h.blocks) blocks the image has.")
                return
            }
            allocated += 1
            if used.insert(entry) {
                r.record(.corruption, cluster: i, offset: at, table: "block map",
                         "Block map entry \(i) (at byte \(at)) names image block \(entry), which an earlier entry already uses.")
            }
        }

        let inFile = entriesInFile(file, base: h.bmapOffset, entrySize: 4, count: h.blocks)
        for i in 0..<inFile {
            let entry: UInt64
            do { entry = try layer.bmap.entry(i) ?? 0xFFFF_FFFF } catch { throw checkError(error, info.filename) }
            take(i, entry)
        }
        // The rest of the map lies past the end of the file: QEMU reads zeros, so each names block 0.
        let rest = h.blocks - inFile
        if rest > 0 {
            take(inFile, 0)
            if rest > 1 {
                allocated += rest - 1
                let at = h.bmapOffset + (inFile + 1) * 4
                r.record(.corruption, count: rest - 1, cluster: inFile + 1, offset: at, table: "block map",
                         "Block map entries \(inFile + 1)–\(h.blocks - 1) lie past the end of the file and read as 0: \(rest - 1) more entries name image block 0, already used.")
            }
        }
        // QEMU compares as 32-bit counts.
        if allocated & 0xFFFF_FFFF != h.blocksAllocated {
            r.record(.corruption, offset: 388, table: "header",
                     "The header's blocks_allocated is \(h.blocksAllocated), but the block map allocates \(allocated) blocks.")
        }
        r.finish()
        return r
    }
}
