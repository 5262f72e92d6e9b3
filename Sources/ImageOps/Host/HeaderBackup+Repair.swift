import QCow2
import SystemPackage

import Glibc

/// The save a repair (`check --repair`, `qemu-img check -r`) needs: every byte of the file that qemu-img may rewrite,
/// and the file's size. qemu-img's repair rewrites the header, L1 and L2 entries, the refcount table and blocks, and
/// may build new refcount structures in free or leaked clusters or past the end; it never writes a cluster an L2
/// table references as guest data. So the save holds every cluster of the file that is not such a data cluster
/// (`QCow2DataClusters`): its bytes where the file has data, and "a hole" where it has none (`SEEK_DATA`), so
/// `undo` gives back the damaged image byte for byte (what the repair wrote into a hole is overwritten with zeros),
/// then cuts the file to its old size.
public struct RepairSave: Sendable, Equatable {
    /// One stretch of the file the save covers.
    public struct Region: Sendable, Equatable {
        /// Where it starts in the file.
        public var offset: UInt64
        /// How long it is.
        public var length: UInt64
        /// True when the file held data there (its bytes are saved); false for a hole (nothing to save: undo makes it
        /// a hole again).
        public var data: Bool
    }

    /// The stretches, in file order, disjoint.
    public var regions: [Region]
    /// The saved bytes of the data regions, one after the other.
    public var bytes: [UInt8]
    /// The fingerprint of those regions (and of anything past the old end) before the repair.
    public var digestBefore: String
    /// The same after the repair ("" while the save is pending).
    public var digestAfter: String

    /// The most bytes a repair's save holds; a larger one is refused before anything is written.
    public static let budget: UInt64 = 128 << 20
    /// The most regions a save holds (each is 17 bytes in the save file).
    public static let maxRegions = 1 << 20

    /// Bytes the data regions hold.
    public var savedBytes: UInt64 { regions.reduce(0) { $0 + ($1.data ? $1.length : 0) } }

    /// Why no save could be made: the repair is refused.
    public struct Failure: Swift.Error, Sendable, Equatable {
        /// In words.
        public var reason: String
    }

    /// The regions of `file` a repair may rewrite, without reading their bytes (the dry run's figure).
    /// `wholeFile`: every data extent of the file, guest data too (see `Operations.repair`: a repair of corrupted
    /// tables can free, and so discard, clusters the damaged tables still reference).
    public static func plan(_ file: ImageFile, wholeFile: Bool = false) throws(Failure) -> [Region] {
        let map: QCow2DataClusters
        do { map = try QCow2DataClusters.read(file) } catch { throw Failure(reason: error.description) }
        let cs = map.clusterSize, n = map.clusterCount, size = map.fileSize
        var regions: [Region] = []
        var c: UInt64 = 0
        while c < n {
            if !wholeFile && map.isData(c) { c += 1; continue }
            let start = c
            while c < n && (wholeFile || !map.isData(c)) { c += 1 }
            let from = start * cs, to = min(c * cs, size)
            var at = from
            for (d, e) in dataExtents(file.rawDescriptor, from: from, to: to) {
                if d > at { regions.append(Region(offset: at, length: d - at, data: false)) }
                regions.append(Region(offset: d, length: e - d, data: true))
                at = e
            }
            if at < to { regions.append(Region(offset: at, length: to - at, data: false)) }
            guard regions.count <= maxRegions else { throw Failure(reason: "\(file.path): the save would need more than \(maxRegions) regions") }
        }
        let total = regions.reduce(0) { $0 + ($1.data ? $1.length : 0) }
        guard total <= budget else {
            throw Failure(reason: "\(file.path): the save would hold \(total) bytes of metadata and unreferenced clusters, more than imgtool saves (\(budget))")
        }
        return regions
    }

    /// Takes the save of `file`: the regions and their bytes.
    static func capture(_ file: ImageFile, wholeFile: Bool = false) throws(Failure) -> RepairSave {
        let regions = try plan(file, wholeFile: wholeFile)
        var bytes: [UInt8] = []
        for r in regions where r.data {
            do { bytes += try file.read(at: r.offset, count: Int(r.length)) } catch {
                throw Failure(reason: "\(file.path): could not read \(r.length) bytes at offset \(r.offset) to save them")
            }
        }
        let size = FileIdentity.of(fd: file)?.size ?? file.stat.size
        guard bytes.count == regions.reduce(0, { $0 + ($1.data ? Int($1.length) : 0) }),
              let digest = digest(file, regions, oldSize: size) else {
            throw Failure(reason: "\(file.path): changed while it was being saved")
        }
        return RepairSave(regions: regions, bytes: bytes, digestBefore: digest, digestAfter: "")
    }

