import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// `imgtool commit` offline, through the real qemu-img: the guest's bytes are the same afterwards, the chain reads
/// LAYER ← IMAGE, and an image outside the chain backed by a layer that changes stops it (every sha256 unchanged).
@Suite(.serialized)
struct CommitTests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("commit")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
    }

    func f(_ name: String) -> String { dir.file(name) }
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: dir.path, environment: env) }
    func info(_ name: String) throws -> [String: Any] { try #require(try QemuImg.info(f(name)) as? [String: Any]) }

    /// base.raw ← mid.qcow2 ← top.qcow2, each with data of its own, and the guest's bytes in expected.raw.
    func makeChain() throws -> ExpectedDisk {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 2M", "base.raw"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "mid.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x3d 1M 1M", "mid.qcow2"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x70 1536k 1M", "top.qcow2"], cwd: dir.path)
        return try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
    }

    func digests() throws -> [String: String] {
        var d: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".qcow2") || name.hasSuffix(".raw") {
            d[name] = try fileDigest(f(name))
        }
        return d
    }

    @Test func commitIntoTheBackingFileKeepsTheGuestBytes() throws {
        let expected = try makeChain()
        let dry = try imgtool("commit", "top.qcow2", "--dry-run")
        #expect(dry.status == 0)
        // Every layer goes to qemu-img by descriptor: the image as its standard input, the others as /proc names.
        #expect(dry.stdout.contains(#"commit -f qcow2 -q 'json:{"driver":"qcow2","file":{"driver":"file","filename":"/proc/self/fd/0"},"backing":{"driver":"qcow2","file":{"driver":"file","filename":"/proc/"#), "\(dry.stdout)")
        #expect(dry.stdout.contains(#"{"driver":"raw","file":{"driver":"file","filename":"/proc/"#) && dry.stdout.contains("< top.qcow2"))
        let commands = dry.stdout.split(separator: "\n").filter { !$0.hasPrefix("checked:") && $0.contains("qemu-img") }
        #expect(commands.count == 1 && !commands[0].contains("mid.qcow2") && !commands[0].contains("base.raw"), "no layer is named by path: \(dry.stdout)")
        let r = try imgtool("commit", "top.qcow2")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("committed top.qcow2 into"))
        #expect(try info("top.qcow2")["backing-filename"] as? String == "mid.qcow2")
        try QemuImg.run(["check", f("mid.qcow2")])
        try QemuImg.run(["check", f("top.qcow2")])
        try expected.check(f("top.qcow2"))
        try expected.check(f("mid.qcow2"))
    }

    @Test func commitIntoADeeperBaseRepointsTheImage() throws {
        let expected = try makeChain()
        let r = try imgtool("commit", "top.qcow2", "--base", "base.raw")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try info("top.qcow2")["backing-filename"] as? String == "base.raw")
        #expect(try info("top.qcow2")["backing-filename-format"] as? String == "raw")
        let chain = try #require(try QemuImg.info(f("top.qcow2"), chain: true) as? [[String: Any]])
        #expect(chain.count == 2)
        try QemuImg.run(["check", f("top.qcow2")])
        try QemuImg.run(["check", f("mid.qcow2")])
        try expected.check(f("top.qcow2"))
        try expected.check(f("base.raw"))
        let notInChain = try imgtool("commit", "top.qcow2", "--base", "mid.qcow2")
        #expect(notInChain.status == 1 && notInChain.stderr.contains("is not in the backing chain"))
    }

    @Test func anotherOverlayOnAChangingLayerRefusesUnlessForced() throws {
        let expected = try makeChain()
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "sibling.qcow2"], cwd: dir.path)
        let store = try dir.mkdir("store/deep")
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "../../base.raw", "-F", "raw", store + "/far.qcow2"])
        let before = try digests()
        let farBefore = try fileDigest(store + "/far.qcow2")

        let r = try imgtool("commit", "top.qcow2")
        #expect(r.status == 1)
        #expect(r.stderr.contains(f("sibling.qcow2")) && r.stderr.contains("--force"))
        let deep = try imgtool("commit", "top.qcow2", "--base", "base.raw", "--store", "store")
        #expect(deep.status == 1)
        #expect(deep.stderr.contains("far.qcow2") && deep.stderr.contains("sibling.qcow2"))
        #expect(try digests() == before)
        #expect(try fileDigest(store + "/far.qcow2") == farBefore)

        let forced = try imgtool("commit", "top.qcow2", "--force")
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(forced.stderr.contains("warning: --force: \(f("sibling.qcow2")) was backed by a layer that changed"))
        try expected.check(f("top.qcow2"))
    }

    /// A reader of a layer below LAYER (other VMs on a shared base) does not stop the commit: qemu-img only reads
    /// that layer. (Was refused once every layer was held: the no-holder check went down the whole chain.) A commit
    /// that writes the read layer is still refused.
    @Test func aReaderOfALayerBelowTheTargetDoesNotStopTheCommit() throws {
        let expected = try makeChain()
        let reader = try NBDHolder(f("base.raw"), format: "raw", readOnly: true, in: dir)
        let deep = try imgtool("commit", "top.qcow2", "--base", "base.raw")
        #expect(deep.status == 1 && deep.stderr.contains("PID \(reader.pid)"), "\(deep.stderr)")
        let r = try imgtool("commit", "top.qcow2")
        #expect(r.status == 0, "\(r.stderr)")
        try expected.check(f("top.qcow2"))
        try expected.check(f("mid.qcow2"))
        withExtendedLifetime(reader) {}
    }

    /// A writer of a layer below LAYER is named, as a refusal (qemu-img would fail on QEMU's lock, naming only a
    /// /proc path); nothing changes.
    @Test func aWriterOfALayerBelowTheTargetIsNamed() throws {
        _ = try makeChain()
        let before = try digests()
        let writer = try NBDHolder(f("base.raw"), format: "raw", readOnly: false, in: dir)
        let r = try imgtool("commit", "top.qcow2")
        #expect(r.status == 1 && r.stderr.contains("is being written by") && r.stderr.contains("\(writer.pid)"), "\(r.stderr)")
        withExtendedLifetime(writer) {}
        #expect(try digests().filter { $0.key != "base.raw" } == before.filter { $0.key != "base.raw" })
    }

    /// A VMDK descriptor layer names its extent file relative to itself, which no /proc/PID/fd name resolves: it goes
    /// to qemu-img by its path. (Commit and safe rebase both failed with "Could not open '/proc/N/fd/base-flat.vmdk'"
    /// once every layer went by descriptor.)
    @Test func aVMDKDescriptorLayerCanBeCommittedIntoAndRebasedOff() throws {
        try QemuImg.run(["create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "base.vmdk", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-f", "vmdk", "-c", "write -P 0xb1 0 2M", "base.vmdk"], cwd: dir.path)
        for name in ["top.qcow2", "other.qcow2"] {
            try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.vmdk", "-F", "vmdk", name], cwd: dir.path)
            try ExpectedDisk.qemuIO(["-c", "write -P 0x72 1M 2M", name], cwd: dir.path)
        }
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        try QemuImg.run(["create", "-q", "-f", "raw", "new.raw", "4M"], cwd: dir.path)
        let rebase = try imgtool("rebase", "other.qcow2", "--onto", "new.raw")
        #expect(rebase.status == 0, "\(rebase.stderr)")
        try expected.check(f("other.qcow2"))
        let r = try imgtool("commit", "top.qcow2")
        #expect(r.status == 0, "\(r.stderr)")
        try expected.check(f("top.qcow2"))
        try expected.check(f("base.vmdk"))
    }

    @Test func anImageWithoutBackingHasNothingToCommit() throws {
        try QemuImg.run(["create", "-q", "-f", "qcow2", "alone.qcow2", "1M"], cwd: dir.path)
        let before = try fileDigest(f("alone.qcow2"))
        let r = try imgtool("commit", "alone.qcow2")
        #expect(r.status == 1 && r.stderr.contains("has no backing file"))
        #expect(try fileDigest(f("alone.qcow2")) == before)
    }
}
