import QCow2

import Glibc

/// A QEMU monitor found for a running process: what it speaks, where it listens, whether a client could talk now.
public struct QemuMonitor: Sendable, Equatable {
    /// The protocol: QMP (JSON, for changes) or HMP (text, for people).
    public enum Kind: String, Sendable { case qmp, hmp }
    /// `free`: the greeting came; `busy`: another client holds it (QEMU stayed silent).
    public enum State: String, Sendable { case free, busy }

    /// QMP or HMP.
    public var kind: Kind
    /// The listening socket.
    public var address: MonitorAddress
    /// Free or busy, as the greeting probe found it.
    public var state: State
}

/// A running QEMU as `/proc` shows it: its command line, its monitors, and whether libvirt manages it.
public struct QemuProcess: Sendable, Equatable {
    /// Its PID.
    public var pid: Int32
    /// Its arguments.
    public var arguments: [String]
    /// Every monitor found listening on one of its sockets, in command-line order.
    public var monitors: [QemuMonitor]
    /// The libvirt domain name when libvirt manages this VM (nil otherwise): imgtool then refuses and names `virsh`.
    public var libvirtDomain: String?

    /// The first QMP monitor, free or not.
    public var qmp: QemuMonitor? { monitors.first { $0.kind == .qmp } }

    /// True when the executable is a QEMU system emulator.
    public static func isQemu(_ arguments: [String]) -> Bool {
        guard let exe = arguments.first else { return false }
        let name = exe.split(separator: "/").last.map(String.init) ?? exe
        return name.hasPrefix("qemu-system-") || name == "qemu-kvm" || name == "kvm"
    }

    /// Reads `/proc/PID`, finds the monitors named on the command line and, when `probe`, probes each
    /// (≤ `probeTimeoutMS` apiece; unprobed monitors say free). Nil when the process is gone or is not a QEMU.
    public static func inspect(pid: Int32, probe: Bool = true, probeTimeoutMS: Int32 = 300) -> QemuProcess? {
        let args = readArguments(pid)
        guard isQemu(args) else { return nil }
        let specs = MonitorSpec.parse(args)
        let sockets = SocketTable(pid: pid, tcp: specs.contains { if case .tcp = $0.endpoint { true } else { false } })
        var monitors: [QemuMonitor] = []
        var byFD = false
        for spec in specs {
            let address: MonitorAddress?
            switch spec.endpoint {
            case .unix(let path): address = sockets.listeningUnix(path: path)
            case .tcp(let host, let port): address = sockets.listeningTCP(port: port) ? .tcp(host: host.isEmpty ? "127.0.0.1" : host, port: port) : nil
            case .fd(let n):
                byFD = true
                address = sockets.unixAddress(fd: n)
            }
            guard let address else { continue }
            monitors.append(QemuMonitor(kind: spec.kind, address: address, state: probe ? Self.probe(address, timeoutMS: probeTimeoutMS) : .free))
        }
        return QemuProcess(pid: pid, arguments: args, monitors: monitors,
                           libvirtDomain: libvirtDomain(pid: pid, arguments: args, monitorByFD: byFD))
    }

    /// The QEMU processes (but us) with the file `key` open. Only QEMUs' descriptors are walked: a process is
    /// told by its `comm` first, which costs one read where walking every process's descriptors costs thousands of
    /// stats on a busy machine. (A non-QEMU holder does not stop QEMU changing its own chain; QEMU's locks guard it.)
    package static func holders(of key: FileKey) -> [Int32] {
        var found: [Int32] = []
        let me = getpid()
        guard let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        while let ent = readdir(proc) {
            let name = Directory.name(ent)
            guard let pid = Int32(name), pid != me, let comm = readSmallFile("/proc/\(pid)/comm", limit: 64) else { continue }
            // comm is cut at 15 bytes: "qemu-system-x86".
            guard comm.starts(with: Array("qemu-".utf8)) || comm.starts(with: Array("kvm".utf8)) else { continue }
            if OpenFiles.has(pid: pid, key) { found.append(pid) }
        }
        return found.sorted()
    }

    /// Connects, reads the greeting for at most `timeoutMS`, closes at once. Silence (or a refused connection) is busy.
    static func probe(_ address: MonitorAddress, timeoutMS: Int32) -> QemuMonitor.State {
        guard let s = try? MonitorSocket.connect(address, timeoutMS: timeoutMS) else { return .busy }
        defer { s.close() }
        let greeting = (try? s.readSome(timeoutMS: timeoutMS)) ?? []
        return greeting.isEmpty ? .busy : .free
    }

    static func readArguments(_ pid: Int32) -> [String] {
        guard let bytes = readSmallFile("/proc/\(pid)/cmdline", limit: 1 << 20) else { return [] }
        return bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast(bytes.last == 0 ? 1 : 0)
            .map { String(pathBytes: $0) }
    }

    /// libvirt starts QEMU as a child of libvirtd/virtqemud and hands it the monitor as a descriptor (`fd=N`), or
    /// binds it under /var/lib/libvirt or /run/libvirt. Any of these means: leave the VM to libvirt.
    static func libvirtDomain(pid: Int32, arguments: [String], monitorByFD: Bool) -> String? {
        let parentManaged: Bool = {
            guard let stat = readSmallFile("/proc/\(pid)/stat", limit: 4096),
                  let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return false }
            let fields = stat[(close + 2)...].split(separator: UInt8(ascii: " "))
            guard fields.count > 1, let ppid = Int32(String(decoding: fields[1], as: UTF8.self)),
                  let comm = readSmallFile("/proc/\(ppid)/comm", limit: 64) else { return false }
            let name = String(decoding: comm, as: UTF8.self).trimmingSuffix("\n")
            return name == "libvirtd" || name == "virtqemud"
        }()
        let libvirtPaths = arguments.contains { $0.contains("/var/lib/libvirt/qemu/") || $0.contains("/run/libvirt/qemu/") }
        guard parentManaged || monitorByFD || libvirtPaths else { return nil }
        if let i = arguments.firstIndex(where: { $0 == "-name" || $0 == "--name" }), i + 1 < arguments.count {
            let value = arguments[i + 1]
            for part in value.split(separator: ",") where part.hasPrefix("guest=") { return String(part.dropFirst(6)) }
            return String(value.split(separator: ",").first ?? "")
        }
        return "DOMAIN"
    }
}

extension String {
    func trimmingSuffix(_ s: String) -> String { hasSuffix(s) ? String(dropLast(s.count)) : self }
}

/// Reads a small file (procfs reports size 0, so read to the end).
func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
    let fd = Sys.open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while out.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        out.append(contentsOf: chunk[..<n])
    }
    return out
}
