import QCow2

import Glibc

/// One layer of a chain as a running QEMU has it open: a format node over a file node.
public struct LiveLayer: Sendable, Equatable {
    /// The format node's name (QEMU makes up `#blockNNN` names for `-drive`; they change every run).
    public var nodeName: String
    /// The file (protocol) node's name, when there is one.
    public var fileNodeName: String?
    /// The format driver: qcow2, raw, …
    public var driver: String
    /// The path QEMU opened, from the file node (the format node may carry a `json:{…}` pseudo-name instead).
    public var filename: String
    /// Opened read-only.
    public var readOnly: Bool
    /// The backing name recorded in this layer's header, as QEMU read it.
    public var backingFilename: String?
    /// The recorded backing format.
    public var backingFormat: String?
    /// The file QEMU has open for this layer, by device and inode (nil when it cannot be told).
    package var key: FileKey?
    /// False when `filename` no longer leads to the file QEMU has open (it was moved or replaced since).
    public var pathCurrent: Bool
    /// Where the open file is now, as the kernel names it (differs from `filename` after a move; nil if unknown).
    public var currentPath: String?
}

/// One guest disk's chain, top first.
public struct LiveDevice: Sendable, Equatable {
    /// The drive's name (`-drive id=`), or empty for `-blockdev` disks.
    public var device: String
    /// The guest device's QOM path, when attached.
    public var qdev: String?
    /// The layers, top (active) first.
    public var layers: [LiveLayer]

    /// How people name this disk: the drive id, else the top node.
    public var label: String { device.isEmpty ? (layers.first?.nodeName ?? "?") : device }
}

/// A running block job, from `query-block-jobs`.
public struct LiveJob: Sendable, Equatable {
    /// The job's id.
    public var id: String
    /// commit, stream, mirror, …
    public var type: String
    /// Bytes done and total (total may grow while the job runs).
    public var offset: UInt64, length: UInt64
    /// An active commit waiting for `block-job-complete`.
    public var ready: Bool
    /// QEMU's job status word (running, ready, …).
    public var status: String
}

/// A node open in QEMU that belongs to no disk's chain.
public struct LiveStrayNode: Sendable, Equatable {
    /// Its node name.
    public var nodeName: String
    /// Its driver.
    public var driver: String
    /// The file it names.
    public var filename: String
}

/// Everything a running QEMU says about its block layer, read in three QMP calls.
public struct LiveView: Sendable, Equatable {
    /// The QEMU process.
    public var pid: Int32
    /// The monitor used.
    public var monitor: MonitorAddress
    /// What the monitor speaks (a human monitor tells less: no job states, node names only where they are unique).
    public var monitorKind: QemuMonitor.Kind = .qmp
    /// Every disk with its chain.
    public var devices: [LiveDevice]
    /// Running block jobs.
    public var jobs: [LiveJob]
    /// Nodes open outside every chain (left over by an earlier change, or added by hand).
    public var strays: [LiveStrayNode]

    /// The view narrowed to one disk, without stray nodes (for showing one chain).
    public func only(_ device: LiveDevice) -> LiveView {
        LiveView(pid: pid, monitor: monitor, monitorKind: monitorKind, devices: [device], jobs: jobs, strays: [])
    }

    /// The disk whose chain holds the file `key`, and the layer's index in it.
    package func locate(_ key: FileKey) -> (device: LiveDevice, index: Int)? {
        for d in devices { if let i = d.layers.firstIndex(where: { $0.key == key }) { return (d, i) } }
        return nil
    }

    /// Reads the view through `client`. `pid` is the QEMU's, for checking which files it really has open.
    public static func read(_ client: QMPClient, pid: Int32) throws(QMPClient.Error) -> LiveView {
        let answers = try client.executeAll([("query-blockstats", nil), ("query-named-block-nodes", ["flat": true]), ("query-block-jobs", nil)])
        guard answers.count == 3 else { throw QMPClient.Error.malformed(client.address, command: "query-blockstats", detail: "answers missing") }
        let stats = try client.decode(answers[0], as: [StatsNode].self, command: "query-blockstats")
        let named = try client.decode(answers[1], as: [NamedNode].self, command: "query-named-block-nodes")
        let jobs = try client.decode(answers[2], as: [JobInfo].self, command: "query-block-jobs")
        let byName = Dictionary(named.map { ($0.nodeName, $0) }, uniquingKeysWith: { a, _ in a })
        let open = OpenFiles(pid: pid)
        let names = QemuNames(pid: pid)
        var used: Set<String> = []
        var devices: [LiveDevice] = []
        var guessed: [(Int, Int)] = []
        for s in stats {
            var layers: [LiveLayer] = []
            var node: StatsNode? = s
            while let n = node, let name = n.nodeName, let info = byName[name], layers.count < 10_000 {
                let fileName = n.parent?.nodeName
                let path = fileName.flatMap { byName[$0]?.file } ?? info.file
                let found = names.resolve(path) { open.byKey[$0] != nil }
                let atPath = found?.key
                if let found, names.isGuess(path, path: found.path) { guessed.append((devices.count, layers.count)) }
                layers.append(LiveLayer(
                    nodeName: name, fileNodeName: fileName, driver: info.drv, filename: path, readOnly: info.ro,
                    backingFilename: info.image?.backingFilename, backingFormat: info.image?.backingFilenameFormat,
                    key: atPath.flatMap { open.byKey[$0] != nil ? $0 : nil },
                    pathCurrent: atPath.map { open.byKey[$0] != nil } ?? false,
                    currentPath: atPath.flatMap { open.byKey[$0] }))
                used.insert(name)
                if let fileName { used.insert(fileName) }
                node = n.backing
            }
            guard !layers.isEmpty else { continue }
            devices.append(LiveDevice(device: s.device ?? "", qdev: s.qdev, layers: layers))
        }
        QemuNames.dropUnbackedGuesses(&devices, guessed: guessed, descriptors: open.descriptors)
        open.pairMoved(&devices, sizes: byName.mapValues { $0.image?.virtualSize })
        // A stray file node under a stray format node is one stray, reported once by its format node.
        let unused = named.filter { !used.contains($0.nodeName) }
        let strayFormats = Set(unused.filter { $0.drv != "file" }.map(\.file))
        let strays = unused.filter { $0.drv != "file" || !strayFormats.contains($0.file) }
            .map { LiveStrayNode(nodeName: $0.nodeName, driver: $0.drv, filename: $0.file) }
        return LiveView(pid: pid, monitor: client.address, devices: devices,
                        jobs: jobs.map { LiveJob(id: $0.device, type: $0.type, offset: $0.offset, length: $0.len, ready: $0.ready ?? false, status: $0.status ?? "") },
                        strays: strays)
    }

}

/// `query-blockstats` entries: the chain's shape (the format node, its file child as `parent`, its `backing`).
final class StatsNode: Decodable {
    let device: String?
    let qdev: String?
    let nodeName: String?
    let parent: StatsNode?
    let backing: StatsNode?
    enum CodingKeys: String, CodingKey { case device, qdev, nodeName = "node-name", parent, backing }
}

/// `query-named-block-nodes {"flat": true}` entries.
struct NamedNode: Decodable {
    struct Image: Decodable {
        let backingFilename: String?
        let backingFilenameFormat: String?
        let virtualSize: UInt64?
        enum CodingKeys: String, CodingKey {
            case backingFilename = "backing-filename", backingFilenameFormat = "backing-filename-format", virtualSize = "virtual-size"
        }
    }
    let nodeName: String
    let drv: String
    let file: String
    let ro: Bool
    let image: Image?
    enum CodingKeys: String, CodingKey { case nodeName = "node-name", drv, file, ro, image }
}

/// `query-block-jobs` entries.
struct JobInfo: Decodable {
    let device: String
    let type: String
    let len: UInt64
    let offset: UInt64
    let ready: Bool?
    let status: String?
}
