import Glibc

extension LayerSpace {
    /// Most lookups the generic reader makes for one layer: a format it walks block by block must not run for hours.
    public static let maxLookups: UInt64 = 1 << 25

    /// The allocation map of one image (not its backing chain): qcow2 from its tables, raw from the file system's
    /// holes (`SEEK_DATA`/`SEEK_HOLE`), every other format QEMU maps through the guest-disk reader's `map`.
    /// `maxLookups` bounds the generic walk (a fuzzer passes a small one).
    public static func read(_ info: ImageInfo, maxLookups: UInt64 = maxLookups) throws(Error) -> LayerSpace {
        let file: ImageFile
        do { file = try ImageFile.open(info.filename) } catch { throw .read(.io(error)) }
        return try read(info, file: file, maxLookups: maxLookups)
    }

    /// The same from the file `info` was read from, still open: `scan --space` reads each image's header and its
    /// tables through one open.
    public static func read(_ info: ImageInfo, file: ImageFile, maxLookups: UInt64 = maxLookups) throws(Error) -> LayerSpace {
        switch info.format {
        case .qcow2:
            guard let header = info.qcow2 else { throw .read(.unsupportedFormat(path: info.filename, format: "qcow2")) }
            return try QCow2SpaceReader(file: file, header: header, path: info.filename).space(filename: info.filename)
        case .raw:
            return raw(file, info: info)
        default:
            let layer: any GuestLayer
            do { layer = try GuestDisk.otherLayer(for: info, file: file, backing: nil) } catch { throw .read(error) }
            guard let mapped = layer as? any MappedLayer else { throw .read(.unsupportedFormat(path: info.filename, format: info.format.rawValue)) }
            return try generic(mapped, info: info, maxLookups: maxLookups)
        }
    }

    /// A raw file: data extents and holes as `lseek` reports them (past the file's end, zeros up to the virtual
    /// size); the whole file is one data run where the file system cannot tell (a block device, an old file system).
    static func raw(_ file: ImageFile, info: ImageInfo) -> LayerSpace {
        // QEMU counts a raw file in whole 512-byte sectors (a 1000-byte file is a 1024-byte disk, its tail reading
        // zeros): ImageInfo's virtual size says so; the file's own size only when it has none.
        let size = info.virtualSize ?? file.stat.size
        var builder = RunBuilder()
        let fd = file.rawDescriptor
        var at: UInt64 = 0
        var holesKnown = file.stat.kind == .regular
        while holesKnown && at < size {
            let data = lseek(fd, off_t(at), 3)  // SEEK_DATA (Glibc does not export it)
            if data < 0 {
                if errno == ENXIO { builder.add(at, size - at, .zero); at = size } else { holesKnown = false }
                break
            }
            let d = min(UInt64(data), size)
            builder.add(at, d - at, .zero)
            guard d < size else { at = size; break }
            let hole = lseek(fd, off_t(d), 4)  // SEEK_HOLE
            if hole < 0 { holesKnown = false; break }
            let h = min(max(UInt64(hole), d + 1), size)
            builder.add(d, h - d, .data)
            at = h
        }
        if !holesKnown { builder = RunBuilder(); builder.add(0, size, .data) }
        let data = builder.runs.reduce(0) { $0 + ($1.kind == .data ? $1.length : 0) }
        return LayerSpace(filename: info.filename, format: .raw, virtualSize: size, fileSize: file.stat.size, runs: builder.runs,
                          supportsBacking: false, hostData: data,
                          metadata: 0, snapshots: 0, unused: 0, clusterSize: 0)
    }

