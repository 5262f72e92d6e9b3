import Foundation
import Testing
import TestSupport
@testable import ImageOps

/// What a hostile review of the built binary found: each test failed before its fix.
@Suite(.serialized)
struct HostileReviewTests {
    static func run(_ args: [String], in dir: TempDir, fastPath: Bool = true) throws -> RunResult {
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": dir.path]
        if !fastPath { env["IMGTOOL_NO_FAST_PATH"] = "1" }
        return try ImgtoolBinary.run(args, cwd: dir.path, environment: env)
    }

    /// A read refusal's hint is a line of its own, not a literal `\n` inside the headline (offset and scan).
    @Test func readRefusalsPutTheirHintOnALineOfItsOwn() throws {
        let dir = try TempDir("hostile-read")
        try QemuImg.run(["create", "-q", "-f", "raw", "blank.raw", "1M"], cwd: dir.path)
        let offset = try Self.run(["offset", "blank.raw", "1"], in: dir)
        #expect(offset.status == 1)
        #expect(offset.stderr == "imgtool: error: blank.raw: has no partition 1 (it has no partitions)\n  instead: imgtool partitions blank.raw\n", "\(offset.stderr.debugDescription)")
        let scan = try Self.run(["scan", "blank.raw"], in: dir)
        #expect(scan.status == 1)
        #expect(scan.stderr == "imgtool: error: blank.raw: is not a folder; scan looks through a folder of images\n  instead: imgtool chain blank.raw\n", "\(scan.stderr.debugDescription)")
    }

