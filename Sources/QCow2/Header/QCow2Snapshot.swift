/// One internal snapshot of a qcow2 image: an entry of the snapshot table, as QEMU 7.2's `qcow2_read_snapshots`
/// (block/qcow2-snapshot.c) reads it. A snapshot is a second L1 table: every cluster it does not map reads, like the
/// active view's, from the backing file.
public struct QCow2Snapshot: Sendable, Equatable {
    /// The unique ID (`id_str`), up to its first NUL as QEMU's C string ends there.
    public var id: String
    /// The name (tag), up to its first NUL.
    public var name: String
    /// Where the snapshot's L1 table starts.
    public var l1TableOffset: UInt64
    /// Entries in the snapshot's L1 table.
    public var l1Size: UInt32
    /// Bytes of saved VM state (the 64-bit extra field when present, else the 32-bit one).
    public var vmStateSize: UInt64
    /// Creation time, seconds since the epoch.
    public var dateSeconds: UInt32
    /// Creation time, nanoseconds part.
    public var dateNanoseconds: UInt32
    /// The guest's clock when the snapshot was taken, in nanoseconds.
    public var vmClockNanoseconds: UInt64
    /// The virtual disk size the snapshot was taken at (the image's own when the entry does not record it).
    public var diskSize: UInt64
    /// The instruction count (record/replay), nil when the entry does not record it (QEMU's -1).
    public var icount: UInt64?
    /// Bytes of extra data the entry declares.
    public var extraDataSize: UInt32
    /// Where the entry starts in the file.
    public var entryOffset: UInt64

    /// Bytes of an entry's fixed part (`QCowSnapshotHeader`).
    public static let headerSize: UInt64 = 40
    /// Bytes of the extra data QEMU knows (`QCowSnapshotExtraData`: vm_state_size_large, disk_size, icount).
    public static let knownExtraSize: UInt64 = 24
    /// QEMU's `QCOW_MAX_SNAPSHOT_EXTRA_DATA`: more extra data in one entry is refused.
    public static let maxExtraData: UInt32 = 1024
    /// QEMU's `QCOW_MAX_SNAPSHOTS`.
    public static let maxSnapshots: UInt32 = 65536
    /// QEMU's `QCOW_MAX_SNAPSHOTS_SIZE`: the table's bytes, entries and padding, may not exceed 64 MiB.
    public static let maxTableSize: UInt64 = 1024 * 65536
    /// QEMU's `QCOW_MAX_L1_SIZE` (32 MiB) in entries: a larger snapshot L1 table is corrupt (qemu-img check).
    public static let maxL1Entries: UInt32 = 32 * 1024 * 1024 / 8

    /// Why a snapshot table was refused. Each case names the file, the entry, the byte offset and the field.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        /// An entry declares more extra data than QEMU accepts (qemu-img: "Too much extra metadata in snapshot table entry N").
        case tooMuchExtraData(path: String, entry: Int, offset: UInt64, size: UInt32)
        /// The table runs past 64 MiB (qemu-img: "Snapshot table is too big").
        case tableTooBig(path: String, entry: Int, offset: UInt64, length: UInt64)
        /// The table's position or entry count is refused before it is read (qemu-img: "Snapshot table too large" / "offset invalid").
        case invalidPointer(path: String, field: String, value: UInt64, reason: String)
        /// A piece of entry `entry` (at `offset`) ends past what QEMU reads (`BDRV_MAX_LENGTH`): its `bdrv_pread` fails
        /// (qemu-img: "Failed to read snapshot table: Input/output error").
        case beyondReadLimit(path: String, entry: Int, offset: UInt64)
        /// Reading failed.
        case io(ImageFile.Error)

        public var description: String {
            switch self {
            case .tooMuchExtraData(let path, let entry, let offset, let size):
                return "\(path): invalid qcow2 snapshot table: entry \(entry) (at offset \(offset)) extra_data_size = \(size): more than \(QCow2Snapshot.maxExtraData) bytes of extra metadata; QEMU refuses to open it (qemu-img check -r all drops it)"
            case .tableTooBig(let path, let entry, let offset, let length):
                return "\(path): invalid qcow2 snapshot table: at entry \(entry) (offset \(offset)) the table is \(length) bytes, more than QEMU's \(QCow2Snapshot.maxTableSize); QEMU refuses to open it"
            case .invalidPointer(let path, let field, let value, let reason):
                return "\(path): invalid qcow2 snapshot table: \(field) = \(value): \(reason)"
            case .beyondReadLimit(let path, let entry, let offset):
                return "\(path): invalid qcow2 snapshot table: entry \(entry) (at offset \(offset)) runs past byte \(QCow2Bitmap.maxRequestEnd), the most QEMU reads; QEMU refuses to open it (\"Failed to read snapshot table: Input/output error\")"
            case .io(let e):
                return e.description
            }
        }

        /// The field the error is about.
        public var field: String {
            switch self {
            case .tooMuchExtraData(_, let entry, _, _): return "snapshot \(entry) extra_data_size"
            case .tableTooBig(_, let entry, _, _): return "snapshot \(entry) table size"
            case .invalidPointer(_, let field, _, _): return field
            case .beyondReadLimit(_, let entry, _): return "snapshot \(entry)"
            case .io: return "snapshot table"
            }
        }
    }
}
