import Foundation
@testable import ImageOps
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// QEMUs started qemu-init style: human monitors on TCP ports only (a monitor port and, with `commandPort`, a second
/// one as qemu-init's command port at +100), or one telnet monitor. Ports are free ones the kernel picked (bound to
/// port 0 and released); when another process takes one before QEMU binds it, QEMU fails to start and the start is
/// retried with new ports: no fixed numbers.
enum HMPTestVM {
    /// Two distinct free TCP ports on 127.0.0.1.
    static func freePorts(_ count: Int) throws -> [Int] {
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ToolError("socket: \(errno)") }
            fds.append(fd)
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = 0
            sa.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard rc == 0 else { throw ToolError("bind: \(errno)") }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            ports.append(Int(UInt16(bigEndian: sa.sin_port)))
        }
        return ports
    }

    /// A QEMU whose only monitors are HMP on TCP (`telnet` makes the first one a telnet monitor). Returns the VM and
    /// its monitor addresses in command-line order.
    static func start(dir: String, _ style: TestVM.Style, ports count: Int = 1, telnet: Bool = false, cwd: String? = nil) throws -> (TestVM, [MonitorAddress]) {
        var lastError: Error?
        for _ in 0..<8 {
            let ports = try freePorts(count)
            let addresses = ports.map { MonitorAddress.tcp(host: "127.0.0.1", port: $0) }
            var args: [String] = []
            for (n, p) in ports.enumerated() {
                args += ["-monitor", "\(telnet && n == 0 ? "telnet" : "tcp"):127.0.0.1:\(p),server=on,wait=off"]
            }
            do {
                let vm = try TestVM(dir: dir, style, monitors: args, hmpAddress: addresses.last, cwd: cwd)
                return (vm, addresses)
            } catch { lastError = error }
        }
        throw lastError ?? ToolError("QEMU did not start")
    }
}

extension TestVM {
    /// Waits until QEMU has dropped every client of the TCP monitor on `port` (no socket with that local port but
    /// the listener): a client that closed is not gone for QEMU until its main loop sees the hang-up, and the next
    /// client before that would find the monitor busy.
    func waitUntilTCPMonitorIdle(_ port: Int) throws {
        let hex = String(format: ":%04X", port)
        let until = Date().addingTimeInterval(60)
        while Date() < until {
            let table = String(decoding: readSmallFile("/proc/net/tcp", limit: 64 << 20) ?? [], as: UTF8.self)
            let mine = table.split(separator: "\n").dropFirst().filter { line in
                let f = line.split(separator: " ")
                return f.count > 3 && f[1].hasSuffix(hex) && f[3] != "0A"
            }
            if mine.isEmpty { return }
            usleep(5_000)
        }
        throw ToolError("QEMU kept a client connection on port \(port) for a minute")
    }

    /// Waits until every monitor in `addresses` is free for the next client.
    func waitUntilIdle(_ addresses: [MonitorAddress]) throws {
        for a in addresses {
            switch a {
            case .tcp(_, let port): try waitUntilTCPMonitorIdle(port)
            case .unix(let path): try waitUntilMonitorIdle(path)
            }
        }
    }
}

/// A client holding a monitor: connected, banner read, kept open until `close` (the busy case).
final class MonitorHolder {
    let socket: MonitorSocket
    init(_ address: MonitorAddress) throws {
        socket = try MonitorSocket.connect(address, timeoutMS: 5000)
        var got: [UInt8] = []
        let until = Date().addingTimeInterval(60)
        while !String(decoding: got, as: UTF8.self).hasSuffix("(qemu) ") {
            guard Date() < until else { throw ToolError("no banner from \(address)") }
            got += try socket.readSome(timeoutMS: 1000).filter { $0 < 0x80 }
        }
    }
    func close() { socket.close() }
}
