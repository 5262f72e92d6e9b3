import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// Every changing command end to end against the real qemu-img, run from a folder other than the images' own.
/// Every refusal leaves the file's checksum as it was; every dry run changes nothing.
@Suite(.serialized)
struct ChangeTests {
    let root: TempDir
    let store: String
    let elsewhere: String
    let env: [String: String]

    init() throws {
        root = try TempDir("change")
        store = try root.mkdir("store")
        elsewhere = try root.mkdir("elsewhere")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = root.path + "/state"
        env = e
    }

    func qemu(_ args: String...) throws { try QemuImg.run(args, cwd: store) }

    /// imgtool from `elsewhere`, image paths given relative to it.
    func imgtool(_ args: String...) throws -> RunResult {
        try ImgtoolBinary.run(args, cwd: elsewhere, environment: env)
    }

    func s(_ name: String) -> String { "../store/" + name }
    func digest(_ name: String) throws -> String { try fileDigest(store + "/" + name) }
    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: store + "/" + name) }

    func qemuInfo(_ name: String) throws -> [String: Any] {
        try #require(try QemuImg.info(store + "/" + name) as? [String: Any])
    }

    func guestData(_ name: String) throws -> String {
        let out = root.file("guest-\(UUID().uuidString.prefix(6)).raw")
        try QemuImg.run(["convert", "-O", "raw", store + "/" + name, out])
        defer { try? FileManager.default.removeItem(atPath: out) }
        return try fileDigest(out)
    }

    func qemuIO(_ name: String, _ cmd: String) throws {
        let io = try #require(which("qemu-io"))
        let r = try runProgram(io, ["-c", cmd, store + "/" + name])
        #expect(r.status == 0, "\(r.stderr)")
    }

    // MARK: argv

    @Test func argvIsExact() {
        // With a backing file and a size, qemu-img is told not to open the (already checked) backing file.
        #expect(QemuImgCommand.create(image: QemuImgCommand.heldImage, format: "qcow2", size: 512, backing: "b.raw", backingFormat: "raw").arguments
                == ["create", "-q", "-f", "qcow2", "-u", "-b", "b.raw", "-F", "raw", "/proc/self/fd/0", "512"])
        #expect(QemuImgCommand.heldQCow2(backing: nil)
                == #"json:{"driver":"qcow2","file":{"driver":"file","filename":"/proc/self/fd/0"},"backing":null}"#)
        #expect(QemuImgCommand.heldQCow2(backing: ("raw", "/v/a\"b.raw"))
                == #"json:{"driver":"qcow2","file":{"driver":"file","filename":"/proc/self/fd/0"},"backing":{"driver":"raw","file":{"driver":"file","filename":"/v/a\"b.raw"}}}"#)
        // commit's chain: every layer explicit, the last without a backing key (raw takes none), devices as host_device.
        let chain: [QemuImgCommand.HeldLayer] = [.init(format: "qcow2", path: QemuImgCommand.heldImage, onDevice: false),
                                                 .init(format: "qed", path: "/proc/7/fd/5", onDevice: false),
                                                 .init(format: "raw", path: "/proc/7/fd/6", onDevice: true)]
        #expect(QemuImgCommand.heldChain(chain[...])
                == #"json:{"driver":"qcow2","file":{"driver":"file","filename":"/proc/self/fd/0"},"backing":{"driver":"qed","file":{"driver":"file","filename":"/proc/7/fd/5"},"backing":{"driver":"raw","file":{"driver":"host_device","filename":"/proc/7/fd/6"}}}}"#)
        #expect(QemuImgCommand.commit(image: QemuImgCommand.heldChain(chain[1...]), format: "qed", base: nil, progress: true).arguments
                == ["commit", "-f", "qed", "-p", #"json:{"driver":"qed","file":{"driver":"file","filename":"/proc/7/fd/5"},"backing":{"driver":"raw","file":{"driver":"host_device","filename":"/proc/7/fd/6"}}}"#])
        #expect(QemuImgCommand.create(image: "a.cow", format: "qcow2", size: nil, backing: "../b.raw", backingFormat: "raw").arguments
                == ["create", "-q", "-f", "qcow2", "-b", "../b.raw", "-F", "raw", "a.cow"])
        #expect(QemuImgCommand.create(image: "a.raw", format: "raw", size: 1024, backing: nil, backingFormat: nil).arguments
                == ["create", "-q", "-f", "raw", "a.raw", "1024"])
        #expect(QemuImgCommand.rebase(image: "v.cow", backing: "new/b.raw", backingFormat: "raw", unsafe: true, progress: false).arguments
                == ["rebase", "-f", "qcow2", "-u", "-b", "new/b.raw", "-F", "raw", "v.cow"])
        #expect(QemuImgCommand.rebase(image: "v.cow", backing: "", backingFormat: "raw", unsafe: false, progress: true).arguments
                == ["rebase", "-f", "qcow2", "-p", "-b", "", "v.cow"])
        #expect(QemuImgCommand.resize(image: "d.raw", format: "raw", size: 2048, shrink: true).arguments
                == ["resize", "-q", "-f", "raw", "--shrink", "d.raw", "2048"])
        #expect(QemuImgCommand.rebase(image: "a b.cow", backing: "x'y", backingFormat: "raw", unsafe: true, progress: false)
                .commandLine(qemuImg: "/usr/bin/qemu-img") == #"/usr/bin/qemu-img rebase -f qcow2 -u -b 'x'\''y' -F raw 'a b.cow'"#)
    }

    @Test func pathsAndNames() {
        #expect(Paths.relative("/vms/new/img1.raw", from: "/vms/old") == "../new/img1.raw")
        #expect(Paths.relative("/vms/img1.raw", from: "/vms") == "img1.raw")
        #expect(Paths.relative("/a/b/c.raw", from: "/x/y") == "../../a/b/c.raw")
        #expect(Operations.defaultOverlay(for: "img1.raw") == "img1.cow")
        #expect(Operations.defaultOverlay(for: "/vms/base.img") == "/vms/base.cow")
        #expect(Operations.defaultOverlay(for: "dir/noext") == "dir/noext.cow")
        #expect(Operations.SizeChange("+1G") == .grow(1 << 30))
        #expect(Operations.SizeChange("-512M") == .shrink(512 << 20))
        #expect(Operations.SizeChange("10G") == .absolute(10 << 30))
        #expect(Operations.SizeChange("ten") == nil)
    }

    // MARK: create

    @Test func createAndRefuseOverwrite() throws {
        var r = try imgtool("create", s("new.qcow2"), "64M")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try qemuInfo("new.qcow2")["virtual-size"] as? Int == 64 << 20)
        let before = try digest("new.qcow2")
        r = try imgtool("create", s("new.qcow2"), "1G", "--format", "raw")
        #expect(r.status == 1)
        #expect(r.stderr.contains("already exists"))
        #expect(try digest("new.qcow2") == before)
        r = try imgtool("create", s("dry.raw"), "1M", "--format", "raw", "--dry-run")
        #expect(r.status == 0)
        #expect(r.stdout.contains("create -q -f raw /proc/self/fd/0 1048576 < ../store/dry.raw"), "\(r.stdout)")
        #expect(!exists("dry.raw"))
    }

    // MARK: overlay

    @Test func overlayBesideBaseWithRelativeName() throws {
        try FileManager.default.createDirectory(atPath: store + "/bases", withIntermediateDirectories: true)
        try qemu("create", "-q", "-f", "raw", "bases/img1.raw", "32M")
        var r = try imgtool("overlay", s("bases/img1.raw"))
        #expect(r.status == 0, "\(r.stderr)")
        let info = try qemuInfo("bases/img1.cow")
        #expect(info["backing-filename"] as? String == "img1.raw")
        #expect(info["backing-filename-format"] as? String == "raw")
        #expect(info["virtual-size"] as? Int == 32 << 20)
        // Into another folder: the name climbs out of it.
        r = try imgtool("overlay", s("bases/img1.raw"), s("vm.cow"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try qemuInfo("vm.cow")["backing-filename"] as? String == "bases/img1.raw")
        r = try imgtool("overlay", s("bases/img1.raw"), s("abs.cow"), "--absolute")
        #expect((try qemuInfo("abs.cow")["backing-filename"] as? String)?.hasPrefix("/") == true)
        // Refuses to overwrite.
        let before = try digest("vm.cow")
        r = try imgtool("overlay", s("bases/img1.raw"), s("vm.cow"))
        #expect(r.status == 1)
        #expect(try digest("vm.cow") == before)
    }

    @Test func overlayRefusesBrokenBase() throws {
        try qemu("create", "-q", "-f", "qcow2", "-u", "-b", "gone.raw", "-F", "raw", "mid.qcow2", "1M")
        let r = try imgtool("overlay", s("mid.qcow2"), s("top.cow"))
        #expect(r.status == 1)
        #expect(r.stderr.contains("broken"))
        #expect(!exists("top.cow"))
    }

    // MARK: fix-backing: the wiki's case

    @Test func wikiCaseFixAndUndo() throws {
        try qemu("create", "-q", "-f", "raw", "img1.raw", "64M")
        try qemu("create", "-q", "-f", "qcow2", "-o", "backing_file=img1.raw,backing_fmt=raw", "img1.cow")
        try qemuIO("img1.cow", "write -P 0x5a 1M 64k")
        let original = try digest("img1.cow")
        try FileManager.default.createDirectory(atPath: store + "/new", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: store + "/img1.raw", toPath: store + "/new/img1.raw")
        #expect(try runProgram(try QemuImg.path(), ["info", "--backing-chain", store + "/img1.cow"]).status != 0)

        // Dry run: the exact command, nothing changed.
        var r = try imgtool("fix-backing", s("img1.cow"), "--to", s("new/img1.raw"), "--dry-run")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("rebase -f qcow2 -u -b new/img1.raw -F raw /proc/self/fd/0 < ../store/img1.cow"), "\(r.stdout)")
        #expect(try digest("img1.cow") == original)

        r = try imgtool("fix-backing", s("img1.cow"), "--to", s("new/img1.raw"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("healthy"))
        let chain = try #require(try QemuImg.info(store + "/img1.cow", chain: true) as? [[String: Any]])
        #expect(chain.count == 2)
        #expect(chain[0]["backing-filename"] as? String == "new/img1.raw", "relative stays relative")

        r = try imgtool("undo", s("img1.cow"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try digest("img1.cow") == original, "undo restores the exact original bytes")
        // A second undo has nothing to put back.
        #expect(try imgtool("undo", s("img1.cow")).status == 1)
    }

    @Test func fixBackingWithoutImageInCurrentFolder() throws {
        try qemu("create", "-q", "-f", "raw", "img1.raw", "8M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "img1.raw", "-F", "raw", "a.cow")
        try qemu("create", "-q", "-f", "qcow2", "-b", "img1.raw", "-F", "raw", "b.cow")
        try qemu("create", "-q", "-f", "raw", "other.raw", "8M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "other.raw", "-F", "raw", "c.cow")
        try FileManager.default.moveItem(atPath: store + "/img1.raw", toPath: elsewhere + "/img1.raw")
        let untouched = try digest("c.cow")
        let r = try ImgtoolBinary.run(["fix-backing", "--to", elsewhere + "/img1.raw"], cwd: store, environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("a.cow") && r.stdout.contains("b.cow"))
        for name in ["a.cow", "b.cow"] {
            #expect(try qemuInfo(name)["backing-filename"] as? String == "../elsewhere/img1.raw")
        }
        #expect(try digest("c.cow") == untouched)
        // Nothing left to fix: exit 1.
        #expect(try ImgtoolBinary.run(["fix-backing", "--to", elsewhere + "/img1.raw"], cwd: store, environment: env).status == 1)
    }

    @Test func fixBackingRefusals() throws {
        try qemu("create", "-q", "-f", "raw", "base.raw", "8M")
        try qemu("create", "-q", "-f", "raw", "small.raw", "4M")
        try qemu("create", "-q", "-f", "qcow2", "other.qcow2", "8M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "vm.cow")
        try qemu("create", "-q", "-f", "qcow2", "-b", "vm.cow", "-F", "qcow2", "child.cow")
        let before = try digest("vm.cow")
        let cases: [([String], String)] = [
            (["--to", s("nowhere.raw")], "cannot be read"),
            (["--to", s("vm.cow")], "loop"),
            (["--to", s("child.cow")], "loop"),
            (["--to", s("other.qcow2")], "records its backing as raw"),
            (["--to", s("small.raw")], "bytes"),
        ]
        for (args, words) in cases {
            let r = try ImgtoolBinary.run(["fix-backing", s("vm.cow")] + args, cwd: elsewhere, environment: env)
            #expect(r.status == 1, "\(args)")
            #expect(r.stderr.contains(words), "\(args): \(r.stderr)")
            #expect(r.stderr.hasPrefix("imgtool: error: "))
            #expect(try digest("vm.cow") == before, "\(args) left the image unchanged")
        }
        // --force accepts the size mismatch.
        let r = try imgtool("fix-backing", s("vm.cow"), "--to", s("small.raw"), "--force")
        #expect(r.status == 0, "\(r.stderr)")
    }

    // MARK: rebase

    @Test func safeRebaseKeepsGuestData() throws {
        try qemu("create", "-q", "-f", "raw", "base.raw", "8M")
        try qemuIO("base.raw", "write -P 0x11 0 1M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "vm.cow")
        try qemuIO("vm.cow", "write -P 0x22 512k 64k")
        try qemu("create", "-q", "-f", "raw", "blank.raw", "8M")
        let guest = try guestData("vm.cow")
        var r = try imgtool("rebase", s("vm.cow"), "--onto", s("blank.raw"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try guestData("vm.cow") == guest)
        #expect(try qemuInfo("vm.cow")["backing-filename"] as? String == "blank.raw")
        r = try imgtool("rebase", s("vm.cow"), "--flatten")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try guestData("vm.cow") == guest)
        #expect(try qemuInfo("vm.cow")["backing-filename"] == nil)
    }

    @Test func safeRebaseRefusesUnreadableOldBacking() throws {
        try qemu("create", "-q", "-f", "raw", "new.raw", "8M")
        try qemu("create", "-q", "-f", "qcow2", "-u", "-b", "lost.raw", "-F", "raw", "vm.cow", "8M")
        let before = try digest("vm.cow")
        let r = try imgtool("rebase", s("vm.cow"), "--onto", s("new.raw"))
        #expect(r.status == 1)
        #expect(r.stderr.contains("fix-backing"))
        #expect(try digest("vm.cow") == before)
        // Unsafe mode rewrites the header only, and saves it.
        let u = try imgtool("rebase", s("vm.cow"), "--onto", s("new.raw"), "--unsafe")
        #expect(u.status == 0, "\(u.stderr)")
        #expect(try imgtool("undo", s("vm.cow")).status == 0)
        #expect(try digest("vm.cow") == before)
    }

    @Test func undoRefusesWhenImageChangedSince() throws {
        try qemu("create", "-q", "-f", "raw", "a.raw", "8M")
        try qemu("create", "-q", "-f", "raw", "b.raw", "8M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "a.raw", "-F", "raw", "vm.cow")
        #expect(try imgtool("fix-backing", s("vm.cow"), "--to", s("b.raw")).status == 0)
        try qemu("resize", "-q", "vm.cow", "16M")
        let before = try digest("vm.cow")
        let r = try imgtool("undo", s("vm.cow"))
        #expect(r.status == 1)
        #expect(r.stderr.contains("changed"))
        #expect(try digest("vm.cow") == before)
    }

    // MARK: resize

    @Test func resizeGrowAndGuardedShrink() throws {
        try qemu("create", "-q", "-f", "qcow2", "d.qcow2", "64M")
        var r = try imgtool("resize", s("d.qcow2"), "+64M")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try qemuInfo("d.qcow2")["virtual-size"] as? Int == 128 << 20)
        let before = try digest("d.qcow2")
        r = try imgtool("resize", s("d.qcow2"), "32M")
        #expect(r.status == 1)
        #expect(r.stderr.contains("--shrink"))
        #expect(try digest("d.qcow2") == before)
        r = try imgtool("resize", s("d.qcow2"), "-96M", "--shrink", "--dry-run")
        #expect(r.status == 0)
        #expect(try digest("d.qcow2") == before)
        r = try imgtool("resize", s("d.qcow2"), "-96M", "--shrink")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try qemuInfo("d.qcow2")["virtual-size"] as? Int == 32 << 20)
    }

    // MARK: in use

    @Test func inUseByQemuNbdIsRefusedAndNamed() throws {
        try qemu("create", "-q", "-f", "raw", "base.raw", "8M")
        try qemu("create", "-q", "-f", "raw", "base2.raw", "8M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "held.cow")
        let nbd = try #require(which("qemu-nbd"), "qemu-nbd (qemu-utils) is needed")
        // --fork returns once the server has the image open; its output goes nowhere so no pipe stays open.
        let pidFile = root.file("nbd.pid")
        let line = [nbd, "--fork", "--pid-file", pidFile, "-k", root.file("nbd.sock"), "-f", "qcow2", store + "/held.cow"]
            .map(shellQuote).joined(separator: " ") + " >/dev/null 2>&1"
        #expect(shell(line) == 0)
        let pid = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { if let p = Int32(pid) { kill(p, SIGTERM) } }
        let before = try digest("held.cow")

        var r = try imgtool("who", s("held.cow"))
        #expect(r.status == 2)
        #expect(r.stdout.contains("PID \(pid)"), "\(r.stdout)")
        #expect(r.stdout.contains("qemu-nbd"))
        #expect(r.stdout.contains("writing it"), "\(r.stdout)")

        r = try imgtool("resize", s("held.cow"), "+1M")
        #expect(r.status == 1)
        #expect(r.stderr.contains("PID \(pid)"), "\(r.stderr)")
        r = try imgtool("fix-backing", s("held.cow"), "--to", s("base2.raw"))
        #expect(r.status == 1)
        #expect(r.stderr.contains("PID \(pid)"), "\(r.stderr)")
        #expect(try digest("held.cow") == before)

        // Nobody holds the base's sibling.
        #expect(try imgtool("who", s("base2.raw")).status == 0)
    }

    @Test func missingQemuImgIsClear() throws {
        try qemu("create", "-q", "-f", "raw", "x.raw", "1M")
        let r = try imgtool("resize", s("x.raw"), "+1M", "--qemu-img", "/nonexistent/qemu-img")
        #expect(r.status == 1)
        #expect(r.stderr.contains("qemu-img"))
    }

    // MARK: QED and qcow v1 links

    /// A QED overlay whose base moved: `chain` reads the QED link and offers fix-backing, which repoints it through
    /// `qemu-img rebase -f qed -u` (guest data intact, qemu-img agrees), and `undo` puts back the very bytes.
    @Test func qedOverlayIsRepointedAndUndone() throws {
        try qemu("create", "-q", "-f", "raw", "base.raw", "4M")
        try qemuIO("base.raw", "write -P 0x5a 0 64k")
        try qemu("create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "vm.qed")
        try qemuIO("vm.qed", "write -P 0x33 1M 64k")
        let guest = try guestData("vm.qed")
        try FileManager.default.createDirectory(atPath: store + "/moved", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: store + "/base.raw", toPath: store + "/moved/base.raw")
        let before = try digest("vm.qed")

        let broken = try imgtool("chain", "--output", "json", s("vm.qed"))
        #expect(broken.status == 2)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(broken.stdout.utf8)) as? [String: Any])
        let problem = try #require((report["problems"] as? [[String: Any]])?.first)
        #expect(problem["kind"] as? String == "missing")
        #expect(problem["backing"] as? String == "base.raw")
        #expect((problem["suggestions"] as? [String])?.first?.hasPrefix("imgtool fix-backing ../store/vm.qed --to ") == true, "\(problem)")

        let dry = try imgtool("fix-backing", s("vm.qed"), "--to", s("moved/base.raw"), "--dry-run")
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.contains("rebase -f qed -u -b moved/base.raw -F raw"), "\(dry.stdout)")
        #expect(try digest("vm.qed") == before)

        let fixed = try imgtool("fix-backing", s("vm.qed"), "--to", s("moved/base.raw"))
        #expect(fixed.status == 0, "\(fixed.stderr)")
        let info = try qemuInfo("vm.qed")
        #expect(info["backing-filename"] as? String == "moved/base.raw")
        #expect(info["backing-filename-format"] as? String == "raw")
        #expect(try guestData("vm.qed") == guest)
        #expect(try imgtool("chain", s("vm.qed")).status == 0)

        let undo = try imgtool("undo", s("vm.qed"))
        #expect(undo.status == 0, "\(undo.stderr)")
        #expect(try digest("vm.qed") == before)
    }

    /// qemu-img cannot rewrite a qcow v1 link: fix-backing refuses without touching a byte and, like `chain` and
    /// `scan --fix-plan`, gives the symbolic link that mends it; running that line heals the chain.
    @Test func qcowV1LinkIsMendedByASymlink() throws {
        try qemu("create", "-q", "-f", "raw", "base.raw", "4M")
        try qemu("create", "-q", "-f", "qcow", "-b", "base.raw", "-F", "raw", "old.qcow")
        try FileManager.default.createDirectory(atPath: store + "/moved", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: store + "/base.raw", toPath: store + "/moved/base.raw")
        let before = try digest("old.qcow")

        let refused = try imgtool("fix-backing", s("old.qcow"), "--to", s("moved/base.raw"))
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("qcow"), "\(refused.stderr)")
        #expect(refused.stderr.contains("ln -s /"), "\(refused.stderr)")
        #expect(try digest("old.qcow") == before)

        let plan = try ImgtoolBinary.run(["scan", "--fix-plan", "."], cwd: store, environment: env)
        #expect(plan.stdout.contains("old.qcow is qcow, whose link qemu-img cannot rewrite: ln -s "), "\(plan.stdout)")
        #expect(!plan.stdout.contains("imgtool fix-backing"), "\(plan.stdout)")

        let broken = try imgtool("chain", "--output", "json", s("old.qcow"))
        #expect(broken.status == 2)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(broken.stdout.utf8)) as? [String: Any])
        let suggestion = try #require(((report["problems"] as? [[String: Any]])?.first?["suggestions"] as? [String])?.first)
        #expect(suggestion == "ln -s \(store)/moved/base.raw ../store/base.raw", "\(suggestion)")
        let sh = try runProgram("/bin/sh", ["-c", suggestion], cwd: elsewhere)
        #expect(sh.status == 0, "\(sh.stderr)")
        // Mended: both layers read; what remains is the warning that qcow v1 records no backing format.
        let mended = try imgtool("chain", "--output", "json", s("old.qcow"))
        let after = try #require(try JSONSerialization.jsonObject(with: Data(mended.stdout.utf8)) as? [String: Any])
        #expect((after["layers"] as? [Any])?.count == 2)
        #expect((after["problems"] as? [[String: Any]])?.map { $0["kind"] as? String } == ["no-format"])
        #expect(try qemuInfo("old.qcow")["backing-filename"] as? String == "base.raw")
        #expect(try digest("old.qcow") == before)
    }
}
