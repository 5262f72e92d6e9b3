/// The header of a qcow2 image (versions 2 and 3) with its header extensions, as read and validated from cluster 0.
public struct QCow2Header: Sendable, Equatable {
    /// "QFI\xfb".
    public static let magic: UInt32 = 0x5146_49FB

    /// 2 (compat 0.10) or 3 (compat 1.1).
    public var version: UInt32
    /// Where the backing file name starts, 0 when there is none.
    public var backingFileOffset: UInt64
    /// Length of the backing file name in bytes.
    public var backingFileSize: UInt32
    /// log2 of the cluster size, 9...21.
    public var clusterBits: UInt32
    /// Virtual disk size in bytes.
    public var size: UInt64
    /// 0 none, 1 AES (legacy), 2 LUKS.
    public var cryptMethod: UInt32
    /// Entries in the active L1 table.
    public var l1Size: UInt32
    /// Offset of the active L1 table.
    public var l1TableOffset: UInt64
    /// Offset of the refcount table.
    public var refcountTableOffset: UInt64
    /// Clusters the refcount table occupies.
    public var refcountTableClusters: UInt32
    /// Number of internal snapshots.
    public var snapshotCount: UInt32
    /// Offset of the snapshot table.
    public var snapshotsOffset: UInt64
    /// Incompatible feature bits (v3; 0 for v2).
    public var incompatibleFeatures: UInt64
    /// Compatible feature bits (v3; 0 for v2).
    public var compatibleFeatures: UInt64
    /// Autoclear feature bits (v3; 0 for v2).
    public var autoclearFeatures: UInt64
    /// log2 of the refcount width in bits (v2: 4).
    public var refcountOrder: UInt32
    /// Header length in bytes (v2: 72).
    public var headerLength: UInt32
    /// 0 deflate, 1 zstd.
    public var compressionType: UInt8

    /// The backing file name as recorded, nil when there is none.
    public var backingFile: String?
    /// The backing format from the header extension, nil when none is recorded.
    public var backingFormat: String?
    /// The external data file name, when the extension is present.
    public var dataFile: String?
    /// Feature names from the feature name table, keyed by kind and bit; read only from a header with incompatible
    /// bits no reader knows (the refusal names them), empty for every other.
    public var featureNames: [FeatureName]
    /// Bitmaps extension, when present.
    public var bitmaps: Bitmaps?
    /// Full disk encryption header pointer, when present.
    public var cryptoHeader: CryptoHeader?
    /// Types of extensions we did not know and skipped.
    public var unknownExtensions: [UInt32]

    /// One entry of the feature name table.
    public struct FeatureName: Sendable, Equatable {
        /// 0 incompatible, 1 compatible, 2 autoclear.
        public var kind: UInt8
        /// Bit number.
        public var bit: UInt8
        /// The name, up to 46 bytes.
        public var name: String
    }

    /// The bitmaps header extension.
    public struct Bitmaps: Sendable, Equatable {
        /// Number of bitmaps in the directory.
        public var count: UInt32
        /// Size of the bitmap directory in bytes.
        public var directorySize: UInt64
        /// Offset of the bitmap directory.
        public var directoryOffset: UInt64
        /// The 32 bits after the count, which must be zero.
        public var reserved: UInt32 = 0
    }

    /// The full disk encryption header pointer extension.
    public struct CryptoHeader: Sendable, Equatable {
        /// Where the LUKS header lives inside the image.
        public var offset: UInt64
        /// How long it is.
        public var length: UInt64
    }

    /// Incompatible feature bits QEMU knows.
    public enum Incompatible {
        /// The image was not closed cleanly (lazy refcounts).
        public static let dirty: UInt64 = 1 << 0
        /// QEMU found corruption and marked the image.
        public static let corrupt: UInt64 = 1 << 1
        /// Guest data lives in an external data file.
        public static let externalData: UInt64 = 1 << 2
        /// The compression type field is not deflate.
        public static let compressionType: UInt64 = 1 << 3
        /// L2 entries are 128-bit with subclusters.
        public static let extendedL2: UInt64 = 1 << 4
        /// Every bit above.
        public static let known: UInt64 = 0x1F
    }

    /// Cluster size in bytes.
    public var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    /// "0.10" for version 2, "1.1" for version 3, as qemu-img prints it.
    public var compat: String { version == 2 ? "0.10" : "1.1" }
    /// Refcount width in bits.
    public var refcountBits: UInt64 { 1 << UInt64(refcountOrder) }
    /// The dirty bit.
    public var isDirty: Bool { incompatibleFeatures & Incompatible.dirty != 0 }
    /// The corrupt bit.
    public var isCorrupt: Bool { incompatibleFeatures & Incompatible.corrupt != 0 }
    /// Extended L2 entries (subclusters).
    public var hasExtendedL2: Bool { incompatibleFeatures & Incompatible.extendedL2 != 0 }
    /// An external data file holds the guest data.
    public var hasExternalDataFile: Bool { incompatibleFeatures & Incompatible.externalData != 0 }
    /// Lazy refcounts (compatible bit 0).
    public var lazyRefcounts: Bool { compatibleFeatures & 1 != 0 }
    /// The external data file is raw (autoclear bit 1).
    public var dataFileRaw: Bool { autoclearFeatures & 2 != 0 }
    /// "zlib" or "zstd", qemu-img's names.
    public var compressionName: String { compressionType == 1 ? "zstd" : "zlib" }
    /// "aes", "luks" or nil, qemu-img's names.
    public var encryptionName: String? {
        switch cryptMethod {
        case 1: return "aes"
        case 2: return "luks"
        default: return nil
        }
    }
    /// Incompatible bits that QEMU does not know: such an image cannot be opened.
    public var unknownIncompatibleBits: UInt64 { incompatibleFeatures & ~Incompatible.known }
}
