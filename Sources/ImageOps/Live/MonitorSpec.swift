import QCow2

import Glibc

/// A monitor as QEMU's command line declares it: `-qmp unix:P` / `tcp:H:P`, `-monitor …` (HMP), or a
/// `-chardev socket,id=X,path=P|host=H,port=N|fd=N` joined to `-mon chardev=X,mode=control|readline`.
struct MonitorSpec: Equatable {
    /// Where the chardev listens, as written.
    enum Endpoint: Equatable {
        case unix(String)
        case tcp(host: String, port: Int)
        /// A descriptor handed over by the parent (libvirt).
        case fd(Int32)
    }
    var kind: QemuMonitor.Kind
    var endpoint: Endpoint

    /// Every monitor the arguments declare, in order.
    static func parse(_ args: [String]) -> [MonitorSpec] {
        var chardevs: [String: Endpoint] = [:]
        var mons: [(id: String, kind: QemuMonitor.Kind)] = []
        var direct: [MonitorSpec] = []
        var i = 1
        while i + 1 < args.count {
            // QEMU takes both -opt and --opt, and also -opt=value.
            var opt = args[i]
            var value = args[i + 1]
            var step = 2
            if opt.hasPrefix("--") { opt.removeFirst() }
            if let eq = opt.firstIndex(of: "="), opt.hasPrefix("-") {
                value = String(opt[opt.index(after: eq)...])
                opt = String(opt[..<eq])
                step = 1
            }
            switch opt {
            case "-qmp", "-qmp-pretty":
                if let e = endpoint(legacy: value) { direct.append(MonitorSpec(kind: .qmp, endpoint: e)) }
            case "-monitor":
                if let e = endpoint(legacy: value) { direct.append(MonitorSpec(kind: .hmp, endpoint: e)) }
            case "-chardev":
                let o = options(value)
                if o.first?.key == "socket", let id = o.first(where: { $0.key == "id" })?.value {
                    if let e = endpoint(options: o) { chardevs[id] = e }
                }
            case "-mon":
                let o = options(value)
                if let id = o.first(where: { $0.key == "chardev" })?.value {
                    let mode = o.first { $0.key == "mode" }?.value ?? "readline"
                    mons.append((id, mode == "control" ? .qmp : .hmp))
                }
            default:
                step = 1
            }
            i += step
        }
        return direct + mons.compactMap { m in chardevs[m.id].map { MonitorSpec(kind: m.kind, endpoint: $0) } }
    }

    /// `unix:PATH[,opts]`, `tcp:HOST:PORT[,opts]`, or a chardev-style `socket,…` value.
    static func endpoint(legacy value: String) -> Endpoint? {
        if value.hasPrefix("unix:") {
            let rest = value.dropFirst(5)
            return .unix(String(rest.split(separator: ",", omittingEmptySubsequences: false).first ?? ""))
        }
        // A telnet monitor is a TCP listener that opens with telnet negotiation (the HMP client strips it).
        if value.hasPrefix("tcp:") || value.hasPrefix("telnet:") {
            let hostPort = String(value.drop { $0 != ":" }.dropFirst().split(separator: ",", omittingEmptySubsequences: false).first ?? "")
            guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]) else { return nil }
            var host = String(hostPort[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return .tcp(host: host, port: port)
        }
        return nil
    }

    static func endpoint(options o: [(key: String, value: String?)]) -> Endpoint? {
        func v(_ k: String) -> String? { o.first { $0.key == k }?.value }
        if let path = v("path") { return .unix(path) }
        if let fd = v("fd").flatMap({ Int32($0) }) { return .fd(fd) }
        if let port = v("port").flatMap({ Int($0) }) { return .tcp(host: v("host") ?? "", port: port) }
        return nil
    }

