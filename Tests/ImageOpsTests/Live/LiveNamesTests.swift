import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// QEMU's relative names are QEMU's: a VM started in another folder with `-drive file=sub/top.qcow2` (and a
/// relative backing name) is seen by imgtool, run from elsewhere, with nothing "moved"; a file really renamed while
/// the VM runs is `moved: now PATH`.
@Suite(.serialized)
struct LiveNamesTests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("live-names")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
    }

    func f(_ name: String) -> String { dir.file(name) }
    /// imgtool run from a third folder, neither QEMU's nor the images'.
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: f("elsewhere"), environment: env) }

    @Test func relativeNamesFromQEMUsFolderAreNotMovedAndARealRenameIs() throws {
        try dir.mkdir("vm")
        try dir.mkdir("vm/disks")
        try dir.mkdir("elsewhere")
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: f("vm/disks"))
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 2M", "base.raw"], cwd: f("vm/disks"))
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2"], cwd: f("vm/disks"))
        let expected = try ExpectedDisk(from: f("vm/disks/top.qcow2"), at: f("expected.raw"))
        // QEMU in vm/, naming the disk relatively; -daemonize moves it to / once started.
        let vm = try TestVM(dir: dir.path, .drive("disks/top.qcow2"), cwd: f("vm"))
        defer { vm.stop() }
        let top = f("vm/disks/top.qcow2")

        let chain = try imgtool("chain", top, "--live")
        #expect(chain.status == 0, "\(chain.stdout)\(chain.stderr)")
        #expect(!chain.stdout.contains("moved"), "\(chain.stdout)")
        #expect(chain.stdout.contains("QEMU and the disk agree"))
        let who = try imgtool("who", top)
        #expect(!who.stdout.contains("moved"), "\(who.stdout)")

        let overlay = try imgtool("overlay", top, f("vm/disks/snap.qcow2"), "--live")
        #expect(overlay.status == 0, "\(overlay.stderr)")
        #expect(!overlay.stdout.contains("moved"), "\(overlay.stdout)")
        try vm.guestWrite(pattern: 0x21, offset: 3 << 20, length: 65536)
        try expected.write(pattern: 0x21, offset: 3 << 20, length: 65536)
        let commit = try imgtool("commit", f("vm/disks/snap.qcow2"), "--live")
        #expect(commit.status == 0, "\(commit.stderr)")
        #expect(!commit.stdout.contains("moved"), "\(commit.stdout)")
        let after = try imgtool("chain", top, "--live")
        #expect(after.status == 0 && !after.stdout.contains("moved"), "\(after.stdout)")

        // A real rename while the VM runs: moved, with the new path.
        try FileManager.default.moveItem(atPath: f("vm/disks/base.raw"), toPath: f("vm/disks/base-renamed.raw"))
        let moved = try imgtool("chain", top, "--live")
        #expect(moved.stdout.contains("moved: now \(f("vm/disks/base-renamed.raw"))"), "\(moved.stdout)")
        #expect(!moved.stdout.contains("top.qcow2  qcow2, node") || !moved.stdout.split(separator: "\n").contains { $0.contains("top.qcow2") && $0.contains("moved") })
        try FileManager.default.moveItem(atPath: f("vm/disks/base-renamed.raw"), toPath: f("vm/disks/base.raw"))
        vm.stop()
        try QemuImg.run(["check", top])
        try expected.check(top)
    }

    /// The same through a human monitor (qemu-init style), where QEMU's names come from `info block -v`.
    @Test func relativeNamesThroughHMP() throws {
        try dir.mkdir("vm")
        try dir.mkdir("vm/disks")
        try dir.mkdir("elsewhere")
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: f("vm/disks"))
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2"], cwd: f("vm/disks"))
        let expected = try ExpectedDisk(from: f("vm/disks/top.qcow2"), at: f("expected.raw"))
        let (vm, monitors) = try HMPTestVM.start(dir: dir.path, .drive("disks/top.qcow2"), cwd: f("vm"))
        defer { vm.stop() }
        let top = f("vm/disks/top.qcow2")
        for args in [["chain", top, "--live"], ["who", top], ["overlay", top, f("vm/disks/snap.qcow2"), "--live"],
                     ["commit", f("vm/disks/snap.qcow2"), "--live"], ["chain", f("vm/disks/snap.qcow2"), "--live"]] {
            let r = try ImgtoolBinary.run(args, cwd: f("elsewhere"), environment: env)
            #expect(r.status == (args[0] == "who" ? 2 : 0), "\(args): \(r.stderr)")
            #expect(!r.stdout.contains("moved"), "\(args): \(r.stdout)")
            try vm.waitUntilIdle(monitors)
        }
        try vm.guestWrite(pattern: 0x5a, offset: 0, length: 65536)
        try expected.write(pattern: 0x5a, offset: 0, length: 65536)
        try vm.waitUntilIdle(monitors)
        try FileManager.default.moveItem(atPath: f("vm/disks/base.raw"), toPath: f("vm/disks/base-renamed.raw"))
        let moved = try ImgtoolBinary.run(["chain", f("vm/disks/snap.qcow2"), "--live"], cwd: f("elsewhere"), environment: env)
        #expect(moved.stdout.contains("moved: now \(f("vm/disks/base-renamed.raw"))"), "\(moved.stdout)")
        try FileManager.default.moveItem(atPath: f("vm/disks/base-renamed.raw"), toPath: f("vm/disks/base.raw"))
        vm.stop()
        try QemuImg.run(["check", f("vm/disks/snap.qcow2")])
        try expected.check(f("vm/disks/snap.qcow2"))
    }

    /// A daemonized QEMU's `PWD` is only a hint: a launcher that changed folder without updating it leaves the
    /// shell's folder there. Here QEMU runs in vm/ with `-drive file=disk.qcow2` (d0) and also has home/disk.qcow2
    /// open as d1, while its `PWD` says home/. The relative name must not be taken for home/disk.qcow2: an overlay
    /// of home/disk.qcow2 goes onto d1, never onto d0 (whose data would then sit on top of the wrong base).
    @Test func aStaleLaunchPWDNamingAnotherOpenFileIsNotBelieved() throws {
        for sub in ["vm", "home", "elsewhere"] { try dir.mkdir(sub) }
        try QemuImg.run(["create", "-q", "-f", "qcow2", "disk.qcow2", "4M"], cwd: f("vm"))
        try ExpectedDisk.qemuIO(["-c", "write -P 0x11 0 1M", "disk.qcow2"], cwd: f("vm"))
        try QemuImg.run(["create", "-q", "-f", "qcow2", "disk.qcow2", "4M"], cwd: f("home"))
        try ExpectedDisk.qemuIO(["-c", "write -P 0x22 0 1M", "disk.qcow2"], cwd: f("home"))
        let expectedVM = try ExpectedDisk(from: f("vm/disk.qcow2"), at: f("expected-vm.raw"))
        let expectedHome = try ExpectedDisk(from: f("home/disk.qcow2"), at: f("expected-home.raw"))
        let vm = try TestVM(dir: dir.path, .drive("disk.qcow2"), extra: ["-drive", "file=\(f("home/disk.qcow2")),if=none,id=d1", "-device", "virtio-blk-pci,drive=d1,id=vd1"],
                            qmp: false, cwd: f("vm"), launchPWD: f("home"))
        defer { vm.stop() }
        let digests = try ["vm/disk.qcow2", "home/disk.qcow2"].map { try fileDigest(f($0)) }

        let overlay = try imgtool("overlay", f("home/disk.qcow2"), f("home/snap.qcow2"), "--live")
        try vm.waitUntilMonitorIdle(vm.hmp)
        let info = try vm.hmpCommand("info block")
        let d0 = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("d0 ") }.map(String.init) ?? ""
        let d1 = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("d1 ") }.map(String.init) ?? ""
        #expect(!d0.contains("snap.qcow2"), "the overlay went onto d0: \(overlay.stdout)\(overlay.stderr)\n\(info)")
        if overlay.status == 0 {
            #expect(d1.contains("snap.qcow2"), "\(info)")
        } else {
            #expect(!FileManager.default.fileExists(atPath: f("home/snap.qcow2")))
            #expect(try ["vm/disk.qcow2", "home/disk.qcow2"].map { try fileDigest(f($0)) } == digests)
        }
        // Guest writes on both disks land where each disk's chain is.
        _ = try vm.hmpCommand("qemu-io d0 \"write -P 0x33 2M 64k\"")
        try expectedVM.write(pattern: 0x33, offset: 2 << 20, length: 65536)
        _ = try vm.hmpCommand("qemu-io d1 \"write -P 0x44 3M 64k\"")
        try expectedHome.write(pattern: 0x44, offset: 3 << 20, length: 65536)
        vm.stop()
        try expectedVM.check(f("vm/disk.qcow2"))
        let homeTop = overlay.status == 0 ? f("home/snap.qcow2") : f("home/disk.qcow2")
        try QemuImg.run(["check", homeTop])
        try expectedHome.check(homeTop)
    }
}
