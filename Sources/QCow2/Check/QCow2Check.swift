/// One read-only consistency check of a qcow2 image, step for step as QEMU 7.2's `qcow2_check_refcounts`
/// (block/qcow2-refcount.c) runs it with `fix = 0`, so that every count agrees with `qemu-img check`'s.
///
/// The expected refcounts (QEMU's "in-memory refcount table") live in `expected`, packed at the image's own refcount
/// width, one entry per host cluster of the file: memory is bounded by the file size / cluster size. The stored
/// refcounts are read one refcount block at a time through `stored`. Nothing is written and no lock is taken.
struct QCow2Check {
    let file: ImageFile
    let header: QCow2Header
    let path: String
    let clusterSize: UInt64
    let clusterBits: UInt64
    /// The file's length in bytes (`bdrv_getlength` of the file child).
    let fileLength: UInt64
    /// Guest data lives in an external data file: data clusters are not refcounted here.
    let hasDataFile: Bool
    /// Extended L2 entries (128 bits, with a subcluster bitmap).
    let extendedL2: Bool
    /// The expected refcounts rebuilt from every reference.
    var expected: RefcountArray
    /// The refcounts the image stores.
    var stored: StoredRefcounts
    /// The counts and findings so far.
    var result: ImageCheck
    /// `BlockFragInfo`, counted over the active L1 table only (`CHECK_FRAG_INFO`).
    var allocatedClusters: UInt64 = 0
    var fragmentedClusters: UInt64 = 0
    var compressedClusters: UInt64 = 0
    /// When set, the walk only records who references the clusters in `watch` (for the findings' words), and counts
    /// nothing: it is the second pass over an image where the first found mismatches.
    var watch: Set<UInt64> = []
    var describing = false
    var referrers: [UInt64: [String]] = [:]
    /// The active L2 entries `checkCopiedFlags` needs, kept from the refcount walk so it need not read every table again.
    var copiedFlags = CopiedFlagEntries()

    /// QEMU's `L1E_OFFSET_MASK`, `L2E_OFFSET_MASK` (also the bitmap table's offset mask).
    static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
    /// QEMU's `L1E_RESERVED_MASK`.
    static let l1Reserved: UInt64 = 0x7F00_0000_0000_01FF
    /// QEMU's `L2E_STD_RESERVED_MASK`.
    static let l2Reserved: UInt64 = 0x3F00_0000_0000_01FE
    /// QEMU's `REFT_OFFSET_MASK` and `REFT_RESERVED_MASK`.
    static let refTableOffsetMask: UInt64 = 0xFFFF_FFFF_FFFF_FE00
    static let refTableReserved: UInt64 = 0x1FF
    static let copied: UInt64 = 1 << 63
    static let compressed: UInt64 = 1 << 62
    static let zero: UInt64 = 1
    /// Bytes of a table read at once: an L1 table (up to 32 MiB) is read in pieces of this size.
    static let chunk = 1 << 20

    /// QEMU stopped the check (a negative return from `qcow2_check_refcounts`): qemu-img prints no counts, says
    /// "Check failed: <reason>" and exits 1. `reason` is QEMU's `strerror`, `detail` says what could not be done.
    struct Abort: Swift.Error {
        var reason: String
        var detail: String
    }

    /// `bdrv_pread` of the file child: zeros past the end of the file, EIO for a request that ends beyond QEMU's
    /// `BDRV_MAX_LENGTH`.
    func read(_ offset: UInt64, _ count: Int, what: String) throws(Abort) -> [UInt8] {
        try Self.read(file, offset, count, what: what)
    }

    /// The big-endian words of a table of `count` bytes at `offset`, as QEMU reads it (the same refusal beyond what it
    /// addresses), but only the part inside the file: the rest reads as zeros, and a zero entry counts nothing
    /// wherever it is checked, so the words past the end are left out rather than made.
    func tableWords(_ offset: UInt64, _ count: Int, what: String) throws(Abort) -> [UInt64] {
        guard count > 0 else { return [] }
        guard offset <= QCow2Bitmap.maxRequestEnd, UInt64(count) <= QCow2Bitmap.maxRequestEnd - offset else {
            throw Abort(reason: "Input/output error", detail: "\(what) at \(qcowHex(offset)) lies beyond what QEMU can address")
        }
        let inside = offset < fileLength ? min(UInt64(count), fileLength - offset) & ~7 : 0
        return try readWords(offset, Int(inside), what: what)
    }

