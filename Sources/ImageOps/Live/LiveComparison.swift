import QCow2

/// `chain IMAGE --live`: the chain a running QEMU has open beside the chain on disk, and every difference between them.
public struct LiveComparison: Sendable {
    /// One way the two chains disagree.
    public struct Difference: Sendable, Equatable {
        /// What kind of difference.
        public enum Kind: String, Sendable {
            /// The recorded backing name leads to another file than the one QEMU reads.
            case differentFile = "different-file"
            /// QEMU reads a layer the on-disk chain no longer reaches (broken or missing link).
            case unreachable
            /// The on-disk chain goes on below what QEMU has open.
            case notOpen = "not-open"
            /// A node is open in QEMU outside every chain.
            case strayNode = "stray-node"
        }
        /// Index in the on-disk chain (0 = IMAGE) of the layer concerned; nil for a stray node.
        public var layer: Int?
        /// The kind.
        public var kind: Kind
        /// In words.
        public var message: String
        /// Commands that would mend it.
        public var suggestions: [String]
    }

    /// The image as the user named it.
    public var image: String
    /// The chain on disk, from IMAGE.
    public var disk: BackingChain
    /// What QEMU has open.
    public var view: LiveView
    /// The disk whose chain holds IMAGE.
    public var device: LiveDevice
    /// IMAGE's index in that disk's live chain.
    public var index: Int
    /// Every difference.
    public var differences: [Difference]

    /// Both chains agree and the on-disk one is healthy.
    public var healthy: Bool { differences.isEmpty && disk.isHealthy }

    /// Reads both chains and compares them by device and inode.
    public static func read(_ image: String, session: LiveSession) throws(LiveError) -> LiveComparison {
        try compare(image, view: try session.view())
    }

    /// Reads both chains through whichever monitor `connection` has (QMP or HMP) and compares them.
    public static func read(_ image: String, connection: LiveConnection) throws(LiveError) -> LiveComparison {
        try compare(image, view: try connection.view())
    }

    static func compare(_ image: String, view: LiveView) throws(LiveError) -> LiveComparison {
        let (device, index) = try view.locate(image, pid: view.pid)
        let disk: BackingChain
        do { disk = try BackingChain.follow(image) } catch { throw .failed(path: image, error.description) }
        let live = Array(device.layers[index...])
        var diffs: [Difference] = []
        // A layer QEMU opened under a name that has moved since is no difference by itself (the live tree shows where
        // it is now); it is one when the link on disk no longer leads to it.
        for k in 1..<max(live.count, disk.layers.count) {
            let above = disk.layers.indices.contains(k - 1) ? disk.layers[k - 1].filename : image
            switch (live.indices.contains(k) ? live[k] : nil, disk.layers.indices.contains(k) ? disk.layers[k] : nil) {
            case let (l?, d?) where l.key != FileKey(d.identity):
                let fix = l.currentPath.map { ["imgtool fix-backing \(Shell.quote(above)) --to \(Shell.quote($0)) --live"] } ?? []
                diffs.append(Difference(layer: k - 1, kind: .differentFile,
                                        message: "\(above) names \(d.filename) as its backing file, but QEMU reads \(l.currentPath ?? l.filename)", suggestions: fix))
            case let (l?, nil):
                let fix = l.currentPath.map { ["imgtool fix-backing \(Shell.quote(above)) --to \(Shell.quote($0)) --live"] } ?? []
                diffs.append(Difference(layer: k - 1, kind: .unreachable,
                                        message: "QEMU reads \(l.currentPath ?? l.filename) below \(above), but the link on disk does not lead there", suggestions: fix))
            case let (nil, d?):
                diffs.append(Difference(layer: k - 1, kind: .notOpen,
                                        message: "on disk the chain goes on to \(d.filename), which QEMU does not have open below \(above)", suggestions: []))
            default: break
            }
            // Past the first disagreement the two chains are not comparable layer by layer.
            if !diffs.isEmpty { break }
        }
        for s in view.strays {
            diffs.append(Difference(layer: nil, kind: .strayNode, message: "node \(s.nodeName) (\(s.driver), \(s.filename)) is open in QEMU outside every chain",
                                    suggestions: []))
        }
        return LiveComparison(image: image, disk: disk, view: view, device: device, index: index, differences: diffs)
    }
}
