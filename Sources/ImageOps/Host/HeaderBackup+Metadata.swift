import QCow2

import Glibc

/// The fingerprint of everything beyond the header that a header-only change must leave alone. qemu-img opens the
/// image for writing to change its backing name, and an open for writing can rewrite more than the header: a qcow2
/// with persistent dirty bitmaps has them stored again in new clusters on close (new tables and directory, the old
/// clusters freed and discarded); a qcow2 with the dirty bit (lazy refcounts) or a QED with need-check is repaired
/// on open. Putting only the old header back over such a change leaves refcounts that do not match the tables:
/// the next write overwrites live clusters. So a save records this fingerprint before and after the change, and
/// `undo` puts a header back only when the change left it as it was, and nothing has changed it since.
///
/// Covered, for qcow2: the file size, the refcount table and every refcount block it names (any cluster allocated or
/// freed changes them), the active L1 table, and the bitmap directory (its in-use flags are written in place). The
/// header fields themselves (table offsets, snapshot table, bitmap extension, dirty and autoclear bits) are compared
/// field by field with `isIntended`. For QED: the file size (QED only ever allocates at the end) and the L1 table.
enum MetadataFingerprint {
    /// More table bytes than this is no image qemu-img makes (its own limits: an 8 MiB refcount table, a 32 MiB L1
    /// table); a header naming more is hostile, and reading it all would take minutes.
    static let budget: UInt64 = 1 << 30

    /// Why no fingerprint could be taken.
    struct Failure: Swift.Error, Sendable {
        /// What was being read.
        var what: String
        /// The errno, or EFBIG for tables over the budget.
        var errno: Int32
    }

    /// How the table bytes are fed to the hash. A save records which, by its format version, and `undo` compares
    /// fingerprints taken the same way.
    enum Encoding: Sendable, Equatable {
        /// Every byte (saves of format 3).
        case plain
        /// 64-byte pieces, each all-zero run of them as its length (saves of format 4). The same bytes are covered
        /// and the encoding is one-to-one (the lengths are hashed first), so two fingerprints still agree only for
        /// the same tables; but a fresh image's 128 KiB of tables, nearly all zeros, cost a few hundred bytes of
        /// SHA-256 instead of 2,048 blocks (`fix-backing` took two such fingerprints, 18 M of its 26 M
        /// instructions, callgrind).
        case zeroRuns
    }

    /// The fingerprint of `file` as it is now, as 64 hex digits.
    static func of(_ file: ImageFile, encoding: Encoding = .zeroRuns) throws(Failure) -> String {
        guard let now = FileIdentity.of(fd: file) else { throw Failure(what: "stat it", errno: errno) }
        var hash = SHA256()
        hash.update(number: now.size)
        let head: [UInt8]
        do { head = try file.read(at: 0, count: 512) } catch { throw Failure(what: "read its header", errno: EIO) }
        var reader = Reader(file: file, size: now.size, encoding: encoding)
        if head.starts(with: [0x51, 0x46, 0x49, 0xfb]) {
            try reader.qcow2(&hash)
        } else if head.starts(with: [0x51, 0x45, 0x44, 0x00]) {
            try reader.qed(head, &hash)
        }
        return hash.hex()
    }

    /// Reads the tables within the budget, each read bounded before it is allocated.
    struct Reader {
        let file: ImageFile
        let size: UInt64
        let encoding: Encoding
        var spent: UInt64 = 0

        init(file: ImageFile, size: UInt64, encoding: Encoding) { (self.file, self.size, self.encoding) = (file, size, encoding) }

