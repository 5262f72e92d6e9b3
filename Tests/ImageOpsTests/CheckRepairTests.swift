import Foundation
import Testing
import TestSupport

/// `check --repair`: qemu-img's repair after a save of every byte it may rewrite, so `undo` gives back the damaged
/// image byte for byte; refused while anyone holds the image; a dry run changes nothing. These do not need the native
/// checker (after the repair, qemu-img's own answer is shown when imgtool cannot check the format).
@Suite(.serialized)
struct CheckRepairTests {
    /// For each repairable case: repaired (qemu-img check clean after), then undone to the damaged image's sha256.
    @Test(arguments: DamagedImage.allCases)
    func repairThenUndoGivesBackTheDamagedImage(_ damage: DamagedImage) throws {
        let f = try SafetyFixture()
        try damage.make("vm.qcow2", in: f.store)
        let damaged = try f.digest("vm.qcow2")
        #expect(try qemuImgCheck(f.path("vm.qcow2")).status != 0, "the fixture is not damaged")

        let r = try f.imgtool(["check", "vm.qcow2", "--repair", "all"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("The following inconsistencies were found and repaired"), "\(r.stdout)")
        #expect(r.stdout.contains("imgtool undo puts the damaged image back"), "\(r.stdout)")
        #expect(r.stdout.contains("No errors were found on the image."), "\(r.stdout)")
        #expect(try qemuImgCheck(f.path("vm.qcow2")).status == 0)
        #expect(try f.digest("vm.qcow2") != damaged)

        let undo = try f.imgtool(["undo", "vm.qcow2"])
        #expect(undo.status == 0, "\(undo.stdout)\n\(undo.stderr)")
        #expect(try f.digest("vm.qcow2") == damaged, "undo did not give back the damaged image")
        #expect(f.saves().isEmpty, "\(f.saves())")
    }

    /// `-r leaks` on a leaky image: the leak fixed and counted, then undone.
    @Test func repairLeaksOnly() throws {
        let f = try SafetyFixture()
        try DamagedImage.leak.make("vm.qcow2", in: f.store)
        let damaged = try f.digest("vm.qcow2")
        let r = try f.imgtool(["check", "vm.qcow2", "--repair", "leaks", "--output", "json"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("\"leaks-fixed\": 1"), "\(r.stdout)")
        #expect(!r.stdout.contains("\"leaks\":"), "\(r.stdout)")
        #expect(try qemuImgCheck(f.path("vm.qcow2")).status == 0)
        #expect(try f.imgtool(["undo", "vm.qcow2"]).status == 0)
        #expect(try f.digest("vm.qcow2") == damaged)
    }

    /// The dry run prints the save's size and qemu-img's exact command and changes nothing (no save either).
    @Test func dryRunChangesNothing() throws {
        let f = try SafetyFixture()
        try DamagedImage.refcountTooLow.make("vm.qcow2", in: f.store)
        let damaged = try f.digest("vm.qcow2")
        let r = try f.imgtool(["check", "vm.qcow2", "--repair", "all", "--dry-run"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("the save holds "), "\(r.stdout)")
        #expect(r.stdout.contains("would save every byte the repair may rewrite"), "\(r.stdout)")
        #expect(r.stdout.contains("check -f qcow2 -r all --output=json"), "\(r.stdout)")
        #expect(r.stdout.contains("dry run: nothing was changed"), "\(r.stdout)")
        #expect(try f.digest("vm.qcow2") == damaged)
        #expect(f.saves().isEmpty)
    }

    /// Refused, nothing written and nothing saved, while qemu-nbd serves the image or another process holds an fd.
    @Test func refusedWhileHeld() throws {
        let f = try SafetyFixture()
        try DamagedImage.leak.make("vm.qcow2", in: f.store)
        let damaged = try f.digest("vm.qcow2")
        do {
            let nbd = try NBDHolder(f.path("vm.qcow2"), format: "qcow2", readOnly: true, in: f.root)
            let r = try f.imgtool(["check", "vm.qcow2", "--repair", "all"])
            #expect(r.status == 1)
            #expect(r.stderr.contains("is in use by"), "\(r.stderr)")
            #expect(try f.digest("vm.qcow2") == damaged)
            _ = nbd
        }
        do {
            let holder = try FDHolder(f.path("vm.qcow2"))
            let r = try f.imgtool(["check", "vm.qcow2", "--repair", "all"])
            #expect(r.status == 1)
            #expect(r.stderr.contains("is in use by"), "\(r.stderr)")
            #expect(try f.digest("vm.qcow2") == damaged)
            let dry = try f.imgtool(["check", "vm.qcow2", "--repair", "leaks", "--dry-run"])
            #expect(dry.status == 1)
            _ = holder
        }
        #expect(f.saves().isEmpty)
        #expect(try f.digest("vm.qcow2") == damaged)
    }

    /// Undo refuses once the image changed after the repair (new guest data allocates clusters).
    @Test func undoRefusesAfterLaterWrites() throws {
        let f = try SafetyFixture()
        try DamagedImage.copiedWrong.make("vm.qcow2", in: f.store)
        #expect(try f.imgtool(["check", "vm.qcow2", "--repair", "all"]).status == 0)
        let io = try #require(which("qemu-io"))
        #expect(try runProgram(io, ["-f", "qcow2", "-c", "write -P 0x11 32M 64k", f.path("vm.qcow2")]).status == 0)
        let after = try f.digest("vm.qcow2")
        let undo = try f.imgtool(["undo", "vm.qcow2"])
        #expect(undo.status == 1)
        #expect(undo.stderr.contains("changed after the repair"), "\(undo.stderr)")
        #expect(try f.digest("vm.qcow2") == after)
    }

    /// imgtool killed (SIGKILL) while qemu-img is about to repair: the save taken before it started lets undo give
    /// back the damaged image, whether qemu-img then repaired it or not.
    @Test func killDuringRepairLeavesAUsableSave() throws {
        let f = try SafetyFixture()
        try DamagedImage.refcountTooLow.make("vm.qcow2", in: f.store)
        let damaged = try f.digest("vm.qcow2")
        let p = try f.startSlow(["check", "vm.qcow2", "--repair", "all"])
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        // The wrapper goes on without imgtool: wait for it to end (qemu-img holds the image until then).
        try f.waitFor("done")
        #expect(f.saves().contains { $0.hasSuffix(".pending") }, "\(f.saves())")
        let undo = try f.imgtool(["undo", "vm.qcow2"])
        #expect(undo.status == 0, "\(undo.stdout)\n\(undo.stderr)")
        #expect(try f.digest("vm.qcow2") == damaged)
        #expect(f.saves().isEmpty, "\(f.saves())")
    }

    /// A raw image is refused (imgtool repairs qcow2 only), unchanged.
    @Test func rawRepairRefused() throws {
        let f = try SafetyFixture()
        try f.qemu("create", "-q", "-f", "raw", "disk.raw", "1M")
        let before = try f.digest("disk.raw")
        let r = try f.imgtool(["check", "disk.raw", "--repair", "all"])
        #expect(r.status == 1)
        #expect(try f.digest("disk.raw") == before)
    }

    /// A save whose region table was tampered with (a region far past the old end) is refused by undo, which writes
    /// nothing.
    @Test func tamperedSaveRefused() throws {
        let f = try SafetyFixture()
        try DamagedImage.leak.make("vm.qcow2", in: f.store)
        #expect(try f.imgtool(["check", "vm.qcow2", "--repair", "all"]).status == 0)
        let repaired = try f.digest("vm.qcow2")
        let save = try #require(f.saves().first { $0.hasSuffix(".hdr") })
        let path = f.state + "/" + save
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let split = try #require(bytes.indices.first { bytes[$0] == 10 && bytes[$0 + 1] == 10 })
        let head = String(decoding: bytes[..<split], as: UTF8.self)
        var fields: [String: Int] = [:]
        for line in head.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            if kv.count == 2, let n = Int(kv[1]) { fields[String(kv[0])] = n }
        }
        let table = split + 2 + (fields["backing"] ?? 0) + (fields["before"] ?? 0) + (fields["after"] ?? 0)
        for k in 0..<8 { bytes[table + k] = k == 2 ? 1 : 0 }  // offset 2^40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let undo = try f.imgtool(["undo", "vm.qcow2"])
        #expect(undo.status == 1)
        #expect(undo.stderr.contains("damaged (field regions)"), "\(undo.stderr)")
        #expect(try f.digest("vm.qcow2") == repaired)
    }

    /// qemu-img failing before it writes leaves the image as it was and no save behind.
    @Test func failedQemuImgLeavesNoSave() throws {
        let f = try SafetyFixture()
        try DamagedImage.leak.make("vm.qcow2", in: f.store)
        let damaged = try f.digest("vm.qcow2")
        let r = try f.imgtool(["check", "vm.qcow2", "--repair", "all", "--qemu-img", "/bin/false"])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("no save is left behind"), "\(r.stderr)")
        #expect(try f.digest("vm.qcow2") == damaged)
        #expect(f.saves().isEmpty, "\(f.saves())")
    }
}
