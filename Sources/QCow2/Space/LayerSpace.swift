/// What one layer of a chain holds: the guest ranges it maps (top-down reads stop here) and how its file's bytes
/// divide into guest data, metadata, what only internal snapshots and bitmaps hold, and what nothing references.
public struct LayerSpace: Sendable, Equatable {
    /// How a layer maps one run of guest bytes, in the terms of QEMU's block status.
    public enum Kind: UInt8, Sendable, Equatable {
        /// Guest data in a host cluster (or a raw file's data extent).
        case data
        /// A compressed cluster: data, with no host offset of its own.
        case compressed
        /// Reads as zeros with a host cluster kept for it (qcow2 ZERO_ALLOC).
        case zeroAllocated
        /// Reads as zeros with nothing on disk (a zero cluster, a raw file's hole).
        case zero
        /// A data cluster of an image with preallocated metadata whose host range is a hole in the file (or past
        /// its end): QEMU reports it as data that reads as zeros.
        case preallocated

        /// True when the guest reads data (qemu-img map's `data`).
        public var isData: Bool { self == .data || self == .compressed || self == .preallocated }
        /// True when it reads as zeros (qemu-img map's `zero`).
        public var readsZero: Bool { self == .zero || self == .zeroAllocated || self == .preallocated }
    }

    /// One run of guest bytes this layer maps.
    public struct Run: Sendable, Equatable {
        /// First guest byte.
        public var start: UInt64
        /// Bytes in the run (> 0).
        public var length: UInt64
        /// What it is.
        public var kind: Kind
        /// One past the last byte.
        public var end: UInt64 { start + length }
    }

    /// The image, as the chain names it.
    public var filename: String
    /// Its format.
    public var format: ImageFormat
    /// Its virtual size.
    public var virtualSize: UInt64
    /// The file's size in bytes.
    public var fileSize: UInt64
    /// The guest ranges it maps, sorted, not overlapping, neighbours of one kind merged.
    public var runs: [Run]
    /// True when the format can have a backing file (an unmapped range reads through, or as zeros at the bottom):
    /// qemu-img map says `zero` for such ranges only then.
    public var supportsBacking: Bool
    /// Bytes of the file (or its external data file) that hold guest data.
    public var hostData: UInt64
    /// Bytes of the file the format's own tables take (header, L1/L2, refcounts).
    public var metadata: UInt64
    /// Bytes referenced only by internal snapshots and persistent bitmaps (qcow2).
    public var snapshots: UInt64
    /// Bytes of the file nothing references (leaks, space past the last cluster in use).
    public var unused: UInt64
    /// The cluster size host allocation happens in (qcow2, QED, VMDK grain...); 0 when the format has none.
    public var clusterSize: UInt64
    /// For qcow2: guest bytes one L2 table covers, and which L2 tables exist (by L1 index, sorted).
    public var l2Coverage: UInt64 = 0
    /// L1 indices with an L2 table.
    public var l2Present: [UInt64] = []
    /// For qcow2: version 3 (zero clusters exist), so a write of zeros costs no data cluster.
    public var hasZeroClusters = false
    /// For qcow2 with internal snapshots or persistent bitmaps: what each snapshot alone holds, what the bitmaps take.
    public var held: HeldBySnapshots?

    /// Guest bytes this layer maps (data and zero runs).
    public var allocated: UInt64 { runs.reduce(0) { $0 + $1.length } }
    /// Guest bytes this layer maps that read as zeros.
    public var zero: UInt64 { runs.reduce(0) { $0 + ($1.kind.readsZero ? $1.length : 0) } }

    /// Why a layer's space cannot be told.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        /// A table entry that cannot be right: the layer, the table, the offset and why.
        case corrupt(path: String, table: String, offset: UInt64, reason: String)
        /// A table the header declares larger than imgtool reads.
        case tooLarge(path: String, table: String, bytes: UInt64, limit: UInt64)
        /// Opening or reading failed.
        case read(GuestDisk.Error)
        /// The chain is broken: every layer is needed.
        case brokenChain(path: String, problem: String)

        public var description: String {
            switch self {
            case .corrupt(let path, let table, let offset, let reason): return "\(path): corrupt \(table) at offset \(offset): \(reason)"
            case .tooLarge(let path, let table, let bytes, let limit):
                return "\(path): the \(table) would take \(bytes) bytes, more than the \(limit) imgtool reads"
            case .read(let e): return e.description
            case .brokenChain(let path, let problem): return "\(path): the backing chain is broken (\(problem)); run imgtool chain \(path)"
            }
        }
    }
}

/// Appends runs in guest order, merging a run into the last one when they touch and are of one kind.
struct RunBuilder {
    var runs: [LayerSpace.Run] = []

    mutating func add(_ start: UInt64, _ length: UInt64, _ kind: LayerSpace.Kind) {
        guard length > 0 else { return }
        if let last = runs.last, last.kind == kind, last.end == start {
            runs[runs.count - 1].length += length
        } else {
            runs.append(.init(start: start, length: length, kind: kind))
        }
    }
}
