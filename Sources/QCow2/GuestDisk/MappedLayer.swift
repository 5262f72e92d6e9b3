/// Where a run of guest bytes comes from.
enum GuestExtent {
    /// Bytes of a host file at an offset (zeros past its end, as QEMU reads them).
    case host(ImageFile, UInt64)
    /// Zeros.
    case zero
    /// The backing layer's bytes at the same guest offset (zeros when there is none).
    case backing
    /// Decompressed bytes held in memory, from an index on.
    case buffer([UInt8], Int)
}

/// A layer that maps guest offsets run by run (a block, grain or cluster at a time); the read loop is shared.
protocol MappedLayer: GuestLayer {
    var backing: (any GuestLayer)? { get }
    /// The image this layer reads, for messages.
    var file: ImageFile { get }
    /// Where the bytes at `offset` (below `size`) come from, and for how many bytes at most (≥ 1).
    func map(_ offset: UInt64) throws(GuestDisk.Error) -> (GuestExtent, UInt64)
}

extension MappedLayer {
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(GuestDisk.Error) {
        var done = 0
        while done < buffer.count {
            let (off, o) = offset.addingReportingOverflow(UInt64(done))
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            guard !o, off < size else { zero(rest); return }
            let (extent, run) = try map(off)
            let n = Int(min(UInt64(rest.count), max(run, 1), size - off))
            let chunk = UnsafeMutableRawBufferPointer(rebasing: rest[..<n])
            switch extent {
            case .host(let file, let at):
                do { try file.readZeroFilled(at: at, into: chunk) } catch { throw .io(error) }
            case .zero:
                zero(chunk)
            case .backing:
                if let backing { try backing.read(into: chunk, at: off) } else { zero(chunk) }
            case .buffer(let bytes, let from):
                guard from >= 0, from <= bytes.count, n <= bytes.count - from else {
                    throw .corrupt(path: file.path, field: "decompressed data at guest offset \(off)", offset: off, reason: "shorter than the read")
                }
                bytes.withUnsafeBytes { src in chunk.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[from..<(from + n)])) }
            }
            done += n
        }
    }
}

/// A table of 32- or 64-bit entries in a file (a BAT, a grain directory, a block map), read lazily 64 KiB at a
/// time and cached, so a partition table costs a pread or two, not the whole table.
final class TableCache {
    let file: ImageFile
    let base: UInt64
    let entrySize: UInt64
    let count: UInt64
    let bigEndian: Bool
    let name: String
    var pages: [UInt64: [UInt8]] = [:]
    static let pageBytes: UInt64 = 64 << 10

    /// Nil when the table's extent overflows 64 bits.
    init?(file: ImageFile, base: UInt64, entrySize: UInt64, count: UInt64, bigEndian: Bool, name: String) {
        guard entrySize == 4 || entrySize == 8, count <= UInt64.max / 16,
              !base.addingReportingOverflow(count * entrySize).overflow else { return nil }
        self.file = file
        self.base = base
        self.entrySize = entrySize
        self.count = count
        self.bigEndian = bigEndian
        self.name = name
    }

    /// Entry `i`; nil past the table's end.
    func entry(_ i: UInt64) throws(GuestDisk.Error) -> UInt64? {
        guard i < count else { return nil }
        let byte = i * entrySize
        let page = byte / Self.pageBytes
        if pages[page] == nil {
            let start = page * Self.pageBytes
            let n = Int(min(Self.pageBytes, count * entrySize - start))
            var b: [UInt8]
            do { b = try file.read(at: base + start, count: n) } catch { throw .io(error) }
            if b.count < n { b += [UInt8](repeating: 0, count: n - b.count) }  // past the end: zeros, as QEMU reads
            if pages.count >= 256 { pages.removeAll(keepingCapacity: true) }
            pages[page] = b
        }
        let w = ByteWindow(pages[page] ?? [])
        let at = Int(byte - page * Self.pageBytes)
        if entrySize == 4 { return (bigEndian ? w.u32BE(at) : w.u32LE(at)).map(UInt64.init) }
        return bigEndian ? w.u64BE(at) : w.u64LE(at)
    }
}

/// True for a power of two.
func isPowerOfTwo(_ v: UInt64) -> Bool { v != 0 && v & (v - 1) == 0 }
