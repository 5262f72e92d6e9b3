import Foundation
import Testing
import Synchronization
@testable import ImageOps
import TestSupport

/// `who`, `chain --live` and the live changes against a QEMU with human monitors only, started as qemu-init starts
/// its guests (`-monitor tcp:127.0.0.1:PORT,server=on,wait=off`, and a command port beside it). After each change
/// the guest writes through the VM, and once the VM stops the chain opens with qemu-img and shows the guest the
/// bytes it wrote.
@Suite(.serialized)
struct HMPLiveTests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("hmp-live")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
    }

    func f(_ name: String) -> String { dir.file(name) }
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: dir.path, environment: env) }
    func json(_ r: RunResult) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "not JSON: \(r.stdout)\(r.stderr)")
    }

    func makeChain() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 2M", "base.raw"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x70 1M 1M", "top.qcow2"], cwd: dir.path)
    }

    /// The guest writes 64 KiB of `pattern` at `offset` (HMP qemu-io on the drive), and the expected bytes follow.
    func guestWrite(_ vm: TestVM, _ expected: ExpectedDisk, _ monitors: [MonitorAddress], pattern: UInt8, offset: Int) throws {
        try vm.waitUntilIdle(monitors)
        let out = try vm.hmpCommand("qemu-io d0 \"write -P 0x\(String(pattern, radix: 16)) \(offset) 64k\"")
        #expect(!out.lowercased().contains("error"), "\(out)")
        try expected.write(pattern: pattern, offset: offset, length: 65536)
        try vm.waitUntilIdle(monitors)
    }

    @Test func qemuInitStyleWhoChainOverlayCommitFlatten() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .drive("top.qcow2"), cwd: dir.path)
        defer { vm.stop() }
        let port = monitors[0].description

        let who = try imgtool("who", "top.qcow2", "--output", "json")
        #expect(who.status == 2)
        let monitor = (try json(who)["holders"] as? [[String: Any]])?.first?["monitor"] as? [String: String]
        #expect(monitor == ["kind": "hmp", "address": port, "state": "free"])
        try vm.waitUntilIdle(monitors)
        let whoHuman = try imgtool("who", "top.qcow2")
        #expect(whoHuman.stdout.contains("monitor: hmp \(port) (free)") && !whoHuman.stdout.contains("moved"), "\(whoHuman.stdout)")
        try vm.waitUntilIdle(monitors)

        let chain = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(chain.status == 0, "\(chain.stdout)\(chain.stderr)")
        let chainJSON = try json(chain)
        #expect(chainJSON["monitor-kind"] as? String == "hmp")
        #expect(chainJSON["monitor"] as? String == port)
        let layers = try #require((chainJSON["live"] as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(layers.compactMap { $0["format"] as? String } == ["qcow2", "raw"])
        #expect(layers.compactMap { $0["read-only"] as? Bool } == [false, true])
        #expect((chainJSON["differences"] as? [Any])?.isEmpty == true)
        try vm.waitUntilIdle(monitors)
        let human = try imgtool("chain", "top.qcow2", "--live")
        #expect(human.stdout.contains("HMP monitor \(port)") && !human.stdout.contains("moved"), "\(human.stdout)")
        try vm.waitUntilIdle(monitors)

        // What HMP cannot do safely is refused naming -qmp, and nothing changes.
        let digests = try ["top.qcow2", "base.raw"].map { try fileDigest(f($0)) }
        let fix = try imgtool("fix-backing", "top.qcow2", "--to", "base.raw", "--live")
        #expect(fix.status == 1 && fix.stderr.contains("-qmp"), "\(fix.stderr)")
        #expect(try ["top.qcow2", "base.raw"].map { try fileDigest(f($0)) } == digests)
        try vm.waitUntilIdle(monitors)

        let overlay = try imgtool("overlay", "top.qcow2", "snap.qcow2", "--live")
        #expect(overlay.status == 0, "\(overlay.stderr)")
        #expect(overlay.stdout.contains("switched disk d0") && overlay.stdout.contains("snapshot_blkdev"), "\(overlay.stdout)")
        // -U: the running VM holds the write lock.
        let snapText = try QemuImg.run(["info", "-U", "--output=json", f("snap.qcow2")])
        let snapInfo = try #require(try JSONSerialization.jsonObject(with: Data(snapText.utf8)) as? [String: Any])
        #expect(snapInfo["backing-filename"] as? String == "top.qcow2", "the relative name qemu-img wrote is kept")
        try guestWrite(vm, expected, monitors, pattern: 0x5a, offset: 0)

        let beforeMiddle = try ["snap.qcow2", "top.qcow2", "base.raw"].map { try fileDigest(f($0)) }
        let middle = try imgtool("commit", "top.qcow2", "--live")
        #expect(middle.status == 1 && middle.stderr.contains("-qmp"), "\(middle.stderr)")
        #expect(try ["snap.qcow2", "top.qcow2", "base.raw"].map { try fileDigest(f($0)) } == beforeMiddle)
        try vm.waitUntilIdle(monitors)

        let commit = try imgtool("commit", "snap.qcow2", "--live")
        #expect(commit.status == 0, "\(commit.stderr)")
        #expect(commit.stdout.contains("still runs on snap.qcow2, now empty"), "\(commit.stdout)")
        try guestWrite(vm, expected, monitors, pattern: 0x5b, offset: 1 << 20)

        let flatten = try imgtool("rebase", "snap.qcow2", "--flatten", "--live")
        #expect(flatten.status == 0, "\(flatten.stderr)")
        #expect(flatten.stdout.contains("it has no backing file now"), "\(flatten.stdout)")
        try guestWrite(vm, expected, monitors, pattern: 0x5c, offset: 3 << 20)

        let after = try imgtool("chain", "snap.qcow2", "--live", "--output", "json")
        #expect(after.status == 0, "\(after.stdout)\(after.stderr)")
        #expect(((try json(after)["live"] as? [String: Any])?["layers"] as? [Any])?.count == 1)
        vm.stop()
        try QemuImg.run(["check", f("snap.qcow2")])
        try QemuImg.run(["check", f("top.qcow2")])
        let info = try #require(try QemuImg.info(f("snap.qcow2")) as? [String: Any])
        #expect(info["backing-filename"] == nil)
        try expected.check(f("snap.qcow2"))
    }

    @Test func aBusyMonitorPortFallsThroughToTheCommandPortAndBothBusyIsRefused() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .drive("top.qcow2"), ports: 2, cwd: dir.path)
        defer { vm.stop() }
        let first = try MonitorHolder(monitors[0])
        defer { first.close() }

        let chain = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(chain.status == 0, "\(chain.stdout)\(chain.stderr)")
        #expect(try json(chain)["monitor"] as? String == monitors[1].description)
        try vm.waitUntilIdle([monitors[1]])
        let overlay = try imgtool("overlay", "top.qcow2", "snap.qcow2", "--live")
        #expect(overlay.status == 0, "\(overlay.stderr)")
        try vm.waitUntilIdle([monitors[1]])
        let w = try vm.hmpCommand("qemu-io d0 \"write -P 0x5a 0 64k\"")
        #expect(!w.lowercased().contains("error"))
        try expected.write(pattern: 0x5a, offset: 0, length: 65536)
        try vm.waitUntilIdle([monitors[1]])

        // Both held: refused, naming both, and nothing changed.
        let second = try MonitorHolder(monitors[1])
        defer { second.close() }
        let digests = try ["snap.qcow2", "top.qcow2", "base.raw"].map { try fileDigest(f($0)) }
        let refused = try imgtool("commit", "snap.qcow2", "--live")
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("busy") && refused.stderr.contains(monitors[0].description) && refused.stderr.contains(monitors[1].description), "\(refused.stderr)")
        #expect(try ["snap.qcow2", "top.qcow2", "base.raw"].map { try fileDigest(f($0)) } == digests)
        second.close()
        first.close()
        vm.stop()
        try QemuImg.run(["check", f("snap.qcow2")])
        try expected.check(f("snap.qcow2"))
    }

    /// A monitor whose client is connected is not even probed: a probe made then waits in the listener's queue
    /// (closed, in CLOSE-WAIT) until that client leaves, and QEMU then takes it for its next client. After the
    /// refusal the kernel shows on the monitor's port only the listener and the holder's connection.
    @Test func aHeldMonitorIsNotProbedSoNoConnectionIsLeftQueued() throws {
        try makeChain()
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .drive("top.qcow2"), cwd: dir.path)
        defer { vm.stop() }
        guard case .tcp(_, let port) = monitors[0] else { Issue.record("not TCP"); return }
        let holder = try MonitorHolder(monitors[0])
        defer { holder.close() }
        let digests = try ["top.qcow2", "base.raw"].map { try fileDigest(f($0)) }
        let refused = try imgtool("overlay", "top.qcow2", "snap.qcow2", "--live")
        #expect(refused.status == 1 && refused.stderr.contains("busy"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: f("snap.qcow2")))
        #expect(try ["top.qcow2", "base.raw"].map { try fileDigest(f($0)) } == digests)
        let hex = String(format: ":%04X", port)
        // Read to the end as imgtool does (procfs reports size 0; a busy machine's table is many pages).
        let table = String(decoding: readSmallFile("/proc/net/tcp", limit: 64 << 20) ?? [], as: UTF8.self)
        var states: [String] = []
        for line in table.split(separator: "\n").dropFirst() {
            let fields: [Substring] = line.split(separator: " ")
            if fields.count > 3 && fields[1].hasSuffix(hex) { states.append(String(fields[3])) }
        }
        states.sort()
        #expect(states == ["01", "0A"], "sockets on the monitor's port (01 established, 0A listening, 08 a closed probe left queued): \(states)")
        holder.close()
        try vm.waitUntilIdle(monitors)
        vm.stop()
        try QemuImg.run(["check", f("top.qcow2")])
    }

    /// The kernel's view of a unix monitor: connected while a client holds it, not for the idle QMP socket beside
    /// it, and not once the client left; a path no socket is bound to is unknown.
    @Test func aHeldUnixMonitorIsSeenWithoutAProbe() throws {
        try makeChain()
        let vm = try TestVM(dir: dir.path, .drive("top.qcow2"), cwd: dir.path)
        defer { vm.stop() }
        #expect(MonitorSocket.clientConnected(.unix(vm.hmp)) == false)
        let holder = try MonitorHolder(.unix(vm.hmp))
        #expect(MonitorSocket.clientConnected(.unix(vm.hmp)) == true)
        #expect(MonitorSocket.clientConnected(.unix(vm.qmp)) == false)
        #expect(MonitorSocket.clientConnected(.unix(f("nothing.sock"))) == nil)
        holder.close()
        try vm.waitUntilMonitorIdle(vm.hmp)
        #expect(MonitorSocket.clientConnected(.unix(vm.hmp)) == false)
    }

    /// QEMU 7.2's HMP `commit` cannot make a qcow2 backing file of a `-drive` writable ("'commit' error for 'd0':
    /// Permission denied", before it copies anything): the refusal says so and names `-qmp`, and nothing changed.
    @Test func anHMPCommitQEMURefusesNamesQMPAndChangesNothing() throws {
        try QemuImg.run(["create", "-q", "-f", "qcow2", "mid.qcow2", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x31 0 1M", "mid.qcow2"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x32 1M 1M", "top.qcow2"], cwd: dir.path)
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .drive("top.qcow2"), cwd: dir.path)
        defer { vm.stop() }
        let digests = try ["top.qcow2", "mid.qcow2"].map { try fileDigest(f($0)) }
        let commit = try imgtool("commit", "top.qcow2", "--live")
        #expect(commit.status == 1, "\(commit.stdout)\(commit.stderr)")
        if commit.status == 1 {
            #expect(commit.stderr.contains("-qmp") && commit.stderr.contains("nothing was changed"), "\(commit.stderr)")
            #expect(try ["top.qcow2", "mid.qcow2"].map { try fileDigest(f($0)) } == digests)
        }
        try vm.waitUntilIdle(monitors)
        vm.stop()
        try QemuImg.run(["check", f("top.qcow2")])
        try expected.check(f("top.qcow2"))
    }

    /// Ctrl-C during an HMP stream: imgtool has QEMU cancel the job (`block_job_cancel -f`) and exits 130; the disk
    /// goes on running on the chain it had, no job is left, and the chain opens with qemu-img once the VM stops.
    @Test func sigintDuringAnHMPStreamCancelsTheJob() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .drive("top.qcow2"), cwd: dir.path)
        defer { vm.stop() }
        let connection = try LiveSession.connect(f("top.qcow2"), virsh: { $0 })
        guard case .hmp(let session) = connection else { Issue.record("not served through HMP"); return }
        var signalled = false
        // A SIGINT recorded for this test's task only: a real one, or a store into the guard's own flag, would
        // interrupt the changes of the suites running beside this one.
        let simulated = ChildGuard.Simulated()
        ChildGuard.$simulated.withValue(simulated) {
            #expect {
                // 64 KiB/s: the 2 MiB of backing data take half a minute; the interruption comes with the first report.
                _ = try session.flatten(f("top.qcow2"), speed: 64 << 10) { _ in
                    guard !signalled else { return }
                    signalled = true
                    // Recorded as the guard's handler records a SIGINT (see LiveChangeTests: a raised one is shared).
                    simulated.signal.store(SIGINT, ordering: .sequentiallyConsistent)
                }
            } throws: { error in
                guard let e = error as? LiveError, case .interrupted(_, let sig, let detail) = e else { return false }
                return sig == SIGINT && e.exitCode == 130 && detail.contains("cancelled")
            }
        }
        #expect(signalled)
        #expect(try session.jobs().isEmpty, "a job is left in QEMU")
        #expect(try session.view().devices.first?.layers.count == 2)
        session.close()
        try vm.waitUntilIdle(monitors)
        try guestWrite(vm, expected, monitors, pattern: 0x5a, offset: 2 << 20)
        vm.stop()
        try QemuImg.run(["check", f("top.qcow2")])
        let layers = try #require(try QemuImg.info(f("top.qcow2"), chain: true) as? [[String: Any]])
        #expect(layers.count == 2)
        try expected.check(f("top.qcow2"))
    }

    @Test func qmpIsPreferredAndABusyQMPMonitorFallsThroughToHMP() throws {
        try makeChain()
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }
        let both = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(try json(both)["monitor-kind"] as? String == "qmp")
        try vm.waitUntilIdle([.unix(vm.qmp), .unix(vm.hmp)])
        let holder = try QMPClient.connect(.unix(vm.qmp))
        defer { holder.close() }
        let hmp = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(hmp.status == 0, "\(hmp.stderr)")
        #expect(try json(hmp)["monitor-kind"] as? String == "hmp")
        #expect(try json(hmp)["monitor"] as? String == vm.hmp)
        holder.close()
        try vm.waitUntilIdle([.unix(vm.qmp)])
        // A QMP monitor is no human one, said at once (not after an answer's deadline).
        let start = Date()
        #expect {
            _ = try HMPClient.connect(.unix(vm.qmp), greetingTimeoutMS: 10_000)
        } throws: { error in
            guard case .notHMP(_, let greeting)? = error as? HMPClient.Error else { return false }
            return greeting.hasPrefix(#"{"QMP""#)
        }
        #expect(Date().timeIntervalSince(start) < 15)
    }

    /// libvirt's way of attaching disks (named `-blockdev` nodes, no drive name) seen through HMP: the chain with real
    /// paths (not QEMU's `json:{…}` pseudo-name) and no stray node; what HMP finds by drive name only is refused;
    /// `block_stream` takes the node name.
    @Test func blockdevDisksThroughHMP() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .blockdev([(f("top.qcow2"), "qcow2"), (f("base.raw"), "raw")]))
        defer { vm.stop() }
        let chain = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(chain.status == 0, "\(chain.stdout)\(chain.stderr)")
        let live = try #require((try json(chain)["live"] as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(live.compactMap { $0["filename"] as? String } == [f("top.qcow2"), f("base.raw")])
        #expect(live.compactMap { $0["node-name"] as? String } == ["n0", "n1"])
        #expect((try json(chain)["stray-nodes"] as? [Any])?.isEmpty == true)
        try vm.waitUntilIdle(monitors)
        let digests = try ["top.qcow2", "base.raw"].map { try fileDigest(f($0)) }
        let overlay = try imgtool("overlay", "top.qcow2", "snap.qcow2", "--live")
        #expect(overlay.status == 1 && overlay.stderr.contains("-qmp"), "\(overlay.stderr)")
        #expect(!FileManager.default.fileExists(atPath: f("snap.qcow2")))
        #expect(try ["top.qcow2", "base.raw"].map { try fileDigest(f($0)) } == digests)
        try vm.waitUntilIdle(monitors)
        let flatten = try imgtool("rebase", "top.qcow2", "--flatten", "--live")
        #expect(flatten.status == 0, "\(flatten.stderr)")
        try vm.waitUntilIdle(monitors)
        try vm.guestWrite(pattern: 0x5a, offset: 0, length: 65536)
        try expected.write(pattern: 0x5a, offset: 0, length: 65536)
        vm.stop()
        try QemuImg.run(["check", f("top.qcow2")])
        #expect((try QemuImg.info(f("top.qcow2")) as? [String: Any])?["backing-filename"] == nil)
        try expected.check(f("top.qcow2"))
    }

    /// A backing name with a line break is printed raw by HMP and could add lines of its own to `info block`: such a
    /// chain is refused through HMP, and nothing changes.
    @Test func aLineBreakInABackingNameIsRefusedThroughHMP() throws {
        let base = "base\nimage: evil.raw"
        #expect(FileManager.default.createFile(atPath: f(base), contents: Data(count: 4 << 20)))
        // "./": a colon before any slash would read as a protocol prefix to QEMU.
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "./" + base, "-F", "raw", "top.qcow2"], cwd: dir.path)
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .drive("top.qcow2"), cwd: dir.path)
        defer { vm.stop() }
        let digests = try ["top.qcow2", base].map { try fileDigest(f($0)) }
        let chain = try imgtool("chain", "top.qcow2", "--live")
        #expect(chain.status == 1 && chain.stderr.contains("control character"), "\(chain.stdout)\(chain.stderr)")
        try vm.waitUntilIdle(monitors)
        let commit = try imgtool("commit", "top.qcow2", "--live")
        #expect(commit.status == 1 && commit.stderr.contains("-qmp"), "\(commit.stderr)")
        vm.stop()
        #expect(try ["top.qcow2", base].map { try fileDigest(f($0)) } == digests)
    }

    @Test func telnetAndUnixHumanMonitorsServeChainLive() throws {
        try makeChain()
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .drive("top.qcow2"), telnet: true, cwd: dir.path)
        defer { vm.stop() }
        let telnet = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(telnet.status == 0, "\(telnet.stdout)\(telnet.stderr)")
        #expect(try json(telnet)["monitor"] as? String == monitors[0].description)
        vm.stop()

        let unixVM = try TestVM(dir: dir.path, .drive(f("top.qcow2")), qmp: false, name: "unix")
        defer { unixVM.stop() }
        let unix = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(unix.status == 0, "\(unix.stdout)\(unix.stderr)")
        #expect(try json(unix)["monitor"] as? String == unixVM.hmp)
        #expect(try json(unix)["monitor-kind"] as? String == "hmp")
    }
}
