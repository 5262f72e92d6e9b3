import Foundation
import Testing
@testable import ImageOps
import QCow2
import TestSupport

extension NonUTF8NameTests {
    /// A live change never sends QEMU such a name, nor the U+FFFD name QEMU reports for one (written into a header
    /// by a live commit, it would break the chain on disk).
    @Test func liveChangesRefuseNamesQMPCannotCarry() throws {
        let s = try Store()
        let base = Self.name("b\\xe9.qcow2")
        try s.chain(base: base, top: "mid.qcow2")
        try s.qemu("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "u.qcow2")
        try s.qemu("create", "-q", "-f", "qcow2", Self.latin1, "16M")
        guard let qemu = which("qemu-system-x86_64") else {
            throw ToolError("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86); this test needs a real QEMU")
        }
        let pidfile = s.dir.file("q.pid")
        // Started by system(3), as TestVM starts QEMU: a daemon started through Foundation's Process keeps its
        // pipes open, and reading them to their end would wait for it.
        // bash, not system's sh: the words are quoted `$'…\xNN…'`.
        let started = shell("exec /bin/bash -c " + shellQuote("cd " + Shell.quote(s.dir.path) + " && exec " + Shell.join([qemu, "-machine", "pc", "-m", "16", "-nodefaults", "-display", "none", "-S", "-daemonize",
                                 "-pidfile", pidfile, "-qmp", "unix:" + s.dir.file("q.sock") + ",server=on,wait=off",
                                 "-drive", "file=" + s.dir.file("u.qcow2") + ",if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,id=vd0",
                                 "-drive", "file=" + s.dir.file(Self.latin1) + ",if=none,id=d1", "-device", "virtio-blk-pci,drive=d1,id=vd1"]) + " </dev/null >q.log 2>&1"))
        #expect(started == 0, "QEMU did not start")
        let pid = Int32((try? String(contentsOfFile: pidfile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        defer { if pid > 0 { kill(pid, SIGKILL) } }
        let all = [base, "mid.qcow2", "u.qcow2", Self.latin1]
        let before = try s.digests(all)
        let commit = try s.imgtool("commit", "--live", "mid.qcow2")
        #expect(commit.status == 1 && commit.stderr.contains("block-commit") && commit.stderr.contains("not UTF-8"), "\(commit)")
        let overlay = try s.imgtool("overlay", "--live", Self.latin1)
        #expect(overlay.status == 1 && overlay.stderr.contains("its name is not UTF-8"), "\(overlay)")
        let named = Self.name("o\\xe9.cow")
        let overlayNamed = try s.imgtool("overlay", "--live", "u.qcow2", named)
        #expect(overlayNamed.status == 1 && overlayNamed.stderr.contains("o\\xe9.cow is not UTF-8"), "\(overlayNamed)")
        #expect(try s.run(["test", "-e", named]).status == 1, "the half-made overlay was left behind")
        #expect(try s.digests(all) == before)
        #expect(try s.imgtool("chain", "u.qcow2").status == 0)
    }
}
