/// What a native consistency check of one image found, counted as `qemu-img check` counts (QEMU 7.2's
/// `BdrvCheckResult` and `ImageCheck`), plus every finding in words.
///
/// The checkers in this folder read only: no lock is taken, nothing is written. Each format's checker follows its
/// QEMU driver's `bdrv_co_check` (qcow2: `qcow2_check_refcounts` in block/qcow2-refcount.c; QED, VDI, VHDX,
/// Parallels, VMDK their own), so that every count agrees with qemu-img's on the same image.
public struct ImageCheck: Sendable, Equatable {
    /// The image's path as given.
    public var filename: String
    /// The checked format.
    public var format: ImageFormat
    /// qemu-img's `check-errors`: checks that could not be completed (an unreadable table, an allocation refused).
    public var checkErrors: UInt64 = 0
    /// qemu-img's `corruptions`.
    public var corruptions: UInt64 = 0
    /// qemu-img's `leaks`: clusters the refcounts hold that nothing references.
    public var leaks: UInt64 = 0
    /// qemu-img's `corruptions-fixed` (0 for a read-only check; set from qemu-img's answer after a repair).
    public var corruptionsFixed: UInt64 = 0
    /// qemu-img's `leaks-fixed`.
    public var leaksFixed: UInt64 = 0
    /// qemu-img's `image-end-offset`, where the driver reports it.
    public var imageEndOffset: UInt64?
    /// qemu-img's `total-clusters` (`BlockFragInfo`), where the driver reports it.
    public var totalClusters: UInt64?
    /// qemu-img's `allocated-clusters`.
    public var allocatedClusters: UInt64?
    /// qemu-img's `fragmented-clusters`.
    public var fragmentedClusters: UInt64?
    /// qemu-img's `compressed-clusters`.
    public var compressedClusters: UInt64?
    /// Every finding, in the order the checker met them (at most `ImageCheck.maxFindings`; the counts stay whole).
    public var findings: [Finding] = []
    /// Set when the check stopped where QEMU's stops (qemu-img then prints no counts, says "Check failed: <this>"
    /// and exits 1): QEMU's reason in its words ("Input/output error", "Invalid argument", …); VMDK's check does so
    /// at the first grain past the end of its file. The counts are those gathered until then, and `checkErrors` is
    /// at least 1, so that such a result is never taken for an answer.
    public var aborted: String?
    /// Findings counted but not kept past `maxFindings` (said in one note by `finish`).
    var omittedFindings: UInt64 = 0

    /// Creates an empty (clean) result.
    public init(filename: String, format: ImageFormat) {
        self.filename = filename
        self.format = format
    }

    /// True when qemu-img would say "No errors were found on the image.".
    public var isClean: Bool { checkErrors == 0 && corruptions == 0 && leaks == 0 && aborted == nil }

    /// One thing the checker found, in words, placed in the file.
    public struct Finding: Sendable, Equatable {
        /// What kind of problem (JSON `kind`).
        public var kind: Kind
        /// The host cluster index concerned (offset / cluster size), when there is one.
        public var cluster: UInt64?
        /// The byte offset in the file concerned, when there is one.
        public var offset: UInt64?
        /// The table the entry or cluster belongs to ("L1 table", "L2 table at 0x50000", "refcount block", …).
        public var table: String?
        /// A complete sentence for the user (untrusted text inside is escaped by the renderer, not here).
        public var message: String

        /// Creates a finding.
        public init(kind: Kind, cluster: UInt64? = nil, offset: UInt64? = nil, table: String? = nil, message: String) {
            self.kind = kind
            self.cluster = cluster
            self.offset = offset
            self.table = table
            self.message = message
        }

        /// The classes of finding; raw values are the JSON `kind`.
        public enum Kind: String, Sendable, Equatable, CaseIterable {
            /// Counted in `leaks`.
            case leak
            /// Counted in `corruptions`.
            case corruption
            /// Counted in `check-errors`.
            case checkError = "check-error"
            /// Not counted by qemu-img, but worth saying (the dirty bit: qemu-img would rebuild the refcounts on
            /// open; the corrupt bit; a process holds the image, so the answer may be stale).
            case note
        }
    }

    /// Why an image could not be checked at all (the contract's exit 1).
    public enum Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        /// The file could not be opened or read.
        case read(path: String, reason: String)
        /// qemu-img has no check for this format; `message` is qemu-img's wording
        /// ("This image format does not support checks").
        case unsupported(path: String, format: ImageFormat)
        /// The header is not one the driver would open (qemu-img check fails to open it too).
        case unopenable(path: String, reason: String)

        /// The whole message, naming the file.
        public var description: String {
            switch self {
            case .read(let path, let reason): return "\(path): cannot read: \(reason)"
            case .unsupported(let path, let format):
                // qemu-img's own sentence (`img_check`), then the format it detected.
                return "\(path): This image format does not support checks (\(format.rawValue))"
            case .unopenable(let path, let reason): return "\(path): \(reason)"
            }
        }
    }
}

extension ImageCheck.Error: ReportableError {}

/// The entry point: checks one image natively, by its detected format.
///
/// Every format's checker is an `extension ImageChecker` in a file of its own (`ImageChecker+QCow2.swift`, …);
/// `check` dispatches on the probed format.
public enum ImageChecker {}
