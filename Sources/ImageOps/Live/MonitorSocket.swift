import Glibc
import QCow2

/// Where a QEMU monitor listens: a unix socket path or a TCP host and port.
public enum MonitorAddress: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// A unix socket at this path.
    case unix(String)
    /// A TCP listener.
    case tcp(host: String, port: Int)

    /// The address as the user writes it: the socket path, or `host:port`.
    public var description: String {
        switch self {
        case .unix(let path): return path
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

/// A connected stream socket with a deadline on every read and write and a cap on a line's size: a monitor that
/// goes quiet, or talks forever without finishing a line, must never hang imgtool nor fill its memory.
final class MonitorSocket {
    /// Why a socket operation failed; each case names the address.
    enum Error: Swift.Error, Sendable, Equatable {
        case connect(MonitorAddress, String)
        /// The listener's queue is full: clients (or closed probes) wait there until the connected client leaves.
        case queueFull(MonitorAddress)
        case timedOut(MonitorAddress, String)
        /// A line grew past the cap without ending.
        case tooLarge(MonitorAddress, Int)
        case closed(MonitorAddress)
        case io(MonitorAddress, String)
    }

    let address: MonitorAddress
    private var fd: Int32
    /// A TCP connection: every read is acknowledged at once (see `acknowledge`).
    private var tcp: Bool { if case .tcp = address { return true }; return false }
    private var buffer: [UInt8] = []

    private init(fd: Int32, address: MonitorAddress) { self.fd = fd; self.address = address }
    deinit { close() }

    /// Closes the connection now (idempotent): a probe must not stay queued at QEMU's monitor.
    func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }

    /// Connects without blocking longer than `timeoutMS`.
    static func connect(_ address: MonitorAddress, timeoutMS: Int32) throws(Error) -> MonitorSocket {
        switch address {
        case .unix(let path):
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            let bytes = path.pathBytes
            let capacity = MemoryLayout.size(ofValue: sa.sun_path)
            guard bytes.count < capacity else { throw .connect(address, "socket path is longer than \(capacity - 1) bytes") }
            withUnsafeMutableBytes(of: &sa.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw .connect(address, errnoText()) }
            let s = MonitorSocket(fd: fd, address: address)
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            // A unix connect either completes or fails at once (EAGAIN: the listener's queue is full, as busy as it gets).
            guard rc == 0 else { throw errno == EAGAIN ? .queueFull(address) : .connect(address, errnoText()) }
            return s
        case .tcp(let host, let port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_NUMERICSERV
            var list: UnsafeMutablePointer<addrinfo>?
            let gai = getaddrinfo(host, String(port), &hints, &list)
            guard gai == 0, let first = list else { throw .connect(address, String(cString: gai_strerror(gai))) }
            defer { freeaddrinfo(list) }
            let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw .connect(address, errnoText()) }
            let s = MonitorSocket(fd: fd, address: address)
            if Glibc.connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else { throw .connect(address, errnoText()) }
                guard try s.wait(POLLOUT, timeoutMS) else { throw .timedOut(address, "connecting") }
                var soError: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                guard soError == 0 else { throw .connect(address, String(cString: strerror(soError))) }
            }
            return s
        }
    }

    /// Waits until the socket is ready for `events`; false when the time ran out.
    private func wait(_ events: Int32, _ timeoutMS: Int32) throws(Error) -> Bool {
        var p = pollfd(fd: fd, events: Int16(events), revents: 0)
        while true {
            let rc = poll(&p, 1, timeoutMS)
            if rc < 0 && errno == EINTR { continue }
            guard rc >= 0 else { throw .io(address, errnoText()) }
            return rc > 0
        }
    }

    /// Sends every byte of `bytes`.
    func send(_ bytes: [UInt8], timeoutMS: Int32) throws(Error) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                guard try wait(POLLOUT, timeoutMS) else { throw .timedOut(address, "sending") }
                continue
            }
            throw .io(address, errnoText())
        }
    }

    /// The next line (without its newline), or nil when no complete line arrived by `deadline` (milliseconds on
    /// `Clock`). The deadline is for the whole line: a peer that sends a byte now and then and never a newline
    /// cannot keep imgtool waiting. A line longer than `maxBytes` throws `.tooLarge`: memory stays bounded.
    func readLine(deadline: Int64, maxBytes: Int) throws(Error) -> [UInt8]? {
        var searched = 0
        while true {
            if let nl = buffer[searched...].firstIndex(of: 0x0A) {
                guard nl <= maxBytes else { throw .tooLarge(address, maxBytes) }
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                return line
            }
            searched = buffer.count
            guard buffer.count <= maxBytes else { throw .tooLarge(address, maxBytes) }
            let left = deadline - Clock.now
            guard left > 0, try wait(POLLIN, Int32(clamping: left)) else { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            acknowledge()
            if n == 0 { throw .closed(address) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw .io(address, errnoText())
            }
            buffer.append(contentsOf: chunk[..<n])
        }
    }

    /// `readLine(deadline:maxBytes:)` with a deadline `timeoutMS` from now.
    func readLine(timeoutMS: Int32, maxBytes: Int) throws(Error) -> [UInt8]? {
        try readLine(deadline: Clock.now + Int64(timeoutMS), maxBytes: maxBytes)
    }

    /// Reads whatever arrives first within `timeoutMS` (a greeting that may not end in a newline, like HMP's prompt).
    func readSome(timeoutMS: Int32) throws(Error) -> [UInt8] {
        if !buffer.isEmpty { defer { buffer = [] }; return buffer }
        guard try wait(POLLIN, timeoutMS) else { return [] }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        acknowledge()
        guard n > 0 else { return [] }
        return Array(chunk[..<n])
    }

    /// The bytes that arrive next (the buffered ones first), or nil when none came by `deadline` (milliseconds on
    /// `Clock`). A peer that closed throws `.closed`: unlike `readSome`, silence and an end are told apart.
    func readAvailable(deadline: Int64) throws(Error) -> [UInt8]? {
        if !buffer.isEmpty { defer { buffer = [] }; return buffer }
        while true {
            let left = deadline - Clock.now
            guard left > 0, try wait(POLLIN, Int32(clamping: left)) else { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            acknowledge()
            if n == 0 { throw .closed(address) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw .io(address, errnoText())
            }
            return Array(chunk[..<n])
        }
    }

    /// Acknowledges what was read at once (TCP_QUICKACK, which the kernel clears again, hence after every read).
    /// QEMU's monitor sockets keep Nagle's algorithm on and HMP's readline echoes in many small writes: each waited
    /// for the acknowledgement the kernel here delays by up to 40 ms, 130 ms for `info block` where 1.4 ms do.
    private func acknowledge() {
        guard tcp, fd >= 0 else { return }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Puts bytes back in front of the buffer (after `readSome` read a greeting line plus more).
    func unread(_ bytes: [UInt8]) { buffer = bytes + buffer }
}

/// Milliseconds on the monotonic clock.
enum Clock {
    static var now: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }
