import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// Growing an overlay that is shorter than its backing file: the grown area reads zeros, as `qemu-img resize` gives
/// when it opens the chain, and not the backing file's old bytes.
@Suite(.serialized)
struct ResizeGrowTests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("resizegrow")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
    }

    func f(_ name: String) -> String { dir.file(name) }
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: dir.path, environment: env) }

    @Test func growingBackAfterAShrinkReadsZerosNotTheBackingFile() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 4M", "base.raw"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x11 0 1M", "top.qcow2"], cwd: dir.path)
        let baseDigest = try fileDigest(f("base.raw"))
        let shrink = try imgtool("resize", "top.qcow2", "2M", "--shrink")
        #expect(shrink.status == 0, "\(shrink.stderr)")
        let grow = try imgtool("resize", "top.qcow2", "4M")
        #expect(grow.status == 0, "\(grow.stderr)")
        try QemuImg.run(["check", "-q", f("top.qcow2")])
        #expect(try fileDigest(f("base.raw")) == baseDigest, "the backing file is only read")
        try ExpectedDisk.qemuIO(["-r", "-c", "read -P 0x11 0 1M", "top.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-r", "-c", "read -P 0xb0 1M 1M", "top.qcow2"], cwd: dir.path)
        // The new area: zeros (qemu-img's own resize of the chain gives the same).
        try ExpectedDisk.qemuIO(["-r", "-c", "read -P 0 2M 2M", "top.qcow2"], cwd: dir.path)
        try QemuImg.run(["convert", "-O", "raw", f("top.qcow2"), f("guest.raw")])
        let guest = try Array(Data(contentsOf: URL(fileURLWithPath: f("guest.raw"))))
        #expect(guest.count == 4 << 20 && guest[(2 << 20)...].allSatisfy { $0 == 0 })
    }

    @Test func growingOverABrokenChainIsRefusedUnchanged() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2", "2M"], cwd: dir.path)
        try FileManager.default.removeItem(atPath: f("base.raw"))
        let before = try fileDigest(f("top.qcow2"))
        let r = try imgtool("resize", "top.qcow2", "4M")
        #expect(r.status == 1 && r.stderr.contains("growing an overlay needs its backing chain"), "\(r.stderr)")
        #expect(try fileDigest(f("top.qcow2")) == before)
    }

    @Test func aVersion2OverlayShorterThanItsBackingFileIsRefusedUnchanged() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw", "top.qcow2", "2M"], cwd: dir.path)
        let before = [try fileDigest(f("top.qcow2")), try fileDigest(f("base.raw"))]
        let r = try imgtool("resize", "top.qcow2", "4M")
        #expect(r.status == 1 && r.stderr.contains("version 2 qcow2") && r.stderr.contains("compat=1.1"), "\(r.stderr)")
        #expect([try fileDigest(f("top.qcow2")), try fileDigest(f("base.raw"))] == before)
        // Past the backing file's end there is nothing to hide: growing a version 2 overlay longer than it is fine.
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw", "long.qcow2", "4M"], cwd: dir.path)
        let ok = try imgtool("resize", "long.qcow2", "8M")
        #expect(ok.status == 0, "\(ok.stderr)")
        try QemuImg.run(["check", "-q", f("long.qcow2")])
    }
}
