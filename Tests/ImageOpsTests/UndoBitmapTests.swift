import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// `undo` after a header-only change that qemu-img made into more: an image with a persistent dirty bitmap has it
/// stored anew in other clusters whenever qemu-img opens it for writing, and a lazy-refcounts image left dirty is
/// repaired on open. Putting only the old header back then left refcount-0 clusters in use, leaks and a bitmap stuck
/// in-use. The change says at once that undo will not be possible; undo refuses, leaving the image byte-identical,
/// and says how to go back through qemu-img. `qemu-img check` is clean after every change and every undo.
@Suite(.serialized)
struct UndoBitmapTests {
    let f: SafetyFixture

    init() throws { f = try SafetyFixture() }

    func qemuIO(_ name: String, _ commands: String...) throws -> RunResult {
        let io = try #require(which("qemu-io"), "qemu-io (qemu-utils) is needed")
        return try runProgram(io, commands.flatMap { ["-c", $0] } + [f.path(name)])
    }

    func check(_ name: String) throws {
        let r = try runProgram(try QemuImg.path(), ["check", f.path(name)])
        #expect(r.status == 0, "qemu-img check \(name): \(r.stdout) \(r.stderr)")
    }

    /// The flags of every persistent bitmap qemu-img reports.
    func bitmapFlags(_ name: String) throws -> [[String]] {
        let info = try #require(try QemuImg.info(f.path(name)) as? [String: Any])
        let specific = (info["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        let bitmaps = specific?["bitmaps"] as? [[String: Any]] ?? []
        return bitmaps.map { $0["flags"] as? [String] ?? [] }
    }

    func bitmapOverlay() throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "64M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "64M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "vm.cow")
        try f.qemu("bitmap", "--add", "vm.cow", "b0")
        #expect(try qemuIO("vm.cow", "write -P 0x5a 1M 64k").status == 0)
        try f.qemu("bitmap", "--add", "vm.cow", "b1")
        #expect(try bitmapFlags("vm.cow").count == 2)
    }

    @Test(arguments: [["fix-backing", "vm.cow", "--to", "new.raw"], ["rebase", "vm.cow", "--onto", "new.raw", "--unsafe"]])
    func persistentBitmapsMakeUndoRefuseAndTheWayBackWorks(_ argv: [String]) throws {
        try bitmapOverlay()
        let dry = try f.imgtool(argv + ["--dry-run"])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.contains("has persistent dirty bitmaps") && dry.stdout.contains("undo will not be able"), "\(dry.stdout)")

        let change = try f.imgtool(argv)
        #expect(change.status == 0, "\(change.stderr)")
        #expect(change.stdout.contains("imgtool undo will refuse"), "\(change.stdout)")
        #expect(!change.stdout.contains("imgtool undo puts it back"), "\(change.stdout)")
        try check("vm.cow")
        #expect(try f.backing("vm.cow") == "new.raw")
        let changed = try f.digest("vm.cow")

        for args in [["undo", "vm.cow", "--dry-run"], ["undo", "vm.cow"]] {
            let undo = try f.imgtool(args)
            #expect(undo.status == 1, "\(args): \(undo.stdout)")
            #expect(undo.stderr.contains("persistent dirty bitmaps") && undo.stderr.contains("undo refused, the image is left as it is"), "\(undo.stderr)")
            #expect(undo.stderr.contains("imgtool fix-backing vm.cow --to old.raw"), "\(undo.stderr)")
            #expect(undo.stderr.contains("qemu-img rebase -u -b old.raw -F raw vm.cow"), "\(undo.stderr)")
            #expect(try f.digest("vm.cow") == changed, "a refused undo wrote")
            try check("vm.cow")
        }
        let after = try bitmapFlags("vm.cow")
        #expect(after.count == 2 && after.allSatisfy { !$0.contains("in-use") }, "\(after)")