    /// QemuOpts: comma-separated `key=value` (`,,` is a literal comma); the first bare word is the driver.
    static func options(_ value: String) -> [(key: String, value: String?)] {
        var parts: [String] = []
        var current = ""
        var chars = Array(value)
        var i = 0
        while i < chars.count {
            if chars[i] == "," {
                if i + 1 < chars.count && chars[i + 1] == "," { current.append(","); i += 2; continue }
                parts.append(current); current = ""
            } else { current.append(chars[i]) }
            i += 1
        }
        parts.append(current)
        chars = []
        return parts.map { p in
            if let eq = p.firstIndex(of: "=") { return (String(p[..<eq]), String(p[p.index(after: eq)...])) }
            return (p, nil)
        }
    }
}

/// A process's sockets: its descriptors' socket inodes looked up in its network namespace's tables.
struct SocketTable {
    let pid: Int32
    /// Socket inodes of the process's descriptors, by descriptor number.
    let inodeByFD: [Int32: UInt64]
    /// Listening unix sockets in its namespace: inode → bound path.
    let unixListening: [UInt64: String]
    /// Listening TCP sockets: inode → port (read only when a monitor is on TCP: the kernel walks its whole
    /// connection table to list them, the largest cost of discovery on a busy host).
    let tcpListening: [UInt64: Int]

    init(pid: Int32, tcp wantTCP: Bool = true) {
        self.pid = pid
        var fds: [Int32: UInt64] = [:]
        if let d = opendir("/proc/\(pid)/fd") {
            while let ent = readdir(d) {
                let name = Directory.name(ent)
                guard let fd = Int32(name) else { continue }
                var buf = [CChar](repeating: 0, count: 128)
                let n = readlink("/proc/\(pid)/fd/\(name)", &buf, buf.count - 1)
                guard n > 0 else { continue }
                let target = String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if target.hasPrefix("socket:["), let inode = UInt64(target.dropFirst(8).dropLast()) { fds[fd] = inode }
            }
            closedir(d)
        }
        inodeByFD = fds
        let mine = Set(fds.values)
        var unix: [UInt64: String] = [:]
        if let text = readSmallFile("/proc/\(pid)/net/unix", limit: 8 << 20) {
            for line in text.split(separator: 0x0A).dropFirst() {
                let f = line.split(separator: 0x20, maxSplits: 7, omittingEmptySubsequences: true)
                // Flags 00010000 is __SO_ACCEPTCON: a listening socket.
                guard f.count == 8, let inode = UInt64(String(decoding: f[6], as: UTF8.self)), mine.contains(inode),
                      String(decoding: f[3], as: UTF8.self) == "00010000" else { continue }
                unix[inode] = String(pathBytes: f[7])
            }
        }
        unixListening = unix
        var tcp: [UInt64: Int] = [:]
        for table in wantTCP ? ["tcp", "tcp6"] : [] {
            guard let text = readSmallFile("/proc/\(pid)/net/\(table)", limit: 8 << 20) else { continue }
            for line in text.split(separator: 0x0A).dropFirst() {
                let f = line.split(separator: 0x20, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
                // st 0A is LISTEN; the local address ends in the port in hex.
                guard f.count > 9, f[3] == "0A", let inode = UInt64(f[9]), mine.contains(inode),
                      let colon = f[1].lastIndex(of: ":"), let port = Int(f[1][f[1].index(after: colon)...], radix: 16) else { continue }
                tcp[inode] = port
            }
        }
        tcpListening = tcp
    }

    /// The listening unix socket bound at `path` among the process's descriptors.
    func listeningUnix(path: String) -> MonitorAddress? {
        unixListening.values.contains(path) ? .unix(path) : nil
    }

    /// Whether one of the process's descriptors listens on TCP `port`.
    func listeningTCP(port: Int) -> Bool { tcpListening.values.contains(port) }

    /// The bound path of the listening unix socket at descriptor `fd`.
    func unixAddress(fd: Int32) -> MonitorAddress? {
        inodeByFD[fd].flatMap { unixListening[$0] }.map { .unix($0) }
    }
}
