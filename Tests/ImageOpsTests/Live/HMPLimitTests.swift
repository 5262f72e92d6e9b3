import Foundation
import Testing
@testable import ImageOps
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A human monitor that goes quiet, floods, or answers something else cannot hold imgtool: every exchange has a
/// total deadline and a size cap, and what is not understood is an error naming the command and the text.
@Suite(.serialized)
struct HMPLimitTests {
    enum Behaviour: Sendable { case silent, drip, flood, stray }

    /// A fake HMP peer on a unix socket serving one client.
    final class FakeHMP: @unchecked Sendable {
        let listener: Int32
        let done = DispatchSemaphore(value: 0)

        init(path: String, behaviour: Behaviour) throws {
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
            Thread {
                defer { done.signal() }
                let c = accept(fd, nil, nil)
                guard c >= 0 else { return }
                defer { close(c) }
                func send(_ s: [UInt8]) -> Bool { s.withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == s.count }
                if behaviour == .silent {
                    var byte: UInt8 = 0
                    _ = recv(c, &byte, 1, 0)
                    return
                }
                guard send(Array("QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ".utf8)) else { return }
                var line: [UInt8] = []
                var byte: UInt8 = 0
                while recv(c, &byte, 1, 0) == 1, byte != 0x0A { line.append(byte) }
                let end = Date().addingTimeInterval(60)
                switch behaviour {
                case .drip:
                    while Date() < end { guard send([0x78]) else { return }; usleep(5_000) }
                case .flood:
                    let block = [UInt8](repeating: 0x78, count: 65536)
                    while Date() < end { guard send(block) else { return } }
                case .stray:
                    _ = send(line + Array("\u{1b}[K\r\nunknown command: '\u{1b}]0;pwned\u{7}'\r\n(qemu) ".utf8))
                    while recv(c, &byte, 1, 0) == 1 {}
                case .silent: break
                }
            }.start()
        }

        func stop(waiting: Bool = true) { close(listener); if waiting { _ = done.wait(timeout: .now() + 60) } }
    }

    @Test func silenceIsBusyAndTheProbeIsClosed() throws {
        let dir = try TempDir("hmp-limit")
        let peer = try FakeHMP(path: dir.file("m.sock"), behaviour: .silent)
        #expect(throws: HMPClient.Error.busy(.unix(dir.file("m.sock")))) { try HMPClient.connect(.unix(dir.file("m.sock"))) }
        // The peer's read returns as soon as imgtool closed: nothing is left pending.
        #expect(peer.done.wait(timeout: .now() + 30) == .success)
        peer.stop(waiting: false)
    }

    @Test func aMonitorThatNeverPromptsTimesOut() throws {
        let dir = try TempDir("hmp-limit")
        let peer = try FakeHMP(path: dir.file("m.sock"), behaviour: .drip)
        defer { peer.stop() }
        let client = try HMPClient.connect(.unix(dir.file("m.sock")), greetingTimeoutMS: 10_000)
        client.answerTimeoutMS = 500
        let start = Date()
        #expect(throws: HMPClient.Error.timedOut(.unix(dir.file("m.sock")), command: "info block-jobs")) { try client.run("info block-jobs") }
        #expect(Date().timeIntervalSince(start) < 20)
        client.close()
    }

    @Test func aFloodIsCut() throws {
        let dir = try TempDir("hmp-limit")
        let peer = try FakeHMP(path: dir.file("m.sock"), behaviour: .flood)
        defer { peer.stop() }
        let client = try HMPClient.connect(.unix(dir.file("m.sock")), greetingTimeoutMS: 10_000)
        client.maxAnswerBytes = 1 << 20
        #expect(throws: HMPClient.Error.tooLarge(.unix(dir.file("m.sock")), command: "info block -v", limit: 1 << 20)) { try client.run("info block -v") }
        client.close()
    }

    @Test func unexpectedOutputIsAnErrorNamingCommandAndEscapedText() throws {
        let dir = try TempDir("hmp-limit")
        let peer = try FakeHMP(path: dir.file("m.sock"), behaviour: .stray)
        defer { peer.stop() }
        let client = try HMPClient.connect(.unix(dir.file("m.sock")), greetingTimeoutMS: 10_000)
        defer { client.close() }
        do {
            _ = try LiveView.jobs(hmp: client)
            Issue.record("accepted")
        } catch {
            let text = error.description
            #expect(text.contains("info block-jobs") && text.contains("unknown command"), "\(text)")
            #expect(!text.contains("\u{1b}"), "escapes reach the terminal: \(text)")
        }
        // Control bytes are never typed.
        #expect(throws: HMPClient.Error.self) { try client.run("info\tblock") }
    }
}
