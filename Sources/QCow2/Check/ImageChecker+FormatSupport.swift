extension ImageCheck {
    /// The most findings kept: a hostile table of millions of bad entries must not make millions of sentences.
    /// Past it the counts go on and one note says how many findings were left out.
    public static let maxFindings = 1000

    /// Counts one finding of `kind` (and `count` of them in the counters: a run of leaked clusters is one finding)
    /// and keeps its sentence while fewer than `maxFindings` are kept.
    mutating func record(_ kind: Finding.Kind, count: UInt64 = 1, cluster: UInt64? = nil, offset: UInt64? = nil,
                         table: String? = nil, _ message: String) {
        switch kind {
        case .leak: leaks = leaks.addingReportingOverflow(count).partialValue
        case .corruption: corruptions = corruptions.addingReportingOverflow(count).partialValue
        case .checkError: checkErrors = checkErrors.addingReportingOverflow(count).partialValue
        case .note: break
        }
        if findings.count < Self.maxFindings {
            findings.append(Finding(kind: kind, cluster: cluster, offset: offset, table: table, message: message))
        } else {
            omittedFindings += 1
        }
    }

    /// Ends a check: says how many findings were left out, and hides zero counts as qemu-img hides them (its JSON
    /// prints `image-end-offset` and the cluster counts only when they are not 0).
    mutating func finish() {
        capFindings()
        for key in [\ImageCheck.imageEndOffset, \.totalClusters, \.allocatedClusters, \.fragmentedClusters, \.compressedClusters]
        where self[keyPath: key] == 0 {
            self[keyPath: key] = nil
        }
    }

    /// qemu-img's check failed rather than answered: `reason` is its `strerror` text.
    mutating func fail(_ reason: String) {
        aborted = reason
        checkErrors = checkErrors.addingReportingOverflow(1).partialValue
    }
}

/// A fixed number of bits, one a cluster or block: the used-cluster map of QED's check and the used-block map of
/// VDI's. Its size is bounded by the caller (by the file's size), never by a header field alone.
struct CheckBits {
    private var words: [UInt64]
    /// How many bits.
    let count: UInt64

    init(count: UInt64) {
        self.count = count
        words = [UInt64](repeating: 0, count: Int(count / 64 + 1))
    }

    /// Whether bit `i` is set (false past the end).
    func contains(_ i: UInt64) -> Bool {
        i < count && words[Int(i / 64)] & (1 << (i % 64)) != 0
    }

    /// Sets bit `i` (nothing past the end); returns whether it was set already.
    @discardableResult
    mutating func insert(_ i: UInt64) -> Bool {
        guard i < count else { return false }
        let was = contains(i)
        words[Int(i / 64)] |= 1 << (i % 64)
        return was
    }
}

extension ImageChecker {
    /// An offset in words, for findings.
    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// Maps a reader's error to the check's: an unreadable file, or an image QEMU would not open.
    static func checkError(_ e: GuestDisk.Error, _ path: String) -> ImageCheck.Error {
        if case .io(let io) = e { return .read(path: path, reason: io.description) }
        return .unopenable(path: path, reason: e.description)
    }

    /// How many entries of `entrySize` bytes of a table at `base` begin before the end of the file: those after read
    /// as zeros, as QEMU's block layer reads past the end, so a check need not visit them one by one.
    static func entriesInFile(_ file: ImageFile, base: UInt64, entrySize: UInt64, count: UInt64) -> UInt64 {
        let size = file.stat.size
        guard base < size else { return 0 }
        let inFile = (size - base + entrySize - 1) / entrySize
        return min(count, inFile)
    }
}

extension ImageCheck {
    /// Keeps the first `maxFindings` findings (a checker that inserts findings out of order may have passed it),
    /// and says in one note how many more were counted but not listed.
    mutating func capFindings() {
        if findings.count > Self.maxFindings {
            omittedFindings += UInt64(findings.count - Self.maxFindings)
            findings.removeLast(findings.count - Self.maxFindings)
        }
        if omittedFindings > 0 {
            findings.append(Finding(kind: .note, message: "\(omittedFindings) more findings are not listed; the counts include them"))
            omittedFindings = 0
        }
    }
}
