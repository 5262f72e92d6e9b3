import Foundation
import Testing
@testable import ImageOps
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A monitor peer that never finishes a line, or whose line never ends, cannot hold imgtool: every exchange has a
/// total deadline and a cap on what it reads, and the error names the socket and the command. The peer is a fake
/// QMP server on a unix socket, a thread that greets properly, accepts `qmp_capabilities`, then misbehaves.
@Suite(.serialized)
struct MonitorLimitTests {
    /// How the fake peer answers the first command after the capabilities.
    enum Behaviour: Sendable { case drip, flood }

    /// Listens on `path`, serves one client, stops when the client goes (a send fails) or after `lifetime` seconds.
    final class FakePeer: @unchecked Sendable {
        let path: String
        let listener: Int32
        let thread: Thread
        let done = DispatchSemaphore(value: 0)

        init(path: String, behaviour: Behaviour, lifetime: TimeInterval = 60) throws {
            self.path = path
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ToolError("socket: \(errno)") }
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &sa.sun_path) { raw in
                let b = Array(path.utf8)
                raw.copyBytes(from: b)
                raw[b.count] = 0
            }
            let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard rc == 0, listen(fd, 1) == 0 else { close(fd); throw ToolError("bind/listen \(path): \(errno)") }
            listener = fd
            let done = self.done
            thread = Thread {
                defer { done.signal() }
                let c = accept(fd, nil, nil)
                guard c >= 0 else { return }
                defer { close(c) }
                func send(_ s: [UInt8]) -> Bool { s.withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == s.count }
                func readLine() -> Bool {
                    var byte: UInt8 = 0
                    while recv(c, &byte, 1, 0) == 1 { if byte == 0x0A { return true } }
                    return false
                }
                guard send(Array(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#.utf8) + [0x0A]),
                      readLine(), send(Array(#"{"return": {}}"#.utf8) + [0x0A]) else { return }
                let end = Date().addingTimeInterval(lifetime)
                switch behaviour {
                case .drip:
                    // One byte every 5 ms, the start of an answer that never ends.
                    let text = Array(#"{"return": [{"device": "x", "#.utf8)
                    var i = 0
                    while Date() < end {
                        guard send([text[i % text.count]]) else { return }
                        i += 1
                        usleep(5_000)
                    }
                case .flood:
                    guard readLine() else { return }
                    // As fast as the client reads: one string that never closes, nor the line.
                    guard send(Array(#"{"return": {"x": ""#.utf8)) else { return }
                    let chunk = [UInt8](repeating: 0x61, count: 65536)
                    while Date() < end { guard send(chunk) else { return } }
                }
            }
            thread.start()
        }

        /// Waits for the peer thread to end (it ends once the client closed), then removes the socket.
        func finish() {
            _ = done.wait(timeout: .now() + 120)
            close(listener)
            unlink(path)
        }
    }

    @Test func aPeerThatDripsBytesWithoutANewlineTimesOutNamingSocketAndCommand() throws {
        let dir = try TempDir("monlimit")
        let path = dir.file("drip.sock")
        let peer = try FakePeer(path: path, behaviour: .drip)
        defer { peer.finish() }
        // The greeting's own wait is generous: on a loaded machine a thread can wait long for a CPU.
        let client = try QMPClient.connect(.unix(path), greetingTimeoutMS: 30_000)
        client.answerTimeoutMS = 1000
        let start = Date()
        #expect(throws: QMPClient.Error.timedOut(.unix(path), command: "query-block-jobs")) {
            try client.execute("query-block-jobs")
        }
        // Bounded by the exchange's deadline, not by the peer: it would drip for a minute. The margin is for load.
        #expect(Date().timeIntervalSince(start) < 30, "took \(Date().timeIntervalSince(start)) s")
        let message = QMPClient.Error.timedOut(.unix(path), command: "query-block-jobs").description
        #expect(message.contains(path) && message.contains("query-block-jobs"))
        // The session is out of step now: nothing more is sent on it, the next command fails at once.
        #expect(throws: QMPClient.Error.self) { try client.execute("query-status") }
        client.close()
    }

    @Test func aPeerWhoseAnswerNeverEndsIsCutAtTheCap() throws {
        let dir = try TempDir("monlimit")
        let path = dir.file("flood.sock")
        let peer = try FakePeer(path: path, behaviour: .flood)
        defer { peer.finish() }
        let client = try QMPClient.connect(.unix(path), greetingTimeoutMS: 30_000)
        client.maxAnswerBytes = 4 << 20
        #expect(throws: QMPClient.Error.tooLarge(.unix(path), command: "query-named-block-nodes", limit: 4 << 20)) {
            try client.execute("query-named-block-nodes")
        }
        let message = QMPClient.Error.tooLarge(.unix(path), command: "query-named-block-nodes", limit: 4 << 20).description
        #expect(message.contains(path) && message.contains("query-named-block-nodes"))
        client.close()
    }

    /// Waiting for an event has the same bound: a peer that drips an event line forever ends the wait at its
    /// deadline (nil: nothing whole came), and the command after it times out, never hangs.
    @Test func waitingForAnEventEndsAtItsDeadline() throws {
        let dir = try TempDir("monlimit")
        let path = dir.file("event.sock")
        let peer = try FakePeer(path: path, behaviour: .drip)
        defer { peer.finish() }
        let client = try QMPClient.connect(.unix(path), greetingTimeoutMS: 30_000)
        client.answerTimeoutMS = 1000
        let start = Date()
        #expect(try client.waitForEvent(timeoutMS: 1000) { _ in true } == nil)
        #expect(throws: QMPClient.Error.timedOut(.unix(path), command: "query-block-jobs")) { try client.execute("query-block-jobs") }
        #expect(Date().timeIntervalSince(start) < 30, "took \(Date().timeIntervalSince(start)) s")
        client.close()
    }
}
