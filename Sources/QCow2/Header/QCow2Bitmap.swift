/// One persistent dirty bitmap of a qcow2 image: an entry of the bitmap directory, read and checked as QEMU 7.2's
/// `bitmap_list_load` and `load_bitmap` (block/qcow2-bitmap.c) do when the image is opened.
public struct QCow2Bitmap: Sendable, Equatable {
    /// The bitmap's name (at most 1023 bytes).
    public var name: String
    /// Where its bitmap table starts.
    public var tableOffset: UInt64
    /// Entries in its bitmap table.
    public var tableSize: UInt32
    /// Flags: bit 0 in use (inconsistent), bit 1 auto.
    public var flags: UInt32
    /// log2 of the bytes one bit covers.
    public var granularityBits: UInt8
    /// Where the entry starts in the file.
    public var entryOffset: UInt64

    /// QEMU's `QCOW2_MAX_BITMAPS`.
    public static let maxBitmaps: UInt32 = 65535
    /// QEMU's `QCOW2_MAX_BITMAP_DIRECTORY_SIZE`.
    public static let maxDirectorySize: UInt64 = 1024 * 65535
    /// QEMU's `BME_MAX_TABLE_SIZE`, `BME_MAX_PHYS_SIZE`, granularity and name limits.
    public static let maxTableSize: UInt32 = 0x800_0000
    static let maxPhysicalSize: UInt64 = 0x2000_0000
    static let granularityBitsRange: ClosedRange<UInt8> = 9...31
    static let maxNameSize: UInt16 = 1023
    /// QEMU's `BDRV_MAX_LENGTH` (INT64_MAX rounded down to 1 GiB): `bdrv_pread` fails with EIO for a request that
    /// ends beyond it, even though a read merely past the end of the file returns zeros.
    public static let maxRequestEnd: UInt64 = 0x7FFF_FFFF_C000_0000
    /// `BME_FLAG_IN_USE`: the data was not saved; QEMU does not read the table.
    public static let inUse: UInt32 = 1

    /// Why a bitmap directory was refused: the file, the byte offset and the field, with QEMU's words.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        /// A field QEMU checks holds a value it refuses.
        case invalid(path: String, offset: UInt64, field: String, value: UInt64, reason: String)
        /// Reading failed.
        case io(ImageFile.Error)

        public var description: String {
            switch self {
            case .invalid(let path, let offset, let field, let value, let reason):
                return "\(path): invalid qcow2 bitmap directory: \(field) = \(value) (at offset \(offset)): \(reason); QEMU refuses to open it"
            case .io(let e): return e.description
            }
        }

        /// The field the error is about.
        public var field: String {
            switch self {
            case .invalid(_, _, let field, _, _): return field
            case .io: return "bitmap directory"
            }
        }
    }
}
