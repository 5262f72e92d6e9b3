extension ImageInfo {
    /// What a report prints of a raw or plain qcow2 image beyond the fields a scan keeps anyway (name, format,
    /// virtual size, backing name and format): six bytes, and the allocated size in 512-byte blocks beside them
    /// (`blocks`), so a scan of 100,000 images keeps it for every one (in its record's padding) and prints without
    /// opening each file a second time. Images with more to print (snapshots, bitmaps, an external
    /// data file, a LUKS header, other formats' details) have none and are read again when printed.
    package struct Brief: Sendable, Equatable {
        /// Bits 0-1: 0 none kept, 1 raw, 2 qcow2. Bits 2-7: the printed qcow2 feature bits (dirty, corrupt,
        /// external data, extended L2, lazy refcounts, raw data file).
        package var kindFlags: UInt8 = 0
        /// The qcow2 header's version, cluster bits, refcount order, compression type and crypt method.
        package var version: UInt8 = 0, clusterBits: UInt8 = 0, refcountOrder: UInt8 = 0, compression: UInt8 = 0, crypt: UInt8 = 0

        /// None kept: the image is read again when printed.
        package static let none = Brief()

        /// The brief of `info`, or `.none` when it has more to print than a brief holds.
        package init(_ info: ImageInfo) {
            guard Brief.blocks(info) != nil else { return }
            switch info.format {
            case .raw:
                guard info.details == nil, info.vmdk == nil, info.qcow2 == nil else { return }
                kindFlags = 1
            case .qcow2:
                guard let h = info.qcow2, info.snapshots.isEmpty, h.snapshotCount == 0, h.bitmaps == nil, h.dataFile == nil,
                      info.qcow2LUKS == nil, info.details == nil, info.vmdk == nil,
                      h.version <= 255, h.clusterBits <= 255, h.refcountOrder <= 255, h.cryptMethod <= 255,
                      info.virtualSize == h.size & ~511 else { return }
                version = UInt8(h.version)
                clusterBits = UInt8(h.clusterBits)
                refcountOrder = UInt8(h.refcountOrder)
                compression = h.compressionType
                crypt = UInt8(h.cryptMethod)
                let flags: UInt8 = (h.isDirty ? 1 : 0) | (h.isCorrupt ? 2 : 0) | (h.hasExternalDataFile ? 4 : 0) | (h.hasExtendedL2 ? 8 : 0)
                    | (h.lazyRefcounts ? 16 : 0) | (h.dataFileRaw ? 32 : 0)
                kindFlags = 2 | flags << 2
            default: return
            }
        }

        private init() {}

        /// True when the brief holds the image.
        package var isKept: Bool { kindFlags & 3 != 0 }

        /// The allocated size in 512-byte blocks, nil when it is not a whole number of them that fits 32 bits
        /// (more than 2 TiB allocated: such an image is read again when printed).
        package static func blocks(_ info: ImageInfo) -> UInt32? {
            guard info.actualSize % 512 == 0, info.actualSize / 512 <= UInt64(UInt32.max) else { return nil }
            return UInt32(info.actualSize / 512)
        }

        /// The image again, as far as a report prints it, from the brief and what the scan kept; nil for `.none`.
        package func info(filename: String, device: UInt64, inode: UInt64, blocks: UInt32, virtualSize: UInt64?,
                          backingFilename: String?, backingFormat: String?) -> ImageInfo? {
            let kind = kindFlags & 3
            guard kind != 0 else { return nil }
            let actualSize = UInt64(blocks) * 512
            let identity = FileIdentity(device: device, inode: inode, size: 0, allocated: actualSize, kind: .regular)
            let probe = ProbeResult(format: kind == 2 ? .qcow2 : .raw, virtualSize: virtualSize, vmdkExtents: [], vmdkCreateType: nil)
            var info = ImageInfo(filename: filename, format: probe.format, virtualSize: virtualSize, actualSize: actualSize,
                                 identity: identity, qcow2: nil, probe: probe, details: nil, qcow2LUKS: nil, vmdk: nil)
            switch kind {
            case 1: return info
            case 2:
                let f = UInt64(kindFlags >> 2)
                // Only the bits printed are kept; the others a report never looks at.
                let incompatible = (f & 1 != 0 ? QCow2Header.Incompatible.dirty : 0) | (f & 2 != 0 ? QCow2Header.Incompatible.corrupt : 0)
                    | (f & 4 != 0 ? QCow2Header.Incompatible.externalData : 0) | (f & 8 != 0 ? QCow2Header.Incompatible.extendedL2 : 0)
                info.qcow2 = QCow2Header(
                    version: UInt32(version), backingFileOffset: 0, backingFileSize: 0, clusterBits: UInt32(clusterBits),
                    size: virtualSize ?? 0, cryptMethod: UInt32(crypt), l1Size: 0, l1TableOffset: 0, refcountTableOffset: 0,
                    refcountTableClusters: 0, snapshotCount: 0, snapshotsOffset: 0, incompatibleFeatures: incompatible,
                    compatibleFeatures: f & 16 != 0 ? 1 : 0, autoclearFeatures: f & 32 != 0 ? 2 : 0, refcountOrder: UInt32(refcountOrder),
                    headerLength: 0, compressionType: compression, backingFile: backingFilename, backingFormat: backingFormat,
                    dataFile: nil, featureNames: [], bitmaps: nil, cryptoHeader: nil, unknownExtensions: [])
                return info
            default: return nil
            }
        }
    }
}

extension FileIdentity {
    /// An identity from its parts (a brief's image again).
    init(device: UInt64, inode: UInt64, size: UInt64, allocated: UInt64, kind: Kind) {
        self.device = device
        self.inode = inode
        self.size = size
        self.allocated = allocated
        self.kind = kind
    }
}
