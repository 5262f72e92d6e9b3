import QCow2

/// Why a live operation was refused or failed. Every case names the image; refusals say what to do instead.
public enum LiveError: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
    /// No QEMU holds the image: there is nothing live to talk to.
    case notRunning(path: String)
    /// More than one QEMU holds it: which one to ask is not clear.
    case severalHolders(path: String, holders: [String])
    /// The one holder is not a QEMU.
    case notQemu(path: String, pid: Int32, commandLine: String)
    /// The QEMU has no QMP monitor imgtool can reach.
    case noMonitor(path: String, pid: Int32, hmp: String?)
    /// Another client is connected to the QMP monitor.
    case busy(path: String, pid: Int32, address: String)
    /// libvirt manages the VM: its own record of the chain must stay true, so the change goes through virsh.
    case libvirt(path: String, pid: Int32, domain: String, virsh: String)
    /// QEMU holds the file, but not as a layer of any disk.
    case notInChain(path: String, pid: Int32)
    /// A check failed; nothing was changed.
    case refused(path: String, reason: String, hint: String?)
    /// QMP failed or QEMU refused a command.
    case qmp(path: String, QMPClient.Error)
    /// The human monitor failed, or a command printed something else than it should.
    case hmp(path: String, HMPClient.Error)
    /// The block job ended with an error.
    case jobFailed(path: String, job: String, message: String)
    /// Preparing a file (qemu-img, a header save) failed.
    case failed(path: String, String)
    /// imgtool was interrupted (`signal`) during a job, and had QEMU cancel it; what that left, in words.
    case interrupted(path: String, signal: Int32, detail: String)

    /// The exit code: 128 + the signal for an interruption (as a shell reports one), else 1.
    public var exitCode: Int32 {
        if case .interrupted(_, let sig, _) = self { return 128 + sig }
        return 1
    }

    /// The whole message: the headline and, indented, what to do instead.
    public var description: String { ([headline] + details.map { "  " + $0 }).joined(separator: "\n") }

    /// What to do instead, when there is something (the virsh command for libvirt).
    public var details: [String] {
        switch self {
        case .notRunning: return ["instead: run the same command without --live"]
        case .noMonitor: return ["instead: start QEMU with -qmp unix:PATH,server=on,wait=off"]
        case .busy: return ["instead: disconnect that client and try again"]
        case .libvirt(_, _, _, let virsh): return ["instead: \(virsh)"]
        case .refused(_, _, let hint?): return ["instead: \(hint)"]
        default: return []
        }
    }

    /// The message's first line, for `imgtool: error:`.
    public var headline: String {
        switch self {
        case .notRunning(let p):
            return "\(p): no running QEMU holds it; nothing was changed"
        case .severalHolders(let p, let h):
            return "\(p): held by several QEMU processes (\(h.joined(separator: ", "))); --live needs exactly one; nothing was changed"
        case .notQemu(let p, let pid, let cmd):
            return "\(p): held by PID \(pid) (\(cmd)), which is not QEMU; nothing was changed"
        case .noMonitor(let p, let pid, let hmp):
            let extra = hmp.map { " (only a human monitor at \($0), which cannot make this change safely)" } ?? ""
            return "\(p): QEMU PID \(pid) has no QMP monitor imgtool can reach\(extra); nothing was changed"
        case .busy(let p, let pid, let a):
            let several = a.contains(", ")
            return "\(p): the monitor\(several ? "s" : "") \(a) of QEMU PID \(pid) \(several ? "are" : "is") busy (another client is connected); nothing was changed"
        case .libvirt(let p, let pid, let d, _):
            return "\(p): QEMU PID \(pid) is managed by libvirt (domain \(d)); nothing was changed"
        case .notInChain(let p, let pid):
            return "\(p): QEMU PID \(pid) has it open, but not as a layer of any disk; nothing was changed"
        case .refused(let p, let reason, _):
            return "\(p): \(reason); nothing was changed"
        case .qmp(let p, let e): return "\(p): \(e.description)"
        case .hmp(let p, let e): return "\(p): \(e.description)"
        case .jobFailed(let p, let job, let m): return "\(p): QEMU's job \(job) failed: \(m)"
        case .failed(let p, let m): return "\(p): \(m)"
        case .interrupted(let p, let sig, let detail): return "\(p): interrupted by \(ChangeError.signalName(sig)); \(detail)"
        }
    }
}

/// A QMP session with the one QEMU that holds an image.
public final class LiveSession {
    /// The QEMU.
    public let process: QemuProcess
    /// The connected client (the monitor is ours until `close`).
    public let client: QMPClient
    /// The image the session was opened for, as the user named it.
    public let image: String

    private init(process: QemuProcess, client: QMPClient, image: String) {
        self.process = process; self.client = client; self.image = image
    }

    /// Finds the QEMU holding `image` and connects to its QMP monitor. `virsh` makes the command a libvirt user
    /// should run instead, from the domain name.
    public static func open(_ image: String, virsh: (String) -> String) throws(LiveError) -> LiveSession {
        let process = try holder(image, virsh: virsh)
        let qmps = process.monitors.filter { $0.kind == .qmp }
        guard !qmps.isEmpty else {
            throw .noMonitor(path: image, pid: process.pid, hmp: process.monitors.first.map { $0.address.description })
        }
        var busy: [MonitorAddress] = []
        var failure: QMPClient.Error?
        for m in qmps {
            do {
                let client = try QMPClient.connect(m.address)
                return LiveSession(process: process, client: client, image: image)
            } catch {
                if case .busy(let a) = error { busy.append(a) } else { failure = failure ?? error }
            }
        }
        // Busy wins: it says what to do. Otherwise the first monitor's own failure.
        if !busy.isEmpty { throw .busy(path: image, pid: process.pid, address: busy.map(\.description).joined(separator: ", ")) }
        throw .qmp(path: image, failure ?? .socket(qmps[0].address, "no answer"))
    }