    /// `count` bytes at `offset` (a whole number of words) as host-order words. Read straight into the words' own
    /// storage: a byte array then a copy cost a quarter of checking a big sparse image (perf: two memsets and a
    /// memmove per L2 table).
    func readWords(_ offset: UInt64, _ count: Int, what: String) throws(Abort) -> [UInt64] {
        let n = count / 8
        guard n > 0 else { return [] }
        guard offset <= QCow2Bitmap.maxRequestEnd, UInt64(count) <= QCow2Bitmap.maxRequestEnd - offset else {
            throw Abort(reason: "Input/output error", detail: "\(what) at \(qcowHex(offset)) lies beyond what QEMU can address")
        }
        var failure: ImageFile.Error?
        let file = self.file
        var w = [UInt64](unsafeUninitializedCapacity: n) { buffer, initialized in
            do throws(ImageFile.Error) {
                try file.readZeroFilled(at: offset, into: UnsafeMutableRawBufferPointer(buffer))
            } catch {
                failure = error
                UnsafeMutableRawBufferPointer(buffer).initializeMemory(as: UInt8.self, repeating: 0)
            }
            initialized = n
        }
        if let failure { throw Abort(reason: "Input/output error", detail: "reading \(what) at \(qcowHex(offset)): \(failure)") }
        w.withUnsafeMutableBufferPointer { b in
            for i in b.indices { b[i] = UInt64(bigEndian: b[i]) }
        }
        return w
    }

    /// `read` without the check's state, for the refcount block reader (which must not hold a copy of the check).
    static func read(_ file: ImageFile, _ offset: UInt64, _ count: Int, what: String) throws(Abort) -> [UInt8] {
        guard count > 0 else { return [] }
        guard offset <= QCow2Bitmap.maxRequestEnd, UInt64(count) <= QCow2Bitmap.maxRequestEnd - offset else {
            throw Abort(reason: "Input/output error", detail: "\(what) at \(qcowHex(offset)) lies beyond what QEMU can address")
        }
        var bytes = [UInt8](repeating: 0, count: count)
        let r: Result<Void, ImageFile.Error> = bytes.withUnsafeMutableBytes { raw in
            do throws(ImageFile.Error) { try file.readZeroFilled(at: offset, into: raw); return .success(()) } catch { return .failure(error) }
        }
        if case .failure(let e) = r { throw Abort(reason: "Input/output error", detail: "reading \(what) at \(qcowHex(offset)): \(e)") }
        return bytes
    }

    /// Records one finding (not in the describing pass): always counted, its sentence kept
    /// while fewer than `ImageCheck.maxFindings` are kept. A hostile table of a million bad entries makes a million
    /// counts, not a million sentences.
    mutating func note(_ kind: ImageCheck.Finding.Kind, cluster: UInt64? = nil, offset: UInt64? = nil, table: String? = nil, _ message: String) {
        guard !describing else { return }
        switch kind {
        case .corruption: result.corruptions += 1
        case .leak: result.leaks += 1
        case .checkError: result.checkErrors += 1
        case .note: break
        }
        if result.findings.count < ImageCheck.maxFindings {
            result.findings.append(ImageCheck.Finding(kind: kind, cluster: cluster, offset: offset, table: table, message: message))
        } else {
            result.omittedFindings += 1
        }
    }

    /// QEMU's `qcow2_inc_refcounts_imrt`: one more reference to every cluster of `[offset, offset + size)`. A range
    /// that ends a cluster or more past the end of the file is a corruption and counts nothing (the last cluster may
    /// be partly written, so less than a cluster past the end is allowed). `who` names the referrer for the findings.
    mutating func reference(_ offset: UInt64, _ size: UInt64, _ who: @autoclosure () -> String) throws(Abort) {
        guard size > 0 else { return }
        // QEMU computes `offset + size - file_len` in signed 64 bits (wrapping): an offset of 2^63 or more is
        // negative there, so it is not "past the end"; its clusters are then counted, and the table that would
        // hold them cannot be allocated, which stops the check.
        let past = Int64(bitPattern: offset) &+ Int64(bitPattern: size) &- Int64(bitPattern: fileLength)
        if past >= Int64(clusterSize) {
            note(.corruption, cluster: offset >> clusterBits, offset: offset, table: who(),
                 "\(who()) references \(qcowHex(offset)) to \(qcowHex(offset &+ size)), a cluster or more past the end of the file (\(fileLength) bytes)")
            return
        }
        let (end, wrapped) = offset.addingReportingOverflow(size)
        // A range that wraps past 2^64 ends below its start: QEMU's loop over its clusters runs no step.
        if wrapped { return }
        let first = offset >> clusterBits, last = (end - 1) >> clusterBits
        var k = first
        while k <= last {
            if describing {
                if watch.contains(k), referrers[k, default: []].count < 8 { referrers[k, default: []].append(who()) }
                k += 1
                continue
            }
            if k >= expected.count {
                do { try expected.grow(to: k + 1) } catch {
                    result.checkErrors += 1
                    throw Abort(reason: "Cannot allocate memory", detail: error.message)
                }
            }
            let n = expected[k]
            if n == expected.max {
                note(.corruption, cluster: k, offset: k << clusterBits, table: who(),
                     "cluster \(k) (\(qcowHex(k << clusterBits))) has more references than a \(expected.bits)-bit refcount can hold (\(who()) is one more); qemu-img amend can widen refcount_bits")
            } else {
                expected[k] = n + 1
            }
            k += 1
        }
    }
}

/// `0x…` for offsets in findings.
func qcowHex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
