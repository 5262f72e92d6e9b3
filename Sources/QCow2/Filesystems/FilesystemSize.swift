/// The size a filesystem (or volume header) at some offset of a guest's disk says it spans, read from its own
/// superblock: what a shrink must leave in place. Recognised: ext2/3/4, XFS, btrfs, FAT, NTFS, Linux swap, LVM2
/// physical volumes, and LUKS1/2 (whose size is the container's, unknown here: only its header's is known).
public struct FilesystemSize: Sendable, Equatable {
    /// The filesystem, as `blkid` names it (`ext4`, `xfs`, `btrfs`, `vfat`, `ntfs`, `swap`, `LVM2_member`, `crypto_LUKS`).
    public var name: String
    /// Bytes from its start that it uses (for LUKS: its header and key slots, up to the first data segment).
    public var bytes: UInt64
    /// False when `bytes` is only a lower bound (LUKS: the encrypted data runs to the end of its device).
    public var exact: Bool

    /// A filesystem's size.
    public init(name: String, bytes: UInt64, exact: Bool) {
        self.name = name
        self.bytes = bytes
        self.exact = exact
    }

    /// Why a superblock could not give a size: it carries the magic, but a field is out of range.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        /// `field` at byte `offset` of the disk (of the `filesystem` found there) cannot be right.
        case invalidField(filesystem: String, field: String, offset: UInt64, reason: String)
        /// Reading the guest's disk failed.
        case read(GuestDisk.Error)

        public var description: String {
            switch self {
            case .invalidField(let fs, let field, let offset, let reason):
                return "the \(fs) superblock's \(field) at byte \(offset) \(reason)"
            case .read(let e): return e.description
            }
        }
    }

    /// Reads the guest's disk: `count` bytes at `offset`, zeros past its end.
    public typealias Reader = (_ offset: UInt64, _ count: Int) throws(GuestDisk.Error) -> [UInt8]

    /// Bytes read at a candidate's start: enough for btrfs's superblock at 64 KiB and a 64 KiB swap page.
    static let probeSpan = 0x11000

    /// The filesystem starting at byte `start` of the disk behind `read`, or nil when none imgtool knows is there.
    public static func probe(at start: UInt64, _ read: Reader) throws(Error) -> FilesystemSize? {
        let head: ByteWindow
        do { head = ByteWindow(try read(start, probeSpan)) } catch { throw .read(error) }
        if let found = try ext(head, start) { return found }
        if let found = try xfs(head, start) { return found }
        if let found = try btrfs(head, start) { return found }
        if let found = try ntfs(head, start) { return found }
        if let found = try fat(head, start) { return found }
        if let found = try swap(head, start) { return found }
        if let found = try lvm2(head, start) { return found }
        return try luks(head, start, read)
    }

    /// `a * b`, or a refusal naming `field` when it overflows.
    static func product(_ a: UInt64, _ b: UInt64, _ fs: String, _ field: String, _ offset: UInt64) throws(Error) -> UInt64 {
        let (v, o) = a.multipliedReportingOverflow(by: b)
        guard !o else { throw .invalidField(filesystem: fs, field: field, offset: offset, reason: "gives a size past 2^64") }
        return v
    }

    /// `start + relative`, the disk offset of a field (saturating: only used in messages).
    static func at(_ start: UInt64, _ relative: Int) -> UInt64 {
        let (v, o) = start.addingReportingOverflow(UInt64(relative))
        return o ? .max : v
    }
}
