import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// The dependents search reaches every image that may read a changing layer, and every change that alters what its
/// dependents read asks it (found by the hostile review of round 3: a shrink of a base never asked; a `file:` or
/// `json:` backing name was skipped; a store's symbolic link to a folder was not followed; an extended container
/// was not a partition to the shrink guard). Each refusal leaves every image byte-identical.
@Suite(.serialized)
struct DependentsReachTests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("reach")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
    }

    func f(_ name: String) -> String { dir.file(name) }
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: dir.path, environment: env) }
    func qemuIO(_ args: String...) throws {
        guard let path = which("qemu-io") else { throw ToolError("qemu-io is not installed (scripts/setup)") }
        let r = try runProgram(path, args, cwd: dir.path)
        guard r.status == 0, !r.stdout.contains("failed") else { throw ToolError("qemu-io \(args): \(r.stdout)\(r.stderr)") }
    }
    func digests(_ names: [String]) throws -> [String] { try names.map { try fileDigest(f($0)) } }

    @Test func shrinkingABaseIsRefusedWhileAnOverlayReadsPastTheNewEnd() throws {
        try QemuImg.run(["create", "-q", "-f", "qcow2", "base.qcow2", "64M"], cwd: dir.path)
        try qemuIO("-f", "qcow2", "-c", "write -q -P 7 40M 1M", "base.qcow2")
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "ov.qcow2"], cwd: dir.path)
        let before = try digests(["base.qcow2", "ov.qcow2"])
        let r = try imgtool("resize", "base.qcow2", "32M", "--shrink")
        #expect(r.status == 1 && r.stderr.contains("ov.qcow2") && r.stderr.contains("as backing"), "\(r.stdout)\(r.stderr)")
        #expect(try digests(["base.qcow2", "ov.qcow2"]) == before)
        try qemuIO("-r", "-f", "qcow2", "-c", "read -q -P 7 40M 1M", "ov.qcow2")
        // --force takes it and says so; the base stays consistent.
        let forced = try imgtool("resize", "base.qcow2", "32M", "--shrink", "--force")
        #expect(forced.status == 0 && forced.stderr.contains("warning: --force: ") && forced.stderr.contains("ov.qcow2"), "\(forced.stdout)\(forced.stderr)")
        try QemuImg.run(["check", "-q", f("base.qcow2")])
    }

    @Test func fileAndJSONBackingNamesAreDependents() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "16M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "ov.qcow2"], cwd: dir.path)
        try qemuIO("-f", "qcow2", "-c", "write -q -P 17 0 1M", "ov.qcow2")
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "file:base.raw", "-F", "raw", "sib.qcow2", "16M"], cwd: dir.path)
        let names = ["base.raw", "ov.qcow2", "sib.qcow2"]
        let before = try digests(names)
        let r = try imgtool("commit", "ov.qcow2")
        #expect(r.status == 1 && r.stderr.contains("sib.qcow2"), "\(r.stdout)\(r.stderr)")
        #expect(try digests(names) == before)
        // A json: name is not resolved: it counts as a dependent, named.
        try FileManager.default.removeItem(atPath: f("sib.qcow2"))
        let json = #"json:{"driver":"raw","file":{"driver":"file","filename":"\#(f("base.raw"))"}}"#
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", json, "-F", "raw", "js.qcow2", "16M"], cwd: dir.path)
        let before2 = try digests(["base.raw", "ov.qcow2", "js.qcow2"])
        let j = try imgtool("commit", "ov.qcow2")
        #expect(j.status == 1 && j.stderr.contains("js.qcow2"), "\(j.stdout)\(j.stderr)")
        #expect(try digests(["base.raw", "ov.qcow2", "js.qcow2"]) == before2)
        // An nbd: name is another host's data: no dependent, and the commit goes through.
        try FileManager.default.removeItem(atPath: f("js.qcow2"))
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "nbd:127.0.0.1:1", "-F", "raw", "net.qcow2", "16M"], cwd: dir.path)
        let ok = try imgtool("commit", "ov.qcow2")
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        try qemuIO("-r", "-f", "raw", "-c", "read -q -P 17 0 1M", "base.raw")
    }

    @Test func aStoresLinkedFolderIsSearched() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "16M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "ov.qcow2"], cwd: dir.path)
        try FileManager.default.createDirectory(atPath: f("elsewhere"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: f("store"), withIntermediateDirectories: true)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", f("base.raw"), "-F", "raw", "elsewhere/sib.qcow2"], cwd: dir.path)
        try FileManager.default.createSymbolicLink(atPath: f("store/vms"), withDestinationPath: f("elsewhere"))
        // A link back up makes a loop: it must end, not hang.
        try FileManager.default.createSymbolicLink(atPath: f("elsewhere/up"), withDestinationPath: f("store"))
        let names = ["base.raw", "ov.qcow2", "elsewhere/sib.qcow2"]
        let before = try digests(names)
        let r = try imgtool("commit", "ov.qcow2", "--store", "store")
        #expect(r.status == 1 && r.stderr.contains("sib.qcow2"), "\(r.stdout)\(r.stderr)")
        #expect(try digests(names) == before)
    }

    @Test func anExtendedContainerIsNotCut() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "e.raw", "64M"], cwd: dir.path)
        guard let sfdisk = which("sfdisk") else { throw ToolError("sfdisk is not installed (scripts/setup)") }
        let made = try runProgram("/bin/sh", ["-c", "printf 'label: dos\\n,10M,83\\n,,5\\n,40M,83\\n' | \(sfdisk) -q e.raw"], cwd: dir.path)
        #expect(made.status == 0, "\(made.stderr)")
        let before = try fileDigest(f("e.raw"))
        let r = try imgtool("resize", "e.raw", "60M", "--shrink")
        #expect(r.status == 1 && r.stderr.contains("extended container"), "\(r.stdout)\(r.stderr)")
        #expect(try fileDigest(f("e.raw")) == before)
    }
}
