import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// `--live` asks the same readers as an offline change: QEMU is the holder it expects, but a loop device the kernel
/// also serves the image on reads under the change, so the live commit is refused, naming the device.
@Suite(.serialized)
struct LiveLoopHolderTests {
    @Test func liveCommitRefusedWhileALoopDeviceServesTheImage() throws {
        try LoopHolderTests.requireLoopSupport()
        let dir = try TempDir("live-loop")
        var env = ProcessInfo.processInfo.environment
        env["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        let vm = try TestVM(dir: dir.path, .drive(dir.file("top.qcow2")))
        defer { vm.stop() }
        let loop = try LoopHolderTests.run(["losetup", "-f", "--show", "-r", dir.file("top.qcow2")])
        defer { _ = try? LoopHolderTests.run(["losetup", "-d", loop]) }
        let before = try fileDigest(dir.file("base.raw"))
        let r = try ImgtoolBinary.run(["commit", "top.qcow2", "--live"], cwd: dir.path, environment: env)
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains("is also served by the kernel: loop device \(loop)"), "\(r.stderr)")
        #expect(try fileDigest(dir.file("base.raw")) == before)
        let who = try ImgtoolBinary.run(["who", "top.qcow2"], cwd: dir.path, environment: env)
        #expect(who.status == 2 && who.stdout.contains("PID") && who.stdout.contains(loop), "\(who.stdout)")
    }
}
