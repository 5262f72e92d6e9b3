/// A dmg (UDIF) layer, read as QEMU 7.2's `dmg_co_preadv` reads it: each guest sector is looked up in the chunk
/// table (the chunk read last first, then QEMU's binary search), zero and ignored chunks read as zeros, raw chunks
/// from the file, zlib chunks inflated whole to exactly their sector count. A sector in no chunk is an error (QEMU
/// fails the read with EIO); so are bzip2 and lzfse chunks, which need libraries imgtool does not have.
final class DMGLayer: MappedLayer {
    let file: ImageFile
    let layout: DMGLayout
    /// QEMU's `current_chunk`: asked before the search, so overlapping chunks resolve as they do for QEMU.
    var current: Int?
    /// The last zlib chunk inflated, by index (QEMU keeps one such buffer).
    var inflated: (Int, [UInt8])?
    var backing: (any GuestLayer)? { nil }
    var size: UInt64 { layout.sectors * 512 }

    init(file: ImageFile, layout: DMGLayout) throws(GuestDisk.Error) {
        self.file = file
        self.layout = layout
    }

    /// Whether chunk `i` holds `sector`; written as a difference so a start near 2^64 cannot wrap.
    func holds(_ i: Int, _ sector: UInt64) -> Bool {
        let c = layout.chunks[i]
        return c.sector <= sector && sector - c.sector < c.sectors
    }

    /// `search_chunk`: QEMU's binary search over the table in file order. Where QEMU would look one entry past
    /// the table (uninitialised memory), this finds nothing.
    func search(_ sector: UInt64) -> Int? {
        var lo = 0, hi = layout.chunks.count
        // Halves [lo, hi] each pass: at most 64 passes.
        while lo <= hi {
            let mid = lo + (hi - lo) / 2
            guard mid < layout.chunks.count else { return nil }
            let c = layout.chunks[mid]
            if c.sector > sector {
                if mid == 0 { return nil }
                hi = mid - 1
            } else if sector - c.sector < c.sectors {
                return mid
            } else {
                lo = mid + 1
            }
        }
        return nil
    }

    func corrupt(_ field: String, _ offset: UInt64, _ reason: String) -> GuestDisk.Error {
        .corrupt(path: file.path, field: field, offset: offset, reason: reason)
    }

    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64) {
        let sector = offset / 512
        let found: Int? = if let current, holds(current, sector) { current } else { search(sector) }
        guard let index = found else {
            current = nil
            throw corrupt("chunk table", layout.tableOffset, "guest sector \(sector) lies in no chunk (QEMU fails the read with an I/O error)")
        }
        current = index
        let c = layout.chunks[index]
        // c.sector ≤ sector, so neither product overflows; a zero chunk may run on for 2^64 sectors, so cap the run.
        let into = offset - c.sector * 512
        let left = c.sectors - (sector - c.sector)
        let run = (left > UInt64.max / 512 ? UInt64.max / 512 * 512 : left * 512) - offset % 512
        switch c.type {
        case DMGLayout.zeros, DMGLayout.ignore:
            return (.zero, run)
        case DMGLayout.raw:
            let data = try extent(c, index)
            // QEMU reads `length` bytes into its buffer and serves the chunk's sectors from it: past them it would
            // hand back whatever an earlier chunk left there, so that is refused here.
            guard into < c.length else {
                throw corrupt("chunk \(index) length", data, "the raw chunk holds \(c.length) bytes for \(c.sectors) sectors; QEMU returns stale buffer bytes past them")
            }
            return (.host(file, data + into), min(run, c.length - into))
        case DMGLayout.zlib:
            let out = try inflate(c, index)
            return (.buffer(out, Int(into)), min(run, UInt64(out.count) - into))
        case DMGLayout.bzip2:
            throw .unsupportedCompression(path: file.path, method: "bzip2", offset: c.offset ?? 0)
        default:
            throw .unsupportedCompression(path: file.path, method: "lzfse", offset: c.offset ?? 0)
        }
    }

    /// The chunk's data offset, checked to address a byte range a read can reach.
    func extent(_ c: DMGChunk, _ index: Int) throws(GuestDisk.Error) -> UInt64 {
        guard let data = c.offset, data <= UInt64(Int64.max), c.length <= UInt64(Int64.max) - data else {
            throw corrupt("chunk \(index) offset", layout.tableOffset, "the data offset overflows")
        }
        return data
    }

    /// Chunk `index` inflated (cached): QEMU wants the zlib stream to end and to give exactly the chunk's sectors.
    func inflate(_ c: DMGChunk, _ index: Int) throws(GuestDisk.Error) -> [UInt8] {
        if let inflated, inflated.0 == index { return inflated.1 }
        let data = try extent(c, index)
        // Past the end QEMU reads zeros, which never start a zlib stream: refuse without reading or allocating.
        guard file.stat.kind == .blockDevice || data < file.stat.size else {
            throw corrupt("chunk \(index)", data, "its \(c.length) compressed bytes lie past the end of the file (\(file.stat.size) bytes)")
        }
        // length ≤ 64 MiB and sectors ≤ 131072 (checked when the table was read): both sizes are bounded.
        var input: [UInt8]
        do { input = try file.read(at: data, count: Int(c.length)) } catch { throw .io(error) }
        if input.count < Int(c.length) { input += [UInt8](repeating: 0, count: Int(c.length) - input.count) }
        let want = Int(c.sectors * 512)
        guard let out = Decompress.zlib(input, outputSize: want), out.count == want else {
            throw corrupt("chunk \(index)", data, "\(c.length) bytes of zlib data do not inflate to \(want) bytes")
        }
        inflated = (index, out)
        return out
    }
}
