extension ImageChecker {
    /// VHDX, as QEMU 7.2's `vhdx_co_check` → `vhdx_check_bat_entries` (block/vhdx.c) counts. Only fully present
    /// (state 6) BAT entries are looked at, each adding a corruption for every test it fails:
    /// - its offset (bits 20–63) is above INT64_MAX minus the block size;
    /// - it starts at or after the end of the file, or else its block (cut at the virtual disk's end, reckoned as
    ///   QEMU does from the BAT index) ends after it;
    /// - its block overlaps a region (the log, the BAT, the metadata, any region table entry) — tested only while
    ///   a countdown of `chunk ratio` fully present entries runs; the entry that finds it at 0 restarts it untested
    ///   (QEMU's walk takes it for a sector bitmap entry, whatever its position).
    /// A log that needs replaying stops QEMU's read-only open before any check ("opened read-only, but contains a
    /// log that needs to be replayed"); the header reader refuses it the same way. qemu-img reports no cluster
    /// counts and no image end offset for VHDX.
    static func checkVHDX(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        let h: VHDXHeader
        do { h = try VHDXHeader.read(file) } catch { throw .unopenable(path: info.filename, reason: error.description) }
        let layer: VHDXLayer
        do { layer = try VHDXLayer(file: file, header: h) } catch { throw checkError(error, info.filename) }
        var r = ImageCheck(filename: info.filename, format: .vhdx)
        let size = file.qemuLength, block = h.blockSize
        // `bs->total_sectors` is the size shifted by the logical sector size's bits, then used as 512-byte sectors
        // (the same while QEMU opens only 512-byte logical sectors).
        let shift = UInt64(h.logicalSectorSize.trailingZeroBitCount)
        let guestEnd = (h.virtualSize >> shift) &* 512
        var payloadCountdown = h.chunkRatio

        // Entries past the end of the file read as 0 (not present): only the ones in the file can count.
        let inFile = entriesInFile(file, base: h.batOffset, entrySize: 8, count: h.batEntries)
        for i in 0..<inFile {
            let entry: UInt64
            do { entry = try layer.bat.entry(i) ?? 0 } catch { throw checkError(error, info.filename) }
            guard entry & 7 == 6 else { continue }
            let offset = entry & 0xFFFF_FFFF_FFF0_0000
            let at = h.batOffset + i * 8
            let name = "BAT entry \(i) (at byte \(at))"
            // QEMU's MIN of unsigned values: past the disk's end the difference wraps and the whole block counts.
            let length = min(block, guestEnd &- i &* block)
            if offset > UInt64(Int64.max) - block {
                r.record(.corruption, cluster: i, offset: at, table: "BAT", "\(name): block offset \(hex(offset)) overflows.")
            }
            if offset >= size {
                r.record(.corruption, cluster: i, offset: at, table: "BAT",
                         "\(name): block at \(hex(offset)) starts after the end of the file (\(size) bytes); the image has probably been truncated.")
            } else if offset + length > size {
                r.record(.corruption, cluster: i, offset: at, table: "BAT",
                         "\(name): block at \(hex(offset)) ends at \(hex(offset + length - 1)), after the end of the file (\(size) bytes); the image has probably been truncated.")
            }
            if payloadCountdown > 0 {
                payloadCountdown -= 1
                let end = offset &+ block
                if let reg = h.regions.first(where: { VHDXHeader.overlaps(offset, end, $0) }) {
                    r.record(.corruption, cluster: i, offset: at, table: "BAT",
                             "\(name): block \(hex(offset))–\(hex(end)) overlaps the region \(hex(reg.start))–\(hex(reg.end)) (log, BAT or metadata).")
                }
            } else {
                payloadCountdown = h.chunkRatio
            }
        }
        r.finish()
        return r
    }
}