        /// Hashes `count` bytes at `offset` (with both numbers), never reading past the end of the file.
        mutating func add(_ what: String, offset: UInt64, count: UInt64, into hash: inout SHA256) throws(Failure) -> [UInt8] {
            hash.update(number: offset)
            hash.update(number: count)
            let (total, over) = spent.addingReportingOverflow(count)
            guard !over, total <= MetadataFingerprint.budget else { throw Failure(what: "read its \(what) (over 1 GiB of tables)", errno: EFBIG) }
            spent = total
            // Past the end of the file there is nothing to read: the size is hashed already.
            guard offset < size else { return [] }
            let n = Int(min(count, size - offset))
            let bytes: [UInt8]
            do { bytes = try file.read(at: offset, count: n) } catch { throw Failure(what: "read its \(what)", errno: EIO) }
            switch encoding {
            case .plain: hash.update(bytes)
            case .zeroRuns: MetadataFingerprint.updateSkippingZeroRuns(&hash, bytes)
            }
            return bytes
        }

        mutating func qcow2(_ hash: inout SHA256) throws(Failure) {
            let header: QCow2Header
            do { header = try QCow2Header.read(from: file) } catch {
                throw Failure(what: "read its qcow2 header", errno: EIO)
            }
            let cluster = header.clusterSize
            let (tableBytes, o1) = UInt64(header.refcountTableClusters).multipliedReportingOverflow(by: cluster)
            guard !o1 else { throw Failure(what: "read its refcount table", errno: EFBIG) }
            let table = try add("refcount table", offset: header.refcountTableOffset, count: tableBytes, into: &hash)
            let window = ByteWindow(table)
            var i = 0
            while let entry = window.u64BE(i) {
                i += 8
                // Bits 0-8 are reserved; a block sits at a cluster offset.
                let block = entry & ~UInt64(0x1ff)
                if block != 0 { _ = try add("refcount blocks", offset: block, count: cluster, into: &hash) }
            }
            let (l1Bytes, o2) = UInt64(header.l1Size).multipliedReportingOverflow(by: 8)
            guard !o2 else { throw Failure(what: "read its L1 table", errno: EFBIG) }
            _ = try add("L1 table", offset: header.l1TableOffset, count: l1Bytes, into: &hash)
            if let bitmaps = header.bitmaps {
                _ = try add("bitmap directory", offset: bitmaps.directoryOffset, count: bitmaps.directorySize, into: &hash)
            }
        }

        mutating func qed(_ head: [UInt8], _ hash: inout SHA256) throws(Failure) {
            let w = ByteWindow(head)
            guard let cluster = w.u32LE(4), let tableSize = w.u32LE(8), let l1 = w.u64LE(40) else {
                throw Failure(what: "read its QED header", errno: EIO)
            }
            let (bytes, over) = UInt64(cluster).multipliedReportingOverflow(by: UInt64(tableSize))
            guard !over else { throw Failure(what: "read its L1 table", errno: EFBIG) }
            _ = try add("L1 table", offset: l1, count: bytes, into: &hash)
        }
    }
}

extension MetadataFingerprint {
    /// Feeds `bytes` to `hash` in 64-byte pieces (the last may be shorter): a piece with a nonzero byte as the
    /// marker 1 and its bytes, each run of all-zero pieces as the marker 0 and the run's length (8 bytes). The caller
    /// hashed the byte count first, so the pieces' lengths, and with them the bytes, follow from what is hashed.
    static func updateSkippingZeroRuns(_ hash: inout SHA256, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var zeros: UInt64 = 0
            var offset = 0
            while offset < raw.count {
                let piece = UnsafeRawBufferPointer(rebasing: raw[offset..<min(offset + 64, raw.count)])
                offset += piece.count
                if isZero(piece) {
                    zeros += 1
                    continue
                }
                if zeros > 0 {
                    hash.update([0])
                    hash.update(number: zeros)
                    zeros = 0
                }
                hash.update([1])
                hash.update(piece)
            }
            if zeros > 0 {
                hash.update([0])
                hash.update(number: zeros)
            }
        }
    }

    /// True when every byte of `piece` is zero; eight at a time.
    static func isZero(_ piece: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i + 8 <= piece.count {
            if piece.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < piece.count {
            if piece[i] != 0 { return false }
            i += 1
        }
        return true
    }
}