    /// A suggested command names a file starting with "-" so that it can be pasted: `./-name`, which no parser reads
    /// as an option (a bare `-name` is refused with exit 64).
    @Test func suggestionsForDashNamesCanBePasted() throws {
        let dir = try TempDir("hostile-dash")
        try QemuImg.run(["create", "-q", "-f", "raw", "--", "-b.raw", "1M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "./-gone.raw", "-F", "raw", "--", "-t.qcow2", "1M"], cwd: dir.path)
        let scan = try Self.run(["scan", "."], in: dir)
        #expect(scan.status == 2)
        let fix = scan.stdout.split(separator: "\n").first { $0.contains("fix: imgtool fix-backing") }
        #expect(fix?.hasSuffix("fix: imgtool fix-backing ./-t.qcow2 --to ./-b.raw") == true, "\(scan.stdout)")
        // The suggestion works as printed.
        let argv = ["fix-backing", "./-t.qcow2", "--to", "./-b.raw", "--dry-run"]
        let dry = try Self.run(argv, in: dir)
        #expect(dry.status == 0, "\(dry.stderr)")
        let offset = try Self.run(["offset", "./-b.raw", "1"], in: dir)
        #expect(offset.stderr.contains("instead: imgtool partitions ./-b.raw\n"), "\(offset.stderr)")
    }

    /// mbr-wrap covers a regular file or a block device; a folder, FIFO or character device is refused by what it
    /// is (not as "0 bytes"), and nothing is written.
    @Test func mbrWrapRefusesWhatIsNotAPartition() throws {
        let dir = try TempDir("hostile-mbr")
        try FileManager.default.createDirectory(atPath: dir.path + "/folder", withIntermediateDirectories: false)
        #expect(mkfifo(dir.path + "/fifo", 0o600) == 0)
        for (name, word) in [("folder", "is a directory"), ("fifo", "is a special file"), ("/dev/zero", "is a special file")] {
            let out = dir.path + "/out.mbr"
            let r = try Self.run(["mbr-wrap", name, "--out", out], in: dir)
            #expect(r.status == 1, "\(name): \(r.stdout)")
            #expect(r.stderr.hasPrefix("imgtool: error: \(name): \(word)"), "\(name): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(name): an MBR file was written")
        }
    }

    /// A negative number where a value belongs is judged as the value it is, by every command (issue 12 fixed
    /// `offset`, `resize` and `--max-depth`; `create` and `--type` still said "Missing").
    @Test func negativeValuesAreJudgedNotMissing() throws {
        let dir = try TempDir("hostile-neg")
        try QemuImg.run(["create", "-q", "-f", "raw", "p.img", "1M"], cwd: dir.path)
        let create = try Self.run(["create", "x.img", "-1G"], in: dir)
        #expect(create.status == 64)
        #expect(create.stderr.hasPrefix("imgtool: error: size '-1G' is not a size"), "\(create.stderr)")
        let type = try Self.run(["mbr-wrap", "p.img", "--type", "-1"], in: dir)
        #expect(type.status == 64)
        #expect(type.stderr.hasPrefix("imgtool: error: --type must be a hex byte"), "\(type.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/x.img"))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/p.img.mbr"))
    }

    /// `fix-backing --to NEW` with no image named, in a folder where a symbolic link names an overlay: the overlay is
    /// one image, changed once. Changing it twice overwrote its save with the already-changed header, so `undo` said
    /// "the change never landed" and dropped the only copy of the old header.
    @Test func oneImageUnderTwoNamesIsChangedOnceAndCanBeUndone() throws {
        let dir = try TempDir("hostile-twice")
        try FileManager.default.createDirectory(atPath: dir.path + "/new", withIntermediateDirectories: false)
        try QemuImg.run(["create", "-q", "-f", "raw", "new/img1.raw", "1M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "img1.raw", "-F", "raw", "o1.cow", "1M"], cwd: dir.path)
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/link.cow", withDestinationPath: "o1.cow")
        let before = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/o1.cow"))
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": dir.path, "IMGTOOL_STATE_DIR": dir.path + "/state"]
        let fix = try ImgtoolBinary.run(["fix-backing", "--to", "new/img1.raw"], cwd: dir.path, environment: env)
        #expect(fix.status == 0, "\(fix.stderr)")
        #expect(fix.stdout.hasPrefix("found 1 image with a broken link to img1.raw: "), "\(fix.stdout)")
        #expect(fix.stdout.components(separatedBy: "saved the old header").count == 2, "\(fix.stdout)")
        // Named twice on the command line: the same.
        env["IMGTOOL_STATE_DIR"] = dir.path + "/state2"
        let twice = try ImgtoolBinary.run(["fix-backing", "o1.cow", "link.cow", "--to", "new/img1.raw"], cwd: dir.path, environment: env)
        #expect(twice.status == 0, "\(twice.stderr)")
        #expect(twice.stdout.components(separatedBy: "saved the old header").count == 2, "\(twice.stdout)")
        env["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        let undo = try ImgtoolBinary.run(["undo", "o1.cow"], cwd: dir.path, environment: env)
        #expect(undo.status == 0, "\(undo.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/o1.cow")) == before, "undo did not put the first header back: \(undo.stdout)")
    }

    /// `undo` on a folder, FIFO or device says what the path is (it said "could not open it (Invalid argument)"),
    /// and the scan summary counts in words a reader expects ("1 image in 1 chain", not "1 images in 1 chains").
    @Test func undoSaysWhatThePathIsAndScanCountsInWords() throws {
        let dir = try TempDir("hostile-words")
        #expect(mkfifo(dir.path + "/fifo", 0o600) == 0)
        try FileManager.default.createDirectory(atPath: dir.path + "/sub", withIntermediateDirectories: false)
        for (name, word) in [("sub", "is a directory"), ("fifo", "is a special file"), ("/dev/null", "is a special file")] {
            let r = try Self.run(["undo", name], in: dir)
            #expect(r.status == 1)
            #expect(r.stderr.hasPrefix("imgtool: error: \(name): \(word)"), "\(name): \(r.stderr)")
        }
        try QemuImg.run(["create", "-q", "-f", "raw", "sub/a.raw", "1M"], cwd: dir.path)
        let scan = try Self.run(["scan", "sub"], in: dir)
        #expect(scan.stdout.hasSuffix("1 image in 1 chain, no broken links\n"), "\(scan.stdout)")
    }

    /// A name ending in "/" names a folder. swift-system's FilePath drops the slash, so `v.qcow2/` opened v.qcow2
    /// and fix-backing wrote a backing name relative to "v.qcow2/" as if it were a folder (`../base.raw`, a broken
    /// chain, exit 1 "the name now names nothing"); `create new/` left a 196 KiB file `new` behind. Now each is
    /// refused before anything is written.
    @Test func aTrailingSlashNamesNoFile() throws {
        let dir = try TempDir("hostile-slash")
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "1M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "v.qcow2"], cwd: dir.path)
        let before = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/v.qcow2"))
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": dir.path, "IMGTOOL_STATE_DIR": dir.path + "/state"]
        for argv in [["fix-backing", "v.qcow2/", "--to", "base.raw"], ["info", "v.qcow2/"], ["rebase", "v.qcow2/", "--flatten"]] {
            let r = try ImgtoolBinary.run(argv, cwd: dir.path, environment: env)
            #expect(r.status == 1, "\(argv): \(r.stdout)")
            #expect(r.stderr.hasPrefix("imgtool: error: v.qcow2/: ") && r.stderr.contains("v.qcow2/: no such file"), "\(argv): \(r.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/v.qcow2")) == before)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/state"))?.isEmpty ?? true)
        // A backing name "base.raw/" is one QEMU cannot open ("Not a directory"): the chain is broken, not healthy.
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "base.raw/", "-F", "raw", "slash.qcow2", "1M"], cwd: dir.path)
        let chain = try ImgtoolBinary.run(["chain", "slash.qcow2"], cwd: dir.path, environment: env)
        #expect(chain.status == 2, "\(chain.stdout)")
        env["IMGTOOL_STATE_DIR"] = nil
        for (argv, name) in [(["create", "new/", "1M"], "new"), (["overlay", "base.raw", "ov/"], "ov"), (["mbr-wrap", "base.raw", "--out", "m/"], "m")] {
            let r = try ImgtoolBinary.run(argv, cwd: dir.path, environment: env)
            #expect(r.status == 1, "\(argv): \(r.stdout)")
            #expect(r.stderr.hasPrefix("imgtool: error: \(name)/: ends in /"), "\(argv): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.path + "/" + name), "\(argv) left \(name) behind")
        }
    }

    /// A new backing name reached through /proc (`/proc/self/fd/0`, `/dev/stdin`) names a file only while imgtool
    /// runs: `rebase --onto /proc/self/fd/0 --unsafe` wrote "../../proc/PID/fd/0" (dangling once imgtool exits), and
    /// its loop check followed the base's chain from /proc/PID/fd/, so a loop went unseen. Each is refused, nothing
    /// is written, and the hint names the file itself.
    @Test func aBackingNameThroughProcIsRefused() throws {
        let dir = try TempDir("hostile-proc")
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "1M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "l1.qcow2"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "l1.qcow2", "-F", "qcow2", "l2.qcow2"], cwd: dir.path)
        let before = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/l1.qcow2"))
        let env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": dir.path, "IMGTOOL_STATE_DIR": dir.path + "/state"]
        let l2 = open(dir.path + "/l2.qcow2", O_RDONLY)
        #expect(l2 >= 0)
        defer { close(l2) }
        let fdName = "/proc/\(getpid())/fd/\(l2)"
        for argv in [["rebase", "l1.qcow2", "--onto", fdName, "--unsafe"], ["fix-backing", "l1.qcow2", "--to", fdName, "--force"],
                     ["overlay", fdName, "new.qcow2"]] {
            let r = try ImgtoolBinary.run(argv, cwd: dir.path, environment: env)
            #expect(r.status == 1, "\(argv): \(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains("/proc"), "\(argv): \(r.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/l1.qcow2")) == before)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/new.qcow2"))
    }

    /// Was NOT FIXED in the review: `commit` handed qemu-img the layers' names, so a base renamed over between the
    /// checks and qemu-img received the data. Now every layer is held from the checks and qemu-img gets the chain as
    /// a `json:` name over those descriptors: the decoy is never written, the checked base gets the data (copy-on-
    /// write of a partial cluster reads the checked base's own backing file), and the command says the names moved.
    @Test func commitWritesTheCheckedBaseWhenItIsRenamedOver() async throws {
        let dir = try TempDir("hostile-commit")
        try QemuImg.run(["create", "-q", "-f", "raw", "r.raw", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0x99 0 4M", "r.raw"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "r.raw", "-F", "raw", "base.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x11 0 512k", "base.qcow2"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x33 2M 1k", "top.qcow2"], cwd: dir.path)
        let expected = try ExpectedDisk(from: dir.file("top.qcow2"), at: dir.file("expected.raw"))
        try QemuImg.run(["create", "-q", "-f", "qcow2", "decoy.qcow2", "4M"], cwd: dir.path)
        let raw = try fileDigest(dir.file("r.raw"))

        let checked = try Operations.commit(dir.file("top.qcow2"), base: nil, store: nil, force: false, progress: false)
        #expect(checked.renamedLayers() == nil)
        #expect(rename(dir.file("base.qcow2"), dir.file("base.orig")) == 0)
        #expect(rename(dir.file("decoy.qcow2"), dir.file("base.qcow2")) == 0)
        let decoy = try fileDigest(dir.file("base.qcow2"))
        _ = try await Executor.execute(checked.plan, qemuImg: ImageOps.QemuImg.locate(nil))

        #expect(try fileDigest(dir.file("base.qcow2")) == decoy, "the decoy was written")
        #expect(try fileDigest(dir.file("r.raw")) == raw)
        try QemuImg.run(["check", dir.file("base.orig")])
        try QemuImg.run(["check", dir.file("base.qcow2")])
        try expected.check(dir.file("base.orig"))
        let moved = checked.renamedLayers()
        #expect(moved?.contains("base.qcow2 now names another file") == true, "\(moved ?? "nil")")
    }

    /// A safe rebase copies what the old backing file provides: that file (and its chain) is held from the checks,
    /// so an old base renamed over before qemu-img runs is not what gets copied; the guest keeps its bytes.
    @Test func safeRebaseReadsTheCheckedOldBaseWhenItIsRenamedOver() async throws {
        let dir = try TempDir("hostile-rebase")
        try QemuImg.run(["create", "-q", "-f", "raw", "old.raw", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0x44 0 4M", "old.raw"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-c", "write -P 0x55 1M 1k", "top.qcow2"], cwd: dir.path)
        let expected = try ExpectedDisk(from: dir.file("top.qcow2"), at: dir.file("expected.raw"))
        try QemuImg.run(["create", "-q", "-f", "raw", "new.raw", "4M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "raw", "decoy.raw", "4M"], cwd: dir.path)
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0x66 0 4M", "decoy.raw"], cwd: dir.path)

        let plan = try Operations.rebase(dir.file("top.qcow2"), onto: dir.file("new.raw"), flatten: false, unsafe: false, progress: false)
        #expect(rename(dir.file("old.raw"), dir.file("old.orig")) == 0)
        #expect(rename(dir.file("decoy.raw"), dir.file("old.raw")) == 0)
        let decoy = try fileDigest(dir.file("old.raw"))
        _ = try await Executor.execute(plan, qemuImg: ImageOps.QemuImg.locate(nil))

        #expect(try fileDigest(dir.file("old.raw")) == decoy)
        try QemuImg.run(["check", dir.file("top.qcow2")])
        try expected.check(dir.file("top.qcow2"))
    }
}
