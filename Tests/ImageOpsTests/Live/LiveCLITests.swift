import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// The `--live` commands and `who` end to end through the built binary, against a real QEMU.
@Suite(.serialized)
struct LiveCLITests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("live-cli")
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

    @Test func whoChainOverlayCommitLiveAndTheBusyRefusal() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }

        let who = try imgtool("who", "top.qcow2", "--output", "json")
        #expect(who.status == 2)
        let holders = try #require(try json(who)["holders"] as? [[String: Any]])
        let monitor = try #require(holders.first?["monitor"] as? [String: String])
        #expect(monitor == ["kind": "qmp", "address": vm.qmp, "state": "free"])
        let whoHuman = try imgtool("who", "top.qcow2")
        #expect(whoHuman.stdout.contains("monitor: qmp \(vm.qmp) (free)"))

        let chain = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(chain.status == 0, "\(chain.stderr)")
        let chainJSON = try json(chain)
        #expect(chainJSON["healthy"] as? Bool == true)
        #expect(((chainJSON["live"] as? [String: Any])?["layers"] as? [Any])?.count == 2)
        #expect((chainJSON["differences"] as? [Any])?.isEmpty == true)

        // Without --live the change is refused, and the refusal says --live exists.
        let offline = try imgtool("commit", "top.qcow2")
        #expect(offline.status == 1)
        #expect(offline.stderr.contains("--live"))

        let overlay = try imgtool("overlay", "top.qcow2", "--live")
        #expect(overlay.status == 0, "\(overlay.stderr)")
        #expect(overlay.stdout.contains("switched disk d0"))
        try vm.guestWrite(pattern: 0x21, offset: 3 << 20, length: 65536)
        try expected.write(pattern: 0x21, offset: 3 << 20, length: 65536)

        // A second client holds the monitor: refused within a second, naming PID and socket; the first keeps working.
        // Both monitors held (the QMP one and the human one: a busy monitor is passed over for the next).
        let holder = try QMPClient.connect(.unix(vm.qmp))
        let hmpHolder = try MonitorHolder(.unix(vm.hmp))
        let start = Date()
        let busy = try imgtool("commit", "top.cow", "--live")
        // Without waiting for an answer's deadline (30 s): the probe's silence (300 ms) is the refusal. The bound
        // leaves a loaded machine room to start imgtool; what it catches is a wait for the answer deadline.
        #expect(Date().timeIntervalSince(start) < 15)
        #expect(busy.status == 1)
        #expect(busy.stderr.contains("busy") && busy.stderr.contains("PID \(vm.pid)") && busy.stderr.contains(vm.qmp))
        #expect(FileManager.default.fileExists(atPath: f("top.cow")))
        #expect((try holder.execute("query-status"))["status"]?.string == "prelaunch")
        holder.close()
        hmpHolder.close()
        try vm.waitUntilMonitorIdle(vm.qmp)
        try vm.waitUntilMonitorIdle(vm.hmp)

        let commit = try imgtool("commit", "top.cow", "--live")
        #expect(commit.status == 0, "\(commit.stderr)")
        #expect(commit.stdout.contains("closed nodes no longer in any chain: imgtool-1, imgtool-1-file"))
        let after = try imgtool("chain", "top.qcow2", "--live")
        #expect(after.status == 0)
        #expect(!after.stdout.contains("top.cow"))
        vm.stop()
        let layers = try #require(try QemuImg.info(f("top.qcow2"), chain: true) as? [[String: Any]])
        #expect(layers.count == 2)
        try QemuImg.run(["check", f("top.qcow2")])
        try expected.check(f("top.qcow2"))
    }

    @Test func commitLiveRefusesWhenAnotherImageUsesTheBaseUnlessForced() throws {
        try makeChain()
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "sibling.qcow2"], cwd: dir.path)
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }
        let before = try fileDigest(f("base.raw"))
        let refused = try imgtool("commit", "top.qcow2", "--live")
        #expect(refused.status == 1)
        #expect(refused.stderr.contains(f("sibling.qcow2")) && refused.stderr.contains("--force"))
        #expect(try fileDigest(f("base.raw")) == before)
        let forced = try imgtool("commit", "top.qcow2", "--live", "--force")
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(forced.stderr.contains("warning: --force: \(f("sibling.qcow2")) was backed by a layer that changed"))
        vm.stop()
        try expected.check(f("base.raw"))
    }

    @Test func aLibvirtManagedVMIsRefusedWithTheVirshCommand() throws {
        try makeChain()
        let before = try fileDigest(f("top.qcow2"))
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")), libvirtDomain: "dom1")
        defer { vm.stop() }
        let who = try imgtool("who", "top.qcow2", "--output", "json")
        let monitor = (try json(who)["holders"] as? [[String: Any]])?.first?["monitor"] as? [String: String]
        #expect(monitor?["address"] == vm.qmp, "the monitor handed over as fd= is found by its socket inode")
        let r = try imgtool("commit", "top.qcow2", "--live")
        #expect(r.status == 1)
        #expect(r.stderr.contains("managed by libvirt (domain dom1)"))
        #expect(r.stderr.contains("virsh blockcommit dom1 top.qcow2"))
        let flatten = try imgtool("rebase", "top.qcow2", "--flatten", "--live")
        #expect(flatten.stderr.contains("virsh blockpull dom1 top.qcow2"))
        vm.stop()
        #expect(try fileDigest(f("top.qcow2")) == before)
    }

    @Test func chainLiveNamesAMovedBackingFileAndFixBackingLiveMendsIt() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }
        try dir.mkdir("bases")
        try FileManager.default.moveItem(atPath: f("base.raw"), toPath: f("bases/base.raw"))

        let broken = try imgtool("chain", "top.qcow2", "--live", "--output", "json")
        #expect(broken.status == 2)
        let diffs = try #require(try json(broken)["differences"] as? [[String: Any]])
        #expect(diffs.compactMap { $0["kind"] as? String } == ["unreachable"])
        let live = try #require((try json(broken)["live"] as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(live.last?["current-filename"] as? String == f("bases/base.raw"))
        let fix = diffs.flatMap { ($0["suggestions"] as? [String]) ?? [] }
        #expect(fix.contains("imgtool fix-backing top.qcow2 --to \(f("bases/base.raw")) --live"))

        let dry = try imgtool("fix-backing", "top.qcow2", "--to", "bases/base.raw", "--live", "--dry-run")
        #expect(dry.status == 0 && dry.stdout.contains("dry run: nothing was changed"))
        let r = try imgtool("fix-backing", "top.qcow2", "--to", "bases/base.raw", "--live")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("saved the old header"))
        let after = try imgtool("chain", "top.qcow2", "--live")
        #expect(after.status == 0, "\(after.stdout)")
        vm.stop()
        let info = try #require(try QemuImg.info(f("top.qcow2")) as? [String: Any])
        #expect(info["backing-filename"] as? String == "bases/base.raw")
        #expect(info["backing-filename-format"] as? String == "raw")
        try QemuImg.run(["check", f("top.qcow2")])
        try expected.check(f("top.qcow2"))
    }
}