        // The way back the refusal names: repointed through qemu-img, the image stays consistent, bitmaps intact.
        let back = try f.imgtool(["fix-backing", "vm.cow", "--to", "old.raw"])
        #expect(back.status == 0, "\(back.stderr)")
        #expect(try f.backing("vm.cow") == "old.raw")
        try check("vm.cow")
        let flags = try bitmapFlags("vm.cow")
        #expect(flags.count == 2 && flags.allSatisfy { !$0.contains("in-use") }, "\(flags)")
        let data = try qemuIO("vm.cow", "read -P 0x5a 1M 64k")
        #expect(data.status == 0 && !data.stdout.contains("Pattern verification failed"), "\(data.stdout)")
    }

    /// A lazy-refcounts image left dirty (qemu-io aborted mid-session): qemu-img repairs it when it opens it for the
    /// change, so more than the header changed; undo refuses and the repaired image stays clean.
    @Test func aDirtyImageRepairedByTheChangeIsNotUndone() throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "64M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "64M")
        try f.qemu("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "old.raw", "-F", "raw", "vm.cow")
        _ = try qemuIO("vm.cow", "write -P 0x33 0 128k", "abort")
        let info = try #require(try QemuImg.info(f.path("vm.cow")) as? [String: Any])
        let dirty = ((info["format-specific"] as? [String: Any])?["data"] as? [String: Any])?["lazy-refcounts"] as? Bool
        #expect(dirty == true)
        #expect(try runProgram(try QemuImg.path(), ["check", f.path("vm.cow")]).status != 0, "the abort left no dirty image")

        let dry = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw", "--dry-run"])
        #expect(dry.stdout.contains("not closed cleanly"), "\(dry.stdout)")
        let change = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"])
        #expect(change.status == 0, "\(change.stderr)")
        #expect(change.stdout.contains("imgtool undo will refuse"), "\(change.stdout)")
        try check("vm.cow")
        let changed = try f.digest("vm.cow")
        let undo = try f.imgtool(["undo", "vm.cow"])
        #expect(undo.status == 1)
        #expect(undo.stderr.contains("undo refused"), "\(undo.stderr)")
        #expect(try f.digest("vm.cow") == changed)
        try check("vm.cow")
    }

    /// An autoclear bit qemu-img does not know (bit 5) is cleared when it opens the image for writing: more than the
    /// backing name changed, which the change says, and undo refuses naming the bits.
    @Test func anUnknownAutoclearBitClearedByQemuImgIsNotUndone() throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "64M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "64M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "vm.cow")
        let handle = try #require(FileHandle(forUpdatingAtPath: f.path("vm.cow")))
        try handle.seek(toOffset: 95)
        try handle.write(contentsOf: [0x20])
        try handle.close()
        let change = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"])
        #expect(change.status == 0, "\(change.stderr)")
        #expect(change.stdout.contains("autoclear feature bits 32 to 0") && change.stdout.contains("imgtool undo will refuse"), "\(change.stdout)")
        try check("vm.cow")
        let changed = try f.digest("vm.cow")
        let undo = try f.imgtool(["undo", "vm.cow"])
        #expect(undo.status == 1 && undo.stderr.contains("autoclear feature bits"), "\(undo.stderr)")
        #expect(try f.digest("vm.cow") == changed)
        try check("vm.cow")
    }

    /// The fingerprint's hash is SHA-256: the FIPS 180-4 vectors, fed whole and in uneven pieces.
    @Test func sha256KnownVectors() {
        let vectors: [(String, String)] = [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ]
        for (text, digest) in vectors {
            var whole = SHA256()
            whole.update(Array(text.utf8))
            #expect(whole.hex() == digest, "\(text)")
            var pieces = SHA256()
            let bytes = Array(text.utf8)
            var i = 0
            for size in [1, 5, 63, 64, 1000] where i < bytes.count {
                pieces.update(bytes[i..<min(bytes.count, i + size)])
                i = min(bytes.count, i + size)
            }
            #expect(pieces.hex() == digest, "\(text) in pieces")
        }
        var million = SHA256()
        let block = [UInt8](repeating: 0x61, count: 1000)
        for _ in 0..<1000 { million.update(block) }
        #expect(million.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// A QED with need-check set (not closed cleanly) is checked and repaired by qemu-img on open: undo refuses.
    @Test func aQEDWithNeedCheckIsNotUndone() throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "64M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "64M")
        try f.qemu("create", "-q", "-f", "qed", "-b", "old.raw", "-F", "raw", "vm.qed")
        #expect(try qemuIO("vm.qed", "write -P 1 0 64k").status == 0)
        let handle = try #require(FileHandle(forUpdatingAtPath: f.path("vm.qed")))
        try handle.seek(toOffset: 16)
        // QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE
        try handle.write(contentsOf: [0x07])
        try handle.close()
        let dry = try f.imgtool(["fix-backing", "vm.qed", "--to", "new.raw", "--dry-run"])
        #expect(dry.stdout.contains("QED need-check"), "\(dry.stdout)")
        let change = try f.imgtool(["fix-backing", "vm.qed", "--to", "new.raw"])
        #expect(change.status == 0, "\(change.stderr)")
        #expect(change.stdout.contains("need-check bit") && change.stdout.contains("imgtool undo will refuse"), "\(change.stdout)")
        try check("vm.qed")
        let changed = try f.digest("vm.qed")
        let undo = try f.imgtool(["undo", "vm.qed"])
        #expect(undo.status == 1 && undo.stderr.contains("qemu-img rebase -u -b old.raw -F raw vm.qed"), "\(undo.stderr)")
        #expect(try f.digest("vm.qed") == changed)
        try check("vm.qed")
    }

    /// Without bitmaps the header is put back, byte for byte, and qemu-img finds the image clean.
    @Test func aPlainImageIsStillUndoneCleanly() throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "64M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "64M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "vm.cow")
        #expect(try qemuIO("vm.cow", "write -P 0x5a 1M 64k").status == 0)
        let original = try f.digest("vm.cow")
        let change = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"])
        #expect(change.status == 0 && change.stdout.contains("imgtool undo puts it back"), "\(change.stdout)\(change.stderr)")
        try check("vm.cow")
        let undo = try f.imgtool(["undo", "vm.cow"])
        #expect(undo.status == 0, "\(undo.stderr)")
        #expect(try f.digest("vm.cow") == original)
        try check("vm.cow")
    }

    /// A bitmap added after the change rewrites the header and allocates clusters; new guest data allocates
    /// clusters without touching the header. Either way undo refuses and writes nothing.
    @Test func changesAfterTheChangeAreNeverUndoneOver() throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "64M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "64M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "a.cow")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "b.cow")
        for name in ["a.cow", "b.cow"] {
            #expect(try f.imgtool(["fix-backing", name, "--to", "new.raw"]).status == 0)
            try check(name)
        }
        try f.qemu("bitmap", "--add", "a.cow", "late")
        #expect(try qemuIO("b.cow", "write -P 0x11 8M 64k").status == 0)
        for name in ["a.cow", "b.cow"] {
            let before = try f.digest(name)
            let undo = try f.imgtool(["undo", name])
            #expect(undo.status == 1, "\(name): \(undo.stdout)")
            #expect(undo.stderr.contains("changed after imgtool's last change"), "\(name): \(undo.stderr)")
            #expect(try f.digest(name) == before)
            try check(name)
        }
    }
}
