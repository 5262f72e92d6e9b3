import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// Faults from the surroundings: a full or read-only save store, an image on a read-only mount, and QEMU processes
/// that write or only protect a file. Every image's sha256 is compared before and after.
@Suite(.serialized)
struct SafetyHolderTests {
    func overlay(_ f: SafetyFixture) throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "32M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "32M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "vm.cow")
    }

    /// A save store with no room (a 4 KiB tmpfs): refused before anything is written, the errno in words, the
    /// image named, nothing left in the store.
    @Test func fullSaveStoreRefusesBeforeWriting() throws {
        let f = try SafetyFixture()
        try overlay(f)
        let before = try f.digest("vm.cow")
        let small = try f.tmpfs("tiny", size: "4k")
        defer { f.unmount(small) }
        var env = f.environment
        env["IMGTOOL_STATE_DIR"] = small
        let r = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"], environment: env)
        #expect(r.status == 1)
        #expect(r.stderr.contains("vm.cow: could not save its header"), "\(r.stderr)")
        #expect(r.stderr.contains("No space left on device"), "\(r.stderr)")
        #expect(!r.stderr.contains("errno"))
        #expect(try f.digest("vm.cow") == before)
        #expect(try f.backing("vm.cow") == "old.raw")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small).isEmpty, "a partial save was left behind")
        let undo = try f.imgtool(["undo", "vm.cow"], environment: env)
        #expect(undo.status == 1)
        #expect(try f.digest("vm.cow") == before)
    }

    /// A file-size limit (`ulimit -f`) smaller than a save: refused in words (EFBIG, not killed by SIGXFSZ).
    @Test func fileSizeLimitRefusesBeforeWriting() throws {
        let f = try SafetyFixture()
        try overlay(f)
        let before = try f.digest("vm.cow")
        let line = "ulimit -f 8; exec \(shellQuote(try ImgtoolBinary.path())) fix-backing vm.cow --to new.raw"
        let r = try runProgram("/bin/sh", ["-c", line], cwd: f.store, environment: f.environment)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("File too large"), "\(r.stderr)")
        #expect(try f.digest("vm.cow") == before)
        #expect(f.saves().isEmpty, "\(f.saves())")
    }

    /// A `create` that qemu-img cannot finish (no room): the file imgtool reserved is removed, the error says why.
    @Test func failedCreateLeavesNoFile() throws {
        let f = try SafetyFixture()
        let small = try f.tmpfs("tiny-images", size: "4k")
        defer { f.unmount(small) }
        let r = try f.imgtool(["create", small + "/new.qcow2", "1G"])
        #expect(r.status == 1)
        #expect(r.stderr.contains(small + "/new.qcow2:"), "\(r.stderr)")
        #expect(r.stderr.contains("was removed"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small).isEmpty)
    }

    /// A save store on a read-only mount: the same refusal, said in words.
    @Test func readOnlySaveStoreRefuses() throws {
        let f = try SafetyFixture()
        try overlay(f)
        let before = try f.digest("vm.cow")
        let ro = try f.tmpfs("ro-state", size: "1m")
        defer { f.unmount(ro) }
        #expect(shell("mount -o remount,ro \(shellQuote(ro))") == 0)
        var env = f.environment
        env["IMGTOOL_STATE_DIR"] = ro + "/undo"
        let r = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"], environment: env)
        #expect(r.status == 1)
        #expect(r.stderr.contains("Read-only file system"), "\(r.stderr)")
        #expect(try f.digest("vm.cow") == before)
    }

    /// An image on a read-only mount: qemu-img fails, nothing changes, and no save is left for undo to misread.
    @Test func failedChangeLeavesNoSave() throws {
        let f = try SafetyFixture()
        try overlay(f)
        let mnt = try f.tmpfs("ro-images", size: "4m")
        defer { f.unmount(mnt) }
        #expect(shell("cp \(shellQuote(f.path("vm.cow"))) \(shellQuote(f.path("new.raw"))) \(shellQuote(mnt))") == 0)
        #expect(shell("mount -o remount,ro \(shellQuote(mnt))") == 0)
        let before = try fileDigest(mnt + "/vm.cow")
        let r = try f.imgtool(["fix-backing", mnt + "/vm.cow", "--to", mnt + "/new.raw", "--force"])
        #expect(r.status == 1)
        #expect(r.stderr.contains(mnt + "/vm.cow:"), "\(r.stderr)")
        #expect(r.stderr.contains("no save is left behind"), "\(r.stderr)")
        #expect(try fileDigest(mnt + "/vm.cow") == before)
        #expect(f.saves().isEmpty, "\(f.saves())")
        let undo = try f.imgtool(["undo", mnt + "/vm.cow"])
        #expect(undo.status == 1)
        #expect(undo.stderr.contains("no saved header"), "\(undo.stderr)")
    }

    /// `who` and the refusals tell a writer (byte 101) from a holder that only protects the file (byte 201).
    @Test func whoTellsWritingFromProtecting() throws {
        let f = try SafetyFixture()
        try overlay(f)
        let before = try f.digest("vm.cow")
        do {
            let ro = try NBDHolder(f.path("vm.cow"), format: "qcow2", readOnly: true, in: f.root)
            let human = try f.imgtool(["who", "vm.cow"])
            #expect(human.status == 2)
            #expect(human.stdout.contains("protecting it"), "\(human.stdout)")
            #expect(!human.stdout.contains("writing"), "\(human.stdout)")
            #expect(human.stdout.contains("PID \(ro.pid)"))
            let json = try f.imgtool(["who", "vm.cow", "--output", "json"])
            #expect(json.stdout.contains(#""write-locked":false"#) || json.stdout.contains(#""write-locked": false"#), "\(json.stdout)")
            #expect(json.stdout.contains(#""locked":true"#) || json.stdout.contains(#""locked": true"#), "\(json.stdout)")
            let refused = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("protecting it") && !refused.stderr.contains("write lock"), "\(refused.stderr)")
        }
        do {
            let rw = try NBDHolder(f.path("vm.cow"), format: "qcow2", readOnly: false, in: f.root)
            let human = try f.imgtool(["who", "vm.cow"])
            #expect(human.stdout.contains("writing it"), "\(human.stdout)")
            #expect(human.stdout.contains("PID \(rw.pid)"))
            let json = try f.imgtool(["who", "vm.cow", "--output", "json"])
            #expect(json.stdout.contains(#""write-locked":true"#) || json.stdout.contains(#""write-locked": true"#), "\(json.stdout)")
        }
        #expect(try f.digest("vm.cow") == before)
    }

    /// `overlay` and `rebase --onto` refuse a base someone writes, naming the PID; a base only read is fine.
    @Test func baseBeingWrittenIsRefused() throws {
        let f = try SafetyFixture()
        try overlay(f)
        let base = try f.digest("new.raw"), vm = try f.digest("vm.cow")
        do {
            let rw = try NBDHolder(f.path("new.raw"), format: "raw", readOnly: false, in: f.root)
            let r = try f.imgtool(["overlay", "new.raw", "top.cow"])
            #expect(r.status == 1)
            #expect(r.stderr.contains("PID \(rw.pid)") && r.stderr.contains("being written"), "\(r.stderr)")
            #expect(!f.exists("top.cow"))
            for extra in [[], ["--unsafe"]] {
                let rb = try f.imgtool(["rebase", "vm.cow", "--onto", "new.raw"] + extra)
                #expect(rb.status == 1)
                #expect(rb.stderr.contains("PID \(rw.pid)"), "\(rb.stderr)")
            }
            #expect(try f.digest("vm.cow") == vm)
        }
        do {
            _ = try NBDHolder(f.path("new.raw"), format: "raw", readOnly: true, in: f.root)
            let r = try f.imgtool(["overlay", "new.raw", "top.cow"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try f.checks("top.cow"))
            #expect(try f.backing("top.cow") == "new.raw")
        }
        #expect(try f.digest("new.raw") == base)
    }

    /// The smaller fixes: a looping chain is refused before qemu-img, `--type 0` is refused, `ln -s` suggestions
    /// end options, sizes near 2^63 and 2^64 print right.
    @Test func smallerFixes() throws {
        let f = try SafetyFixture()
        try f.qemu("create", "-q", "-f", "qcow2", "a.cow", "8M")
        try f.qemu("create", "-q", "-f", "qcow2", "-u", "-b", "b.cow", "-F", "qcow2", "a2.cow", "8M")
        try f.qemu("create", "-q", "-f", "qcow2", "-u", "-b", "a2.cow", "-F", "qcow2", "b.cow", "8M")
        let a2 = try f.digest("a2.cow")
        let loop = try f.imgtool(["resize", "a2.cow", "+1M"])
        #expect(loop.status == 1)
        #expect(loop.stderr.contains("loops"), "\(loop.stderr)")
        #expect(!loop.stderr.contains("another process"))
        #expect(try f.digest("a2.cow") == a2)

        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: f.path("part.img")))
        let zero = try f.imgtool(["mbr-wrap", "part.img", "--type", "0"])
        #expect(zero.status == 1 || zero.status == 64, "\(zero.stderr)")
        #expect(zero.stderr.contains("empty"), "\(zero.stderr)")
        #expect(!f.exists("part.img.mbr"))
        let ok = try f.imgtool(["mbr-wrap", "part.img"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(FileManager.default.fileExists(atPath: f.path("part.img.mbr")))

        #expect(Repoint.command("-vm.qcow", format: .qcow, resolved: "-base.raw", to: "/x/base.raw") == "ln -s /x/base.raw ./-base.raw")
        #expect(Sizes.human(UInt64(1) << 63) == "8 EiB")
        #expect(Sizes.human((UInt64(1) << 63) - 1) == "8 EiB")
        #expect(Sizes.human(UInt64.max) == "16 EiB")
        #expect(Sizes.human((UInt64(1) << 62) + (UInt64(1) << 59)) == "4.5 EiB")
    }
}
