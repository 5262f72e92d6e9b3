import Foundation
import Testing
@testable import ImageOps
import QCow2
import TestSupport

/// Internal snapshots read every cluster they do not hold from the backing file, as the active view does: a change
/// that alters what those clusters read (commit into the backing file or below, flatten, safe rebase --onto) is
/// refused while an affected image has snapshots, with every image's sha256 unchanged, and goes on with --force,
/// saying so. The snapshots are made by `qemu-img snapshot -c`, the data by qemu-io.
@Suite(.serialized)
struct SnapshotSafetyTests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("snapsafety")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
    }

    func f(_ name: String) -> String { dir.file(name) }
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: dir.path, environment: env) }
    func qemuImg(_ args: String...) throws { try QemuImg.run(args, cwd: dir.path) }

    /// base.raw ← mid.qcow2 ← top.qcow2, each with data of its own.
    func makeChain() throws {
        try qemuImg("create", "-q", "-f", "raw", "base.raw", "4M")
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 2M", "base.raw"], cwd: dir.path)
        try qemuImg("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "mid.qcow2")
        try ExpectedDisk.qemuIO(["-c", "write -P 0x3d 1M 1M", "mid.qcow2"], cwd: dir.path)
        try qemuImg("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2")
        try ExpectedDisk.qemuIO(["-c", "write -P 0x70 1536k 1M", "top.qcow2"], cwd: dir.path)
    }

    func digests() throws -> [String: String] {
        var d: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".qcow2") || name.hasSuffix(".raw") {
            d[name] = try fileDigest(f(name))
        }
        return d
    }

    /// The guest view of snapshot `id` of `image` (through its backing chain as it is now), as a raw file.
    func snapshotView(_ image: String, _ id: String, to out: String) throws {
        try qemuImg("convert", "-l", "snapshot.id=\(id)", "-O", "raw", image, out)
    }

    func refused(_ r: RunResult, naming image: String, tag: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains("imgtool: error: \(image)") && r.stderr.contains("internal snapshot") && r.stderr.contains("\"\(tag)\""), "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains("qemu-img snapshot -d 1 \(image)") && r.stderr.contains("qemu-img convert -l snapshot.id=1"), "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains("--force") && r.stderr.contains("nothing was changed"), sourceLocation: sourceLocation)
    }

    @Test func commitIsRefusedWhileTheImageHasSnapshotsAndForceSaysWhatItDid() throws {
        try makeChain()
        try qemuImg("snapshot", "-c", "before upgrade", "top.qcow2")
        try ExpectedDisk.qemuIO(["-c", "write -P 0x11 0 64k", "top.qcow2"], cwd: dir.path)
        try snapshotView("top.qcow2", "1", to: f("snap-before.img"))
        let before = try digests()
        refused(try imgtool("commit", "top.qcow2"), naming: "top.qcow2", tag: "before upgrade")
        refused(try imgtool("commit", "top.qcow2", "--dry-run"), naming: "top.qcow2", tag: "before upgrade")
        #expect(try digests() == before)

        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.img"))
        let r = try imgtool("commit", "top.qcow2", "--force")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("imgtool: warning: --force: top.qcow2 has 1 internal snapshot") && r.stderr.contains("now reads other data"), "\(r.stderr)")
        try QemuImg.run(["check", f("top.qcow2")])
        try QemuImg.run(["check", f("mid.qcow2")])
        try expected.check(f("top.qcow2"))
        // What the refusal protected: the snapshot now reads the newer data where it holds nothing.
        try snapshotView("top.qcow2", "1", to: f("snap-after.img"))
        #expect(try fileDigest(f("snap-after.img")) != fileDigest(f("snap-before.img")))
    }

    @Test func aDeeperCommitCountsTheLayersBetweenButNotTheTarget() throws {
        try makeChain()
        try qemuImg("snapshot", "-c", "mid-snap", "mid.qcow2")
        let before = try digests()
        // Into base.raw: mid.qcow2 is rewritten, so its snapshot changes.
        let deep = try imgtool("commit", "top.qcow2", "--base", "base.raw")
        refused(deep, naming: "mid.qcow2", tag: "mid-snap")
        #expect(try digests() == before)
        // Into mid.qcow2 itself: its snapshot reads only base.raw, which stays: allowed, and the snapshot keeps its view.
        try snapshotView("mid.qcow2", "1", to: f("mid-before.img"))
        let r = try imgtool("commit", "top.qcow2")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stderr.contains("warning"), "\(r.stderr)")
        try QemuImg.run(["check", f("mid.qcow2")])
        try snapshotView("mid.qcow2", "1", to: f("mid-after.img"))
        #expect(try fileDigest(f("mid-after.img")) == fileDigest(f("mid-before.img")))
    }

    @Test func flattenAndSafeRebaseAreRefusedAndForceTakesThem() throws {
        try makeChain()
        try qemuImg("snapshot", "-c", "keep", "top.qcow2")
        try qemuImg("create", "-q", "-f", "raw", "other.raw", "4M")
        let before = try digests()
        let flat = try imgtool("rebase", "top.qcow2", "--flatten")
        refused(flat, naming: "top.qcow2", tag: "keep")
        #expect(flat.stderr.contains("read zeros"), "\(flat.stderr)")
        let onto = try imgtool("rebase", "top.qcow2", "--onto", "other.raw")
        refused(onto, naming: "top.qcow2", tag: "keep")
        #expect(try digests() == before)

        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.img"))
        let r = try imgtool("rebase", "top.qcow2", "--flatten", "--force")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("warning: --force: top.qcow2 has 1 internal snapshot"), "\(r.stderr)")
        try QemuImg.run(["check", f("top.qcow2")])
        try expected.check(f("top.qcow2"))
    }

    @Test func headerOnlyChangesGoOnAndSayTheSnapshotsExist() throws {
        try makeChain()
        try qemuImg("snapshot", "-c", "s", "top.qcow2")
        try FileManager.default.copyItem(atPath: f("mid.qcow2"), toPath: f("mid-copy.qcow2"))
        let r = try imgtool("fix-backing", "top.qcow2", "--to", "mid-copy.qcow2")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("top.qcow2 has 1 internal snapshot") && r.stderr.contains("same data"), "\(r.stderr)")
        let u = try imgtool("rebase", "top.qcow2", "--onto", "mid.qcow2", "--unsafe")
        #expect(u.status == 0, "\(u.stderr)")
        #expect(u.stderr.contains("internal snapshot"), "\(u.stderr)")
        try QemuImg.run(["check", f("top.qcow2")])
    }

    @Test func theLibraryListsTheAffectedSnapshots() throws {
        try makeChain()
        try qemuImg("snapshot", "-c", "a", "top.qcow2")
        try qemuImg("snapshot", "-c", "b", "mid.qcow2")
        let chain = try BackingChain.follow(f("top.qcow2"))
        #expect(Operations.snapshotsAffected(chain.layers[0..<1]).map(\.snapshot.name) == ["a"])
        #expect(Operations.snapshotsAffected(chain.layers[0..<2]).map { "\(BackingPath.fileName($0.image)):\($0.snapshot.name)" } == ["top.qcow2:a", "mid.qcow2:b"])
        #expect(throws: ChangeError.self) { try Operations.checkSnapshots(Operations.snapshotsAffected(chain.layers[0..<2]), change: "x", force: false) }
        let forced = try Operations.checkSnapshots(Operations.snapshotsAffected(chain.layers[0..<2]), change: "x", force: true)
        #expect(forced.warnings.count == 1 && forced.warnings[0].contains("mid.qcow2 has 1 internal snapshot"))
    }

    @Test func commitOfAnOverlayWhoseBackingIsMissingSaysWhyAndHowToFixIt() throws {
        try qemuImg("create", "-q", "-f", "qcow2", "base.qcow2", "1M")
        try qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "ov.qcow2")
        try FileManager.default.createDirectory(atPath: f("moved"), withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: f("base.qcow2"), toPath: f("moved/base.qcow2"))
        let before = try digests()
        let r = try imgtool("commit", "ov.qcow2")
        #expect(r.status == 1)
        #expect(!r.stderr.contains("has no backing file"), "\(r.stderr)")
        #expect(r.stderr.contains("missing") && r.stderr.contains("does not exist"), "\(r.stderr)")
        // The same fix `chain` offers: the file of that name it found nearby.
        #expect(r.stderr.contains("imgtool fix-backing ov.qcow2 --to \(f("moved/base.qcow2"))"), "\(r.stderr)")
        let chain = try imgtool("chain", "ov.qcow2")
        #expect(chain.stdout.contains("fix: imgtool fix-backing ov.qcow2 --to \(f("moved/base.qcow2"))"), "\(chain.stdout)")
        // Not an image at all: the chain's words again.
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: f("base.qcow2")))
        let n = try imgtool("commit", "ov.qcow2")
        #expect(n.status == 1 && n.stderr.contains("base.qcow2") && n.stderr.contains("fix-backing"), "\(n.stderr)")
        #expect(!n.stderr.contains("has no backing file"), "\(n.stderr)")
        #expect(try digests().filter { $0.key != "base.qcow2" } == before)
    }
}