    /// Connects to the QEMU holding `image` through any of its monitors: QMP first (it can do every change), then
    /// HMP (qemu-init's monitor port, then its command port…). A busy monitor (another client connected) is passed
    /// over for the next; only when every one is busy is the change refused as busy. Each probe is closed at once.
    public static func connect(_ image: String, virsh: (String) -> String) throws(LiveError) -> LiveConnection {
        let process = try holder(image, virsh: virsh)
        guard !process.monitors.isEmpty else { throw .noMonitor(path: image, pid: process.pid, hmp: nil) }
        var busy: [MonitorAddress] = []
        var failure: LiveError?
        for m in process.monitors where m.kind == .qmp {
            do { return .qmp(LiveSession(process: process, client: try QMPClient.connect(m.address), image: image)) } catch {
                if case .busy(let a) = error { busy.append(a) } else { failure = failure ?? .qmp(path: image, error) }
            }
        }
        for m in process.monitors where m.kind == .hmp {
            do { return .hmp(HMPSession(process: process, client: try HMPClient.connect(m.address), image: image)) } catch {
                if case .busy(let a) = error { busy.append(a) } else { failure = failure ?? .hmp(path: image, error) }
            }
        }
        if !busy.isEmpty { throw .busy(path: image, pid: process.pid, address: busy.map(\.description).joined(separator: ", ")) }
        throw failure ?? .noMonitor(path: image, pid: process.pid, hmp: nil)
    }

    /// The one QEMU holding `image`, checked as every live change needs: a QEMU, alone, not under libvirt, not
    /// also served by the kernel.
    static func holder(_ image: String, virsh: (String) -> String) throws(LiveError) -> QemuProcess {
        guard let id = FileIdentity.of(path: image) else { throw .refused(path: image, reason: "does not exist", hint: nil) }
        let pids = QemuProcess.holders(of: FileKey(id))
        guard !pids.isEmpty else { throw .notRunning(path: image) }
        guard pids.count == 1, let pid = pids.first else {
            throw .severalHolders(path: image, holders: pids.map { "PID \($0)" })
        }
        // The probe is skipped: connecting is the probe, and a second connection would only cost time.
        guard let process = QemuProcess.inspect(pid: pid, probe: false) else {
            throw .notQemu(path: image, pid: pid, commandLine: InUse.commandLine(pid))
        }
        // QEMU is the holder a live change expects; a device the kernel also serves the file on reads under it.
        let devices = Readers.devices(over: FileKey(id), pids: pids)
        if !devices.isEmpty {
            throw .refused(path: image, reason: "is also served by the kernel: \(devices.map(\.words).joined(separator: ", ")); what is read through it would change underneath",
                           hint: "unmount and detach it first (umount, losetup -d, dmsetup remove), then retry")
        }
        if let domain = process.libvirtDomain {
            throw .libvirt(path: image, pid: process.pid, domain: domain, virsh: virsh(domain))
        }
        return process
    }

    /// Leaves the monitor free for the next client.
    public func close() { client.close() }

    /// The live view now.
    public func view() throws(LiveError) -> LiveView {
        do { return try LiveView.read(client, pid: process.pid) } catch { throw .qmp(path: image, error) }
    }

    /// Runs a QMP command, naming the image in a failure.
    @discardableResult
    func execute(_ command: String, _ arguments: [String: QMPValue]? = nil) throws(LiveError) -> QMPValue {
        do { return try client.execute(command, arguments) } catch { throw .qmp(path: image, error) }
    }

    /// The disk and layer index of `path` in the live view (matched by device and inode).
    func locate(_ path: String, in view: LiveView) throws(LiveError) -> (device: LiveDevice, index: Int) {
        try view.locate(path, pid: process.pid)
    }
}

/// A session with the QEMU holding an image, through whichever monitor was free: QMP, or HMP where only that is.
public enum LiveConnection {
    /// Through QMP: every live change.
    case qmp(LiveSession)
    /// Through a human monitor: the chain, `snapshot_blkdev`, `block_stream`, `commit` of the top.
    case hmp(HMPSession)

    /// The QEMU.
    public var process: QemuProcess {
        switch self { case .qmp(let s): return s.process; case .hmp(let s): return s.process }
    }

    /// The live view now.
    public func view() throws(LiveError) -> LiveView {
        switch self { case .qmp(let s): return try s.view(); case .hmp(let s): return try s.view() }
    }

    /// Leaves the monitor free for the next client.
    public func close() {
        switch self { case .qmp(let s): s.close(); case .hmp(let s): s.close() }
    }
}

extension LiveView {
    /// The disk and layer index of `path` in this view (matched by device and inode); `pid` is the QEMU's.
    func locate(_ path: String, pid: Int32) throws(LiveError) -> (device: LiveDevice, index: Int) {
        guard let id = FileIdentity.of(path: path) else {
            throw .refused(path: path, reason: "does not exist", hint: nil)
        }
        guard let found = locate(FileKey(id)) else {
            // QEMU reports a name that is not UTF-8 with U+FFFD in place of its bytes (QMP is JSON text), so no layer
            // it lists names this file: say why rather than "not a layer".
            if path.unicodeScalars.contains(where: { PathBytes.escapedByte($0) != nil }) {
                throw .refused(path: path, reason: "its name is not UTF-8, and QEMU's QMP reports and takes names only as UTF-8 text",
                               hint: "give the file a UTF-8 name, or make the change with QEMU stopped")
            }
            throw .notInChain(path: path, pid: pid)
        }
        return found
    }
}
