import Foundation
import Glibc
import Testing
@testable import ImageOps
import QCow2
import TestSupport

/// The search for images backed by a changing layer never stops silently: a folder of more than 100,000 entries is
/// read to its end, and a folder it cannot read (or one deeper than its bound) refuses the change, naming it.
/// Tests run as root, which reads a mode-000 folder: imgtool is run without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH
/// (setpriv) so the kernel refuses it as it would refuse any user.
@Suite(.serialized)
struct BigFolderTests {
    /// base.raw and vm.cow on it, in the fixture's store; returns their digests.
    func chain(_ f: SafetyFixture) throws -> [String] {
        try f.qemu("create", "-q", "-f", "raw", "base.raw", "8M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "vm.cow")
        return [try f.digest("base.raw"), try f.digest("vm.cow")]
    }

    func digests(_ f: SafetyFixture) throws -> [String] { [try f.digest("base.raw"), try f.digest("vm.cow")] }

    /// `imgtool ARGS` in the store, without the capabilities that let root read any folder.
    func unprivileged(_ f: SafetyFixture, _ args: [String]) throws -> RunResult {
        let setpriv = try #require(which("setpriv"), "setpriv (util-linux) is needed")
        return try runProgram(setpriv, ["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search",
                                        try ImgtoolBinary.path()] + args, cwd: f.store, environment: f.environment)
    }

    @Test func dependentPastTheHundredThousandthEntryIsFound() throws {
        let f = try SafetyFixture()
        let before = try chain(f)
        let big = try f.root.mkdir("big")
        for i in 0...100_000 {
            let fd = open(big + "/e\(i)", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            #expect(fd >= 0)
            close(fd)
        }
        // The one entry a walk bounded at 100,000 (the old search) does not reach becomes the dependent, in place:
        // same name, same place in the folder.
        var seen = Set<String>()
        Directory.walk(big, maxDepth: 64, limit: 100_000) { seen.insert($0.name) }
        let missed = (0...100_000).map { "e\($0)" }.filter { !seen.contains($0) }
        #expect(missed.count == 1)
        let late = try #require(missed.first)
        try f.qemu("create", "-q", "-f", "qcow2", "-b", f.path("base.raw"), "-F", "raw", f.root.file("dep.tmp"))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: f.root.file("dep.tmp")))
        let fd = open(big + "/" + late, O_WRONLY | O_CLOEXEC)
        #expect(fd >= 0)
        let wrote = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(wrote == bytes.count)
        var again = false
        Directory.walk(big, maxDepth: 64, limit: 100_000) { if $0.name == late { again = true } }
        #expect(!again, "the dependent must lie past a 100,000-entry walk for this test to mean anything")
        let depBefore = try fileDigest(big + "/" + late)

        let r = try f.imgtool(["commit", "vm.cow", "--store", big])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains(big + "/" + late), "\(r.stderr)")
        #expect(try digests(f) == before)
        #expect(try fileDigest(big + "/" + late) == depBefore)
    }

    @Test func unreadableFolderUnderStoreRefusesCommit() throws {
        let f = try SafetyFixture()
        let before = try chain(f)
        let store = try f.root.mkdir("vms")
        let locked = try f.root.mkdir("vms/locked")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", f.path("base.raw"), "-F", "raw", locked + "/other.cow")
        chmod(locked, 0)
        defer { chmod(locked, 0o755) }
        let r = try unprivileged(f, ["commit", "vm.cow", "--store", store])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains(locked) && r.stderr.contains("Permission denied"), "\(r.stderr)")
        #expect(try digests(f) == before)
        // scan is a report: it names the folder it could not read.
        let scan = try unprivileged(f, ["scan", store, "--output", "json"])
        let json = try JSONValue.parse(scan.stdout)
        #expect(json["unreadable"]?.elements.contains { $0["filename"] == .string(locked) } == true, "\(scan.stdout)")

        // The same run with the folder readable goes through its checks: the refusal was the folder's.
        chmod(locked, 0o755)
        let found = try unprivileged(f, ["commit", "vm.cow", "--store", store])
        #expect(found.status == 1 && found.stderr.contains(locked + "/other.cow"), "\(found.stderr)")
        try FileManager.default.removeItem(atPath: locked + "/other.cow")
        let dry = try unprivileged(f, ["commit", "vm.cow", "--store", store, "--dry-run"])
        #expect(dry.status == 0, "\(dry.stdout)\(dry.stderr)")
        #expect(try digests(f) == before)
    }

    @Test func storeDeeperThanTheBoundRefusesCommit() throws {
        let f = try SafetyFixture()
        let before = try chain(f)
        let store = try f.root.mkdir("deep")
        let deepest = store + String(repeating: "/d", count: FolderSearch.depthBound + 1)
        try FileManager.default.createDirectory(atPath: deepest, withIntermediateDirectories: true)
        let r = try f.imgtool(["commit", "vm.cow", "--store", store])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains("more than \(FolderSearch.depthBound) folders deep"), "\(r.stderr)")
        #expect(try digests(f) == before)
        // One level less is searched whole.
        try FileManager.default.removeItem(atPath: deepest)
        let ok = try f.imgtool(["commit", "vm.cow", "--store", store, "--dry-run"])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
    }
}

extension BigFolderTests {
    /// A file that may be an image but cannot be read refuses too (commit under --store, fix-backing's search of
    /// the current folder); the file is named.
    @Test func unreadableFileRefusesCommitAndFixBackingSearch() throws {
        let f = try SafetyFixture()
        let before = try chain(f)
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "hidden.cow")
        chmod(f.path("hidden.cow"), 0)
        defer { chmod(f.path("hidden.cow"), 0o644) }
        let hidden = try f.digest("hidden.cow")
        let r = try unprivileged(f, ["commit", "vm.cow"])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains("hidden.cow cannot be read (Permission denied)"), "\(r.stderr)")
        let fix = try unprivileged(f, ["fix-backing", "--to", "base.raw"])
        #expect(fix.status == 1, "\(fix.stdout)\(fix.stderr)")
        #expect(fix.stderr.contains("hidden.cow cannot be read"), "\(fix.stderr)")
        #expect(try digests(f) == before)
        #expect(try f.digest("hidden.cow") == hidden)
    }
}
