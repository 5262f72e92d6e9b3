import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// The `--live` commit and flatten refuse as offline while an affected image has internal snapshots (QEMU's job
/// changes what they read just as qemu-img would), against a real QEMU; --force goes on and says so.
@Suite(.serialized)
struct SnapshotLiveTests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("live-snap")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
    }

    func f(_ name: String) -> String { dir.file(name) }
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: dir.path, environment: env) }

    @Test func liveCommitAndFlattenRefuseWhileTheImageHasSnapshots() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 2M", "base.raw"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x70 1M 1M", "top.qcow2"], cwd: dir.path)
        try QemuImg.run(["snapshot", "-c", "pre-live", "top.qcow2"], cwd: dir.path)
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }
        let before = [try fileDigest(f("top.qcow2")), try fileDigest(f("base.raw"))]
        for args in [["commit", "top.qcow2", "--live"], ["rebase", "top.qcow2", "--flatten", "--live"], ["commit", "top.qcow2", "--live", "--dry-run"]] {
            let r = try ImgtoolBinary.run(args, cwd: dir.path, environment: env)
            #expect(r.status == 1, "\(args): \(r.stdout)\(r.stderr)")
            #expect(r.stderr.contains("internal snapshot") && r.stderr.contains("\"pre-live\"") && r.stderr.contains("qemu-img snapshot -d 1 top.qcow2"), "\(args): \(r.stderr)")
        }
        #expect([try fileDigest(f("top.qcow2")), try fileDigest(f("base.raw"))] == before)
        let forced = try imgtool("rebase", "top.qcow2", "--flatten", "--live", "--force")
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(forced.stderr.contains("warning: --force: top.qcow2 has 1 internal snapshot"), "\(forced.stderr)")
        vm.stop()
        try QemuImg.run(["check", f("top.qcow2")])
        try expected.check(f("top.qcow2"))
    }
}
