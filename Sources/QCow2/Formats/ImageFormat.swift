/// A disk image format, named as qemu-img names it.
public enum ImageFormat: String, Sendable, Equatable, CaseIterable {
    case qcow2, qcow, qed, vmdk, vdi, vhdx, vpc, luks, parallels, bochs, cloop, dmg, raw

    /// Recognises qemu-img's format names (the ones `-F` and the backing format extension use).
    public init?(qemuName: String) {
        self.init(rawValue: qemuName)
    }

    /// Formats that can name a backing file of their own.
    public var canHaveBacking: Bool { self == .qcow2 || self == .qcow || self == .qed || self == .vmdk }

    /// Whether qemu-img's `info` prints `dirty-flag` for this format: it does when the driver answers
    /// `bdrv_get_info`, which QEMU 7.2's parallels, bochs, cloop and dmg drivers do not (measured on each).
    public var reportsDirtyFlag: Bool {
        switch self {
        case .parallels, .bochs, .cloop, .dmg: return false
        default: return true
        }
    }
}

/// What the first bytes of a file say it is.
public struct ProbeResult: Sendable, Equatable {
    /// The detected format; raw when no magic matched.
    public var format: ImageFormat
    /// The virtual size when the header gives it cheaply (raw: the file size).
    public var virtualSize: UInt64?
    /// For a VMDK text descriptor: the extent lines' file names (they reach outside the file).
    public var vmdkExtents: [String]
    /// For a VMDK text descriptor: the createType.
    public var vmdkCreateType: String?
}