    /// The data extents (start, end) of the file in `[from, to)`, from `SEEK_DATA`/`SEEK_HOLE`; all of it when the
    /// file system cannot tell.
    static func dataExtents(_ fd: Int32, from: UInt64, to: UInt64) -> [(UInt64, UInt64)] {
        var out: [(UInt64, UInt64)] = []
        var at = from
        while at < to {
            let d = lseek(fd, off_t(at), 3)  // SEEK_DATA
            if d < 0 { if errno == ENXIO { break }; return [(at, to)] }
            guard UInt64(d) < to else { break }
            let h = lseek(fd, off_t(d), 4)  // SEEK_HOLE
            if h < 0 { return out + [(UInt64(d), to)] }
            let end = min(max(UInt64(h), UInt64(d) + 1), to)
            out.append((UInt64(d), end))
            at = end
        }
        return out
    }

    /// The fingerprint of what `file` holds now in `regions` and past `oldSize`: the file size, then every data
    /// extent there with its bytes. Two states of the file with the same fingerprint read the same in every byte a
    /// repair may write. Nil when it cannot be read (or holds more than twice the budget there).
    static func digest(_ file: ImageFile, _ regions: [Region], oldSize: UInt64) -> String? {
        guard let now = FileIdentity.of(fd: file) else { return nil }
        var hash = SHA256()
        hash.update(number: now.size)
        var spent: UInt64 = 0
        func add(_ from: UInt64, _ to: UInt64) -> Bool {
            let end = min(to, now.size)
            guard from < end else { return true }
            for (d, e) in dataExtents(file.rawDescriptor, from: from, to: end) {
                spent += e - d
                guard spent <= 2 * budget, let bytes = try? file.read(at: d, count: Int(e - d)), bytes.count == Int(e - d) else { return false }
                hash.update(number: d)
                hash.update(number: e - d)
                hash.update(bytes)
            }
            return true
        }
        for r in regions { guard add(r.offset, r.offset + r.length) else { return nil } }
        if now.size > oldSize { guard add(oldSize, now.size) else { return nil } }
        return hash.hex()
    }

    /// Writes the saved regions back into the file `fd` holds (holes punched again), cuts it to `size`, and fsyncs.
    func putBack(_ fd: FileDescriptor, size: UInt64, blockDevice: Bool) throws(Errno) {
        var at = 0
        do {
            for r in regions {
                if r.data {
                    _ = try fd.writeAll(toAbsoluteOffset: Int64(r.offset), bytes[at..<at + Int(r.length)])
                    at += Int(r.length)
                } else {
                    // A hole in the damaged file: zeros over whatever the repair wrote there (they read the same).
                    let zeros = [UInt8](repeating: 0, count: 1 << 20)
                    for (d, e) in Self.dataExtents(fd.rawValue, from: r.offset, to: r.offset + r.length) {
                        var p = d
                        while p < e {
                            let n = Int(min(UInt64(zeros.count), e - p))
                            _ = try fd.writeAll(toAbsoluteOffset: Int64(p), zeros[0..<n])
                            p += UInt64(n)
                        }
                    }
                }
            }
        } catch {
            throw (error as? Errno) ?? .ioError
        }
        if !blockDevice, ftruncate(fd.rawValue, off_t(size)) != 0 { throw Errno(rawValue: errno) }
        guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
    }

    /// The region table as the save file stores it: 17 bytes a region (offset and length big-endian, then 1 for
    /// data, 0 for a hole).
    var table: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(regions.count * 17)
        for r in regions {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: r.offset >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: r.length >> UInt64(shift))) }
            out.append(r.data ? 1 : 0)
        }
        return out
    }

    /// Parses a region table and the bytes after it; nil when they do not fit together (a damaged save).
    static func decode(table: ArraySlice<UInt8>, bytes: ArraySlice<UInt8>, count: Int, sizeBefore: UInt64,
                       digestBefore: String, digestAfter: String) -> RepairSave? {
        guard count >= 0, count <= maxRegions, table.count == count * 17 else { return nil }
        let w = ByteWindow(Array(table))
        var regions: [Region] = []
        var end: UInt64 = 0
        var total: UInt64 = 0
        for i in 0..<count {
            guard let offset = w.u64BE(i * 17), let length = w.u64BE(i * 17 + 8), let flag = w.slice(i * 17 + 16, 1)?.first,
                  flag <= 1, length > 0, offset >= end else { return nil }
            let (stop, o) = offset.addingReportingOverflow(length)
            guard !o, stop <= sizeBefore else { return nil }
            end = stop
            if flag == 1 { total += length }
            regions.append(Region(offset: offset, length: length, data: flag == 1))
        }
        guard total <= budget, UInt64(bytes.count) == total else { return nil }
        return RepairSave(regions: regions, bytes: Array(bytes), digestBefore: digestBefore, digestAfter: digestAfter)
    }
}