    /// Any other format, through its guest-disk `map`, run by run, neighbours merged.
    static func generic(_ layer: any MappedLayer, info: ImageInfo, maxLookups: UInt64) throws(Error) -> LayerSpace {
        let size = layer.size
        // As QEMU 7.2's block status reports them: qcow, QED and VMDK read unmapped ranges from the backing file and
        // report their zero clusters and grains; Parallels can have a backing file but has no zero clusters; VHD
        // and VDI report an unallocated block as zeros they hold (qemu-img map: present, zero). Bochs, cloop, DMG and VHDX have no block
        // status in QEMU: the whole disk is data there.
        let backs = [.qcow, .qed, .vmdk, .parallels].contains(info.format)
        let zeroHeld = [.qcow, .qed, .vmdk, .vpc, .vdi].contains(info.format)
        let allData = [.bochs, .cloop, .dmg, .vhdx].contains(info.format)
        // QEMU asks the file under a VDI whether a block's bytes are a hole (a static image is created sparse): data
        // that reads as zeros there, as for qcow2 preallocated metadata.
        let holes = info.format == .vdi && layer.file.stat.kind == .regular ? fileDataExtents(layer.file) : []
        var builder = RunBuilder()
        var hostData: UInt64 = 0
        var at: UInt64 = 0, lookups: UInt64 = 0
        while at < size {
            lookups += 1
            guard lookups <= maxLookups else {
                throw .tooLarge(path: info.filename, table: "allocation map", bytes: lookups, limit: maxLookups)
            }
            let extent: GuestExtent, run: UInt64
            do { (extent, run) = try layer.map(at) } catch { throw .read(error) }
            let n = min(max(run, 1), size - at)
            switch extent {
            case .host(_, let offset) where !holes.isEmpty:
                splitByHoles(&builder, guest: at, length: n, host: offset, extents: holes); hostData += n
            case .host: builder.add(at, n, .data); hostData += n
            case .buffer: builder.add(at, n, .compressed); hostData += n
            case .zero: if zeroHeld { builder.add(at, n, .zero) }
            case .backing: break
            }
            at += n
        }
        if allData { builder = RunBuilder(); builder.add(0, size, .data) }
        let fileSize = layer.file.stat.size
        let held = min(hostData, fileSize)
        return LayerSpace(filename: info.filename, format: info.format, virtualSize: size, fileSize: fileSize, runs: builder.runs,
                          supportsBacking: backs, hostData: held, metadata: fileSize - held, snapshots: 0, unused: 0,
                          clusterSize: info.clusterSize ?? 0)
    }

    /// The file's data extents (start, end), sorted, from `SEEK_DATA`/`SEEK_HOLE`; one over the whole file when the
    /// file system cannot tell.
    static func fileDataExtents(_ file: ImageFile) -> [(UInt64, UInt64)] {
        let size = file.stat.size, fd = file.rawDescriptor
        var out: [(UInt64, UInt64)] = []
        var at: UInt64 = 0
        while at < size {
            let d = lseek(fd, off_t(at), 3)  // SEEK_DATA
            if d < 0 { if errno == ENXIO { break }; return [(0, size)] }
            let h = lseek(fd, off_t(d), 4)  // SEEK_HOLE
            if h < 0 { return [(0, size)] }
            let end = min(max(UInt64(h), UInt64(d) + 1), size)
            out.append((UInt64(d), end))
            at = end
        }
        return out
    }

    /// Adds `length` guest bytes at `guest`, held at `host`: data where the file has data, `.preallocated` (data
    /// that reads as zeros) over its holes and past its end.
    static func splitByHoles(_ builder: inout RunBuilder, guest: UInt64, length: UInt64, host: UInt64, extents: [(UInt64, UInt64)]) {
        let (hostEnd, o) = host.addingReportingOverflow(length)
        guard !o else { builder.add(guest, length, .data); return }
        // The first extent ending after `host`.
        var lo = 0, hi = extents.count
        while lo < hi { let mid = (lo + hi) / 2; if extents[mid].1 <= host { lo = mid + 1 } else { hi = mid } }
        var at = host
        while at < hostEnd {
            if lo < extents.count, extents[lo].0 <= at {
                let end = min(extents[lo].1, hostEnd)
                builder.add(guest + (at - host), end - at, .data)
                at = end
                lo += 1
            } else {
                let end = lo < extents.count ? min(extents[lo].0, hostEnd) : hostEnd
                builder.add(guest + (at - host), end - at, .preallocated)
                at = end
            }
        }
    }
}
