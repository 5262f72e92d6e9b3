import Foundation
import Testing
import TestSupport

/// Faults injected into changes: a file swapped under the path, imgtool killed or interrupted while qemu-img runs.
/// Every test compares the sha256 of every image involved before and after, and runs `qemu-img check` on what was
/// written.
@Suite(.serialized)
struct SafetyTests {
    /// A 32 MiB overlay `vm.cow` on old.raw, two 32 MiB bases to repoint it at, and a 64 MiB decoy overlay.
    func chainAndDecoy(_ f: SafetyFixture) throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "32M")
        try f.qemu("create", "-q", "-f", "raw", "new-a.raw", "32M")
        try f.qemu("create", "-q", "-f", "raw", "new-b.raw", "32M")
        try f.qemu("create", "-q", "-f", "raw", "big.raw", "64M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "vm.cow")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "big.raw", "-F", "raw", "decoy.cow")
        // Hard links keep both files reachable whatever is renamed over vm.cow.
        try FileManager.default.linkItem(atPath: f.path("vm.cow"), toPath: f.path("target.keep"))
    }

    /// A file renamed over the path between the checks and qemu-img's write is not touched: the change lands on the
    /// file that was checked, imgtool says the path moved, and undo works on the changed file and refuses the other.
    @Test func swapDuringChangeTouchesOnlyTheCheckedFile() throws {
        let f = try SafetyFixture()
        try chainAndDecoy(f)
        let target = try f.digest("target.keep"), decoy = try f.digest("decoy.cow")
        let p = try f.startSlow(["fix-backing", "vm.cow", "--to", "new-a.raw"])
        #expect(rename(f.path("decoy.cow"), f.path("vm.cow")) == 0)
        p.waitUntilExit()
        try f.waitFor("done")
        #expect(p.terminationStatus == 1)
        #expect(try f.digest("vm.cow") == decoy, "the file renamed over the path was written")
        #expect(try f.backing("vm.cow") == "big.raw")
        #expect(try f.digest("target.keep") != target)
        #expect(try f.backing("target.keep") == "new-a.raw")
        #expect(try f.checks("target.keep"))
        // undo by identity: the decoy has no save; the changed file has.
        let refused = try f.imgtool(["undo", "vm.cow"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("no saved header"), "\(refused.stderr)")
        #expect(try f.digest("vm.cow") == decoy)
        let undone = try f.imgtool(["undo", "target.keep"])
        #expect(undone.status == 0, "\(undone.stderr)")
        #expect(try f.digest("target.keep") == target)
    }

    /// A background loop renames a 64 MiB decoy and the checked image over the path while fix-backing runs many
    /// times with the real qemu-img: the decoy (which fails the size check) must never change.
    @Test func renamerRaceMakesNoUncheckedChange() throws {
        let f = try SafetyFixture()
        try chainAndDecoy(f)
        let decoy = try f.digest("decoy.cow")
        try FileManager.default.linkItem(atPath: f.path("decoy.cow"), toPath: f.path("decoy.keep"))
        let s = { (n: String) in shellQuote(f.path(n)) }
        let loop = "while :; do ln -f \(s("target.keep")) \(s(".t1")); mv -f \(s(".t1")) \(s("vm.cow")); "
            + "ln -f \(s("decoy.keep")) \(s(".t2")); mv -f \(s(".t2")) \(s("vm.cow")); done"
        let pidFile = f.root.file("renamer.pid")
        #expect(shell("sh -c \(shellQuote(loop)) >/dev/null 2>&1 & echo $! > \(shellQuote(pidFile))") == 0)
        let pid = try #require(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(pid, SIGKILL) }
        var changed = 0, refused = 0, moved = 0
        let start = Date()
        var runs = 0
        // About 6 s; on a loaded machine longer, up to 30 s, until at least 20 runs were made.
        while runs < 200 && (Date().timeIntervalSince(start) < 6 || runs < 20) && Date().timeIntervalSince(start) < 30 {
            let r = try f.imgtool(["fix-backing", "vm.cow", "--to", runs % 2 == 0 ? "new-a.raw" : "new-b.raw"])
            runs += 1
            if r.status == 0 { changed += 1 } else if r.stderr.contains("now names") { moved += 1 } else { refused += 1 }
            // Refusals are the decoy's size check or a name that vanished mid-rename; never a write.
            #expect(r.status == 0 || r.status == 1, "\(r.stderr)")
        }
        kill(pid, SIGKILL)
        let decoyNow = try f.digest("decoy.keep")
        #expect(decoyNow == decoy, "an unchecked change reached the decoy")
        #expect(try f.backing("decoy.keep") == "big.raw")
        #expect(try f.checks("target.keep"))
        #expect(try ["new-a.raw", "new-b.raw"].contains(f.backing("target.keep") ?? ""))
        #expect(runs >= 20 && changed > 0, "runs \(runs), changed \(changed), refused \(refused), moved \(moved)")
        print("renamer race: \(runs) runs, \(changed) changed, \(moved) reported a moved path, \(refused) refused; decoy \(decoyNow == decoy ? "unchanged" : "CHANGED")")
    }

    /// imgtool killed (SIGKILL) while qemu-img runs: the change lands without imgtool recording it, and undo still
    /// recognises the header the change writes and puts the saved one back.
    @Test func sigkillDuringFixBackingCanBeUndone() throws {
        let f = try SafetyFixture()
        try chainAndDecoy(f)
        let before = try f.digest("vm.cow")
        let p = try f.startSlow(["fix-backing", "vm.cow", "--to", "new-a.raw"])
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        try f.waitFor("done")
        #expect(try f.backing("vm.cow") == "new-a.raw", "the orphaned qemu-img should have made the change")
        #expect(f.saves().count == 1 && f.saves().allSatisfy { $0.hasSuffix(".pending") }, "\(f.saves())")
        // Changed by someone else since: neither header, refused and left alone.
        try f.qemu("rebase", "-u", "-f", "qcow2", "-b", "new-b.raw", "-F", "raw", "vm.cow")
        let other = try f.digest("vm.cow")
        let refused = try f.imgtool(["undo", "vm.cow"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("neither the saved one nor the one that change writes"), "\(refused.stderr)")
        #expect(try f.digest("vm.cow") == other)
        try f.qemu("rebase", "-u", "-f", "qcow2", "-b", "new-a.raw", "-F", "raw", "vm.cow")
        let r = try f.imgtool(["undo", "vm.cow"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("stopped before it could record"), "\(r.stdout)")
        #expect(try f.digest("vm.cow") == before)
        #expect(try f.checks("vm.cow"))
        #expect(f.saves().isEmpty, "\(f.saves())")
    }

    /// imgtool and its qemu-img killed before the write: the pending save is found, undo says the change never
    /// landed, writes nothing and drops the save.
    @Test func sigkillBeforeTheWriteLeavesAnUndoThatWritesNothing() throws {
        let f = try SafetyFixture()
        try chainAndDecoy(f)
        let before = try f.digest("vm.cow")
        let p = try f.startSlow(["fix-backing", "vm.cow", "--to", "new-a.raw"])
        let wrapper = try #require(Int32(try String(contentsOfFile: f.root.file("started"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        // imgtool first: killed second, it could see its qemu-img die and clean up in between (it did once, under load).
        kill(p.processIdentifier, SIGKILL)
        kill(wrapper, SIGKILL)
        p.waitUntilExit()
        #expect(try f.digest("vm.cow") == before)
        #expect(f.saves().count == 1, "\(f.saves())")
        let r = try f.imgtool(["undo", "vm.cow"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("never landed"), "\(r.stdout) \(r.stderr)")
        #expect(try f.digest("vm.cow") == before)
        #expect(f.saves().isEmpty, "\(f.saves())")
    }

    /// SIGTERM and SIGINT while qemu-img runs: the child is stopped, the change does not land, no save is left, and
    /// imgtool exits 128+signal.
    @Test(arguments: [SIGTERM, SIGINT])
    func interruptedFixBackingLeavesNothing(signal: Int32) throws {
        let f = try SafetyFixture()
        try chainAndDecoy(f)
        let before = try f.digest("vm.cow")
        let p = try f.startSlow(["fix-backing", "vm.cow", "--to", "new-a.raw"])
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + signal)
        usleep(1_500_000)
        #expect(!FileManager.default.fileExists(atPath: f.root.file("done")), "qemu-img ran after the interruption")
        #expect(try f.digest("vm.cow") == before)
        #expect(f.saves().isEmpty, "\(f.saves())")
    }

    /// A signal imgtool was started with ignored (SIGHUP under `nohup`) stays ignored: the change goes on. (The
    /// guard's handler replaced the ignored disposition, so a logout stopped a `nohup imgtool commit`, or cancelled
    /// a live job, exit 129.)
    @Test func aSignalIgnoredAtStartStaysIgnored() throws {
        let f = try SafetyFixture()
        try chainAndDecoy(f)
        let p = try f.startSlow(["fix-backing", "vm.cow", "--to", "new-a.raw"], ignoring: "HUP")
        kill(p.processIdentifier, SIGHUP)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(try f.backing("vm.cow") == "new-a.raw")
    }

    /// Interrupted `create` and `overlay`: the file reserved with O_EXCL is removed, so the next try succeeds.
    @Test(arguments: [SIGTERM, SIGINT])
    func interruptedCreateRemovesTheReservedFile(signal: Int32) throws {
        let f = try SafetyFixture()
        try f.qemu("create", "-q", "-f", "raw", "base.raw", "8M")
        let base = try f.digest("base.raw")
        for args in [["create", "new.qcow2", "8M"], ["overlay", "base.raw", "new.qcow2"]] {
            let p = try f.startSlow(args)
            kill(p.processIdentifier, signal)
            p.waitUntilExit()
            #expect(p.terminationStatus == 128 + signal, "\(args)")
            #expect(!f.exists("new.qcow2"), "\(args): the reserved file was left behind")
            let again = try f.imgtool(args)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(try f.checks("new.qcow2"))
            try FileManager.default.removeItem(atPath: f.path("new.qcow2"))
        }
        #expect(try f.digest("base.raw") == base)
    }

    /// A reserved file someone replaced while qemu-img ran is not removed on interruption: it is not imgtool's.
    @Test func interruptedCreateLeavesAReplacedFileAlone() throws {
        let f = try SafetyFixture()
        try f.qemu("create", "-q", "-f", "raw", "theirs.raw", "1M")
        let theirs = try f.digest("theirs.raw")
        let p = try f.startSlow(["create", "new.raw", "8M", "--format", "raw"])
        #expect(rename(f.path("theirs.raw"), f.path("new.raw")) == 0)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + SIGTERM)
        #expect(f.exists("new.raw"))
        #expect(try f.digest("new.raw") == theirs)
    }
}
