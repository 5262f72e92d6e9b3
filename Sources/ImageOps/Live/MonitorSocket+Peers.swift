import QCow2

extension MonitorSocket {
    /// True when the kernel shows a client connected to the monitor at `address` (QEMU's side of the connection:
    /// a TCP socket on the monitor's port that is established or being established, or a connected unix socket on
    /// the monitor's path); false when it shows none; nil when it cannot tell. A chardev monitor serves one client:
    /// a connection made while it has one waits in the listener's queue until that client leaves, and one closed
    /// there stays queued too, so a probe must not be made at all then. A client that arrives after this check is
    /// still found by the probe's silent greeting.
    static func clientConnected(_ address: MonitorAddress) -> Bool? {
        switch address {
        case .tcp(_, let port):
            var seen = false
            for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
                guard let bytes = readSmallFile(table, limit: 64 << 20) else { continue }
                seen = true
                for line in bytes.split(separator: 0x0A).dropFirst() {
                    let fields = line.split(separator: 0x20)
                    // sl local_address rem_address st …; the port is hex after the last colon; st 01 ESTABLISHED,
                    // 03 SYN_RECV.
                    guard fields.count > 3, let colon = fields[1].lastIndex(of: UInt8(ascii: ":")),
                          let local = Int(String(decoding: fields[1][(colon + 1)...], as: UTF8.self), radix: 16), local == port else { continue }
                    let state = String(decoding: fields[3], as: UTF8.self)
                    if state == "01" || state == "03" { return true }
                }
            }
            return seen ? false : nil
        case .unix(let path):
            guard let bytes = readSmallFile("/proc/net/unix", limit: 64 << 20) else { return nil }
            var listener = false
            let want = Array(path.pathBytes)
            for line in bytes.split(separator: 0x0A).dropFirst() {
                // Num RefCount Protocol Flags Type St Inode Path: St 01 unconnected (the listener), 03 connected.
                let fields = line.split(separator: 0x20, maxSplits: 7)
                guard fields.count == 8, Array(fields[7]) == want else { continue }
                if fields[5].elementsEqual("03".utf8) { return true }
                listener = true
            }
            return listener ? false : nil
        }
    }
}
