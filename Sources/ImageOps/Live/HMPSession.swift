import QCow2

/// A session with the one QEMU that holds an image, through its human monitor (HMP): for a QEMU started with
/// `-monitor` only, as qemu-init starts its guests. HMP can read the chain and do the changes whose commands keep
/// QEMU's state plain (`snapshot_blkdev`, `block_stream`, `commit`); the others are refused naming `-qmp`.
public final class HMPSession {
    /// The QEMU.
    public let process: QemuProcess
    /// The connected client (the monitor is ours until `close`).
    public let client: HMPClient
    /// The image the session was opened for, as the user named it.
    public let image: String

    init(process: QemuProcess, client: HMPClient, image: String) {
        self.process = process; self.client = client; self.image = image
    }

    /// Leaves the monitor free for the next client.
    public func close() { client.close() }

    /// The live view now. Refused when a name in IMAGE's chain holds a line break or another control character:
    /// HMP prints names raw, so such a name (a backing name is any bytes a header holds) could add lines of its own
    /// to the listing, and the chain read back would not be QEMU's.
    public func view() throws(LiveError) -> LiveView {
        if let chain = try? BackingChain.follow(image) {
            for layer in chain.layers {
                for name in [layer.filename, layer.backingFilename ?? ""] where name.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
                    throw .refused(path: image, reason: "its chain names \(name) (with a control character), which QEMU's human monitor prints raw: its listing cannot be read back unambiguously",
                                   hint: "start QEMU with -qmp unix:PATH,server=on,wait=off as well, or make the change with the VM stopped")
                }
            }
        }
        do { return try LiveView.read(hmp: client, pid: process.pid) } catch { throw .hmp(path: image, error) }
    }

    /// Runs an HMP command that prints nothing when it works: any output is QEMU's error message, and an error.
    func runSilent(_ command: String, timeoutMS: Int32? = nil) throws(LiveError) {
        let out: [String]
        do { out = try client.run(command, timeoutMS: timeoutMS) } catch { throw .hmp(path: image, error) }
        guard out.allSatisfy(\.isEmpty) else {
            throw .hmp(path: image, .unexpected(client.address, command: command, text: out.joined(separator: " / ")))
        }
    }

    /// The running block jobs.
    func jobs() throws(LiveError) -> [LiveJob] {
        do { return try LiveView.jobs(hmp: client) } catch { throw .hmp(path: image, error) }
    }

    /// The refusal for what HMP cannot do safely: names the `-qmp` option that would allow it.
    func cannot(_ what: String, _ path: String) -> LiveError {
        .refused(path: path, reason: "QEMU PID \(process.pid) has only a human monitor (HMP, \(client.address)), which cannot \(what) safely",
                 hint: "start QEMU with -qmp unix:PATH,server=on,wait=off as well, or make the change with the VM stopped")
    }
}

extension LiveView {
    /// Reads the view through a human monitor: `info block -v` (each drive's chain), `info block -n` (every node,
    /// for the names and read-only flags of backing layers) and `info block-jobs`.
    static func read(hmp: HMPClient, pid: Int32) throws(HMPClient.Error) -> LiveView {
        let drives = try blockInfo(hmp, "info block -v", verbose: true)
        let nodes = try blockInfo(hmp, "info block -n", verbose: false)
        let jobs = try jobs(hmp: hmp)
        let open = OpenFiles(pid: pid)
        let names = QemuNames(pid: pid)
        var used: Set<String> = []
        var sizes: [String: UInt64?] = [:]
        var devices: [LiveDevice] = []
        var guessed: [(Int, Int)] = []
        for drive in drives.entries {
            guard let top = drive.nodeName, !drive.file.isEmpty else { continue }
            var layers: [LiveLayer] = []
            let images = drive.images.isEmpty ? [HMPBlockInfo.Image(filename: drive.file, format: drive.driver)] : drive.images
            for (k, image) in images.enumerated() {
                // `-v` names only the top's node; a backing layer's is the one node with its file and format.
                let matches = nodes.entries.filter { $0.file == image.filename && $0.driver == image.format && !used.contains($0.nodeName ?? "") }
                let node = k == 0 ? nodes.entries.first { $0.nodeName == top } : (matches.count == 1 ? matches.first : nil)
                let nodeName = k == 0 ? top : (node?.nodeName ?? "")
                let filename = plainName(image.filename)
                let fileNodes = nodes.entries.filter { $0.driver == "file" && $0.file == filename && !used.contains($0.nodeName ?? "") }
                let fileNode = fileNodes.count == 1 ? fileNodes.first?.nodeName : nil
                let found = names.resolve(filename) { open.byKey[$0] != nil }
                let atPath = found?.key
                if let found, names.isGuess(filename, path: found.path) { guessed.append((devices.count, layers.count)) }
                layers.append(LiveLayer(
                    nodeName: nodeName, fileNodeName: fileNode, driver: image.format, filename: filename,
                    readOnly: k == 0 ? drive.readOnly : (node?.readOnly ?? true),
                    backingFilename: image.backingFilename, backingFormat: image.backingFormat,
                    key: atPath.flatMap { open.byKey[$0] != nil ? $0 : nil },
                    pathCurrent: atPath.map { open.byKey[$0] != nil } ?? false,
                    currentPath: atPath.flatMap { open.byKey[$0] }))
                if !nodeName.isEmpty { used.insert(nodeName); sizes[nodeName] = image.virtualSize }
                if let fileNode { used.insert(fileNode) }
            }
            devices.append(LiveDevice(device: drive.device, qdev: drive.qdev, layers: layers))
        }
        QemuNames.dropUnbackedGuesses(&devices, guessed: guessed, descriptors: open.descriptors)
        open.pairMoved(&devices, sizes: sizes)
        // A node no chain uses: a format node, or a file node under no format node of its file.
        let unused = nodes.entries.filter { !used.contains($0.nodeName ?? "") }
        let strayFormats = Set(unused.filter { $0.driver != "file" }.map(\.file))
        let usedFiles = Set(devices.flatMap { $0.layers.map(\.filename) })
        let strays = unused.filter { $0.driver != "file" ? !usedFiles.contains(plainName($0.file)) : !strayFormats.contains($0.file) && !usedFiles.contains($0.file) }
            .map { LiveStrayNode(nodeName: $0.nodeName ?? "", driver: $0.driver, filename: $0.file) }
        return LiveView(pid: pid, monitor: hmp.address, monitorKind: .hmp, devices: devices, jobs: jobs, strays: strays)
    }

    /// The file a format node reads: QEMU names a node opened with options (`-blockdev`) by a `json:{…}` pseudo-name,
    /// whose `file.filename` is the path (the QMP view takes it from the file node; HMP shows no tree).
    static func plainName(_ name: String) -> String {
        guard name.hasPrefix("json:"), let v = try? QMPValue.parse(Array(name.dropFirst(5).utf8)),
              v["file"]?["driver"]?.string == "file", let path = v["file"]?["filename"]?.string else { return name }
        return path
    }

    static func blockInfo(_ hmp: HMPClient, _ command: String, verbose: Bool) throws(HMPClient.Error) -> HMPBlockInfo {
        let lines = try hmp.run(command)
        do { return try HMPBlockInfo.parse(lines, verbose: verbose) } catch {
            throw .unexpected(hmp.address, command: command, text: error.line)
        }
    }

    static func jobs(hmp: HMPClient) throws(HMPClient.Error) -> [LiveJob] {
        let lines = try hmp.run("info block-jobs")
        do { return try HMPBlockInfo.jobs(lines) } catch { throw .unexpected(hmp.address, command: "info block-jobs", text: error.line) }
    }
}
