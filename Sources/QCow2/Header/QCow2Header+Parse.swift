extension QCow2Header {
    /// Why a qcow2 header was refused: always the file, the field and the value.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        /// The file is shorter than the header it claims.
        case truncated(path: String, field: String, needed: UInt64, have: UInt64)
        /// A field holds a value QEMU refuses.
        case invalidField(path: String, field: String, value: UInt64, reason: String)
        /// Incompatible feature bits that no reader knows.
        case unknownIncompatibleFeatures(path: String, bits: UInt64, names: [String])
        /// The magic is not qcow2's.
        case notQCow2(path: String)
        /// Reading failed.
        case io(ImageFile.Error)

        public var description: String {
            switch self {
            case .truncated(let path, let field, let needed, let have):
                return "\(path): qcow2 header is truncated: \(field) needs \(needed) bytes, the file has \(have)"
            case .invalidField(let path, let field, let value, let reason):
                return "\(path): invalid qcow2 header: \(field) = \(value): \(reason)"
            case .unknownIncompatibleFeatures(let path, let bits, let names):
                let hex = String(bits, radix: 16)
                let named = names.isEmpty ? "" : " (\(names.joined(separator: ", ")))"
                return "\(path): invalid qcow2 header: incompatible_features has unknown bits 0x\(hex)\(named); QEMU refuses to open it"
            case .notQCow2(let path):
                return "\(path): not a qcow2 image (bad magic)"
            case .io(let e):
                return e.description
            }
        }

        /// The header field this error is about, when there is one.
        public var field: String? {
            switch self {
            case .truncated(_, let f, _, _), .invalidField(_, let f, _, _): return f
            case .unknownIncompatibleFeatures: return "incompatible_features"
            case .notQCow2: return "magic"
            case .io: return nil
            }
        }
    }

    /// How many bytes of cluster 0 are read in the first go: enough for the header, its extensions and the backing
    /// name of every image qemu-img makes, so a layer costs one pread.
    package static let firstRead = 4096

    /// Reads and validates the header of the qcow2 image in `file`.
    public static func read(from file: ImageFile) throws(Error) -> QCow2Header {
        let first: [UInt8]
        do { first = try file.read(at: 0, count: firstRead) } catch { throw .io(error) }
        return try parse(first, path: file.path) { (offset, count) throws(Error) in
            do throws(ImageFile.Error) { return try file.read(at: offset, count: count) } catch { throw .io(error) }
        }
    }

    /// Parses a header from `prefix` (the first bytes of the file); `more` reads further bytes when the header
    /// cluster needs them. Every check QEMU makes when it opens the image is made here, in QEMU's order.
    /// `snapshotTable: false` opens as `qemu-img check` does (`BDRV_O_CHECK`): the snapshot table's count and place are
    /// not checked at open (the check itself does, and fails instead of refusing), and a missing refcount table is
    /// allowed.
    package static func parse(
        _ prefix: [UInt8], path: String, snapshotTable: Bool = true,
        more: (UInt64, Int) throws(Error) -> [UInt8]
    ) throws(Error) -> QCow2Header {
        var w = ByteWindow(prefix)
        let have = UInt64(prefix.count)
        func need(_ field: String, _ end: Int) throws(Error) {
            if !w.has(0, end) { throw .truncated(path: path, field: field, needed: UInt64(end), have: have) }
        }
        try need("magic", 4)
        guard w.u32BE(0) == magic else { throw .notQCow2(path: path) }
        try need("version", 8)
        let version = w.u32BE(4) ?? 0
        guard version == 2 || version == 3 else {
            throw .invalidField(path: path, field: "version", value: UInt64(version), reason: "only versions 2 and 3 exist")
        }
        try need("header", 72)
        let clusterBits = w.u32BE(20) ?? 0
        guard (9...21).contains(clusterBits) else {
            throw .invalidField(path: path, field: "cluster_bits", value: UInt64(clusterBits), reason: "must be 9 to 21 (512 B to 2 MiB clusters)")
        }
        let clusterSize = UInt64(1) << UInt64(clusterBits)
        var h = QCow2Header(
            version: version,
            backingFileOffset: w.u64BE(8) ?? 0, backingFileSize: w.u32BE(16) ?? 0,
            clusterBits: clusterBits, size: w.u64BE(24) ?? 0, cryptMethod: w.u32BE(32) ?? 0,
            l1Size: w.u32BE(36) ?? 0, l1TableOffset: w.u64BE(40) ?? 0,
            refcountTableOffset: w.u64BE(48) ?? 0, refcountTableClusters: w.u32BE(56) ?? 0,
            snapshotCount: w.u32BE(60) ?? 0, snapshotsOffset: w.u64BE(64) ?? 0,
            incompatibleFeatures: 0, compatibleFeatures: 0, autoclearFeatures: 0,
            refcountOrder: 4, headerLength: 72, compressionType: 0,
            backingFile: nil, backingFormat: nil, dataFile: nil, featureNames: [],
            bitmaps: nil, cryptoHeader: nil, unknownExtensions: [])
        if version == 3 {
            try need("header (version 3)", 104)
            h.incompatibleFeatures = w.u64BE(72) ?? 0
            h.compatibleFeatures = w.u64BE(80) ?? 0
            h.autoclearFeatures = w.u64BE(88) ?? 0
            h.refcountOrder = w.u32BE(96) ?? 0
            h.headerLength = w.u32BE(100) ?? 0
            guard h.headerLength >= 104 else {
                throw .invalidField(path: path, field: "header_length", value: UInt64(h.headerLength), reason: "a version 3 header is at least 104 bytes")
            }
        }
        guard UInt64(h.headerLength) <= clusterSize else {
            throw .invalidField(path: path, field: "header_length", value: UInt64(h.headerLength), reason: "exceeds the cluster size \(clusterSize)")
        }
        guard h.backingFileOffset <= clusterSize else {
            throw .invalidField(path: path, field: "backing_file_offset", value: h.backingFileOffset, reason: "beyond the first cluster (\(clusterSize) bytes)")
        }
        let extEnd = h.backingFileOffset != 0 ? h.backingFileOffset : clusterSize

        // Everything below lives in cluster 0; the first read covers it for every image qemu-img writes, so
        // more is read only when a field points past it (and never past cluster 0).
        let fileMayHaveMore = prefix.count == firstRead
        func ensure(_ end: UInt64) throws(Error) {
            let have = UInt64(w.bytes.count)
            let end = min(end, clusterSize)
            guard end > have, fileMayHaveMore else { return }
            w = ByteWindow(w.bytes + (try more(have, Int(end - have))))
        }
        try ensure(UInt64(h.headerLength))
        if h.headerLength > 104, let ct = w.u8(104) {
            h.compressionType = ct
        } else if h.headerLength > 104 {
            throw .truncated(path: path, field: "compression_type", needed: 105, have: UInt64(w.bytes.count))
        }

        let pristine = h
        if try !h.readExtensions(w, end: extEnd, final: !fileMayHaveMore, path: path) {
            try ensure(extEnd)
            h = pristine
            _ = try h.readExtensions(w, end: extEnd, final: true, path: path)
        }

        if h.unknownIncompatibleBits != 0 {
            var names: [String] = []
            for f in h.featureNames where f.kind == 0 && f.bit < 64 && h.unknownIncompatibleBits & (UInt64(1) << UInt64(f.bit)) != 0 {
                names.append(f.name)
            }
            throw .unknownIncompatibleFeatures(path: path, bits: h.unknownIncompatibleBits, names: names)
        }
        guard h.refcountOrder <= 6 else {
            throw .invalidField(path: path, field: "refcount_order", value: UInt64(h.refcountOrder), reason: "refcounts may not be wider than 64 bits")
        }
        guard h.cryptMethod <= 2 else {
            throw .invalidField(path: path, field: "crypt_method", value: UInt64(h.cryptMethod), reason: "unknown encryption method")
        }
        if h.incompatibleFeatures & Incompatible.compressionType != 0 {
            guard h.compressionType <= 1 else {
                throw .invalidField(path: path, field: "compression_type", value: UInt64(h.compressionType), reason: "unknown compression type")
            }
        } else if h.compressionType != 0 {
            throw .invalidField(path: path, field: "compression_type", value: UInt64(h.compressionType), reason: "set without the compression type incompatible bit")
        }
        if h.hasExtendedL2 && clusterBits < 14 {
            throw .invalidField(path: path, field: "cluster_bits", value: UInt64(clusterBits), reason: "extended L2 needs clusters of at least 16 KiB")
        }
        try h.validateTables(path: path, snapshotTable: snapshotTable)

        if h.backingFileOffset != 0 {
            let limit = min(UInt64(1023), clusterSize - h.backingFileOffset)
            guard UInt64(h.backingFileSize) <= limit else {
                throw .invalidField(path: path, field: "backing_file_size", value: UInt64(h.backingFileSize), reason: "longer than \(limit) bytes")
            }
            try ensure(h.backingFileOffset + UInt64(h.backingFileSize))
            guard let name = w.slice(Int(h.backingFileOffset), Int(h.backingFileSize)) else {
                throw .truncated(path: path, field: "backing file name", needed: h.backingFileOffset + UInt64(h.backingFileSize), have: UInt64(w.bytes.count))
            }
            h.backingFile = decodeName(name)
        }
        return h
    }

    /// L1, refcount and snapshot tables must be cluster aligned and addressable, as QEMU checks before reading them.
    func validateTables(path: String, snapshotTable: Bool = true) throws(Error) {
        // QEMU caps the L1 table at 32 MiB (4 Mi entries of 8 bytes).
        let maxL1Entries: UInt64 = 32 * 1024 * 1024 / 8
        guard UInt64(l1Size) <= maxL1Entries else {
            throw .invalidField(path: path, field: "l1_size", value: UInt64(l1Size), reason: "the active L1 table may hold at most \(maxL1Entries) entries")
        }
        let l2Entries = clusterSize / (hasExtendedL2 ? 16 : 8)
        let bytesPerL1 = clusterSize * l2Entries  // at most 2^21 * 2^18 = 2^39: no overflow
        let needed = size / bytesPerL1 + (size % bytesPerL1 == 0 ? 0 : 1)
        guard needed <= UInt64(Int32.max) else {
            throw .invalidField(path: path, field: "size", value: size, reason: "the image is too big for its cluster size")
        }
        guard UInt64(l1Size) >= needed else {
            throw .invalidField(path: path, field: "l1_size", value: UInt64(l1Size), reason: "too small for the virtual size (needs \(needed))")
        }
        try checkTable("l1_table_offset", offset: l1TableOffset, bytes: UInt64(l1Size) * 8, path: path, readAtOpen: true)
        // QEMU refuses an image without a refcount table, except when it opens one for a check (which then counts
        // every cluster as a corruption).
        if snapshotTable, refcountTableClusters == 0 {
            throw .invalidField(path: path, field: "refcount_table_clusters", value: 0, reason: "the image has no reference count table (QEMU refuses it; qemu-img check can still read it)")
        }
        let maxRefTableBytes: UInt64 = 8 * 1024 * 1024
        guard UInt64(refcountTableClusters) <= maxRefTableBytes / clusterSize else {
            throw .invalidField(path: path, field: "refcount_table_clusters", value: UInt64(refcountTableClusters), reason: "the refcount table may be at most 8 MiB")
        }
        try checkTable("refcount_table_offset", offset: refcountTableOffset, bytes: UInt64(refcountTableClusters) * clusterSize, path: path,
                       readAtOpen: true)
        guard snapshotTable else { return }
        guard snapshotCount <= 65536 else {
            throw .invalidField(path: path, field: "nb_snapshots", value: UInt64(snapshotCount), reason: "at most 65536 snapshots")
        }
        // A snapshot table entry is at least 40 bytes; QEMU bounds the table by its entry count the same way.
        try checkTable("snapshots_offset", offset: snapshotsOffset, bytes: UInt64(snapshotCount) * 40, path: path)
    }

    /// QEMU's `qcow2_validate_table`: cluster aligned and ending at or below INT64_MAX (a table wholly past the end of
    /// the file is allowed: it reads as zeros). `readAtOpen`: QEMU also reads the table when it opens the image, and
    /// `bdrv_pread` fails for a request ending beyond `BDRV_MAX_LENGTH`, so the open fails. (Found by the check's
    /// mutation test: a 2^56 limit here refused images qemu-img opens and checks.)
    private func checkTable(_ field: String, offset: UInt64, bytes: UInt64, path: String, readAtOpen: Bool = false) throws(Error) {
        guard offset % clusterSize == 0 else {
            throw .invalidField(path: path, field: field, value: offset, reason: "not aligned to the cluster size \(clusterSize)")
        }
        let (end, overflow) = offset.addingReportingOverflow(bytes)
        guard !overflow, end <= UInt64(Int64.max) else {
            throw .invalidField(path: path, field: field, value: offset, reason: "the table would end beyond 2^63")
        }
        if readAtOpen, bytes > 0, end > QCow2Bitmap.maxRequestEnd {
            throw .invalidField(path: path, field: field, value: offset, reason: "the table ends beyond what QEMU can read (\(QCow2Bitmap.maxRequestEnd))")
        }
    }
}

extension QCow2Header {
    /// Parses `bytes` as a whole file (for the fuzz targets, which have no file on disk).
    public static func parseForFuzzing(_ bytes: [UInt8]) throws(Error) -> QCow2Header {
        let prefix = Array(bytes.prefix(firstRead))
        return try parse(prefix, path: "fuzz-input") { (offset, count) throws(Error) in
            let start = Int(min(offset, UInt64(bytes.count)))
            return Array(bytes[start..<min(bytes.count, start + count)])
        }
    }
}
