import Foundation
import Testing
import TestSupport

/// `imgtool check` and `scan --check` on the command line: qemu-img's summary wording, its JSON fields and presence
/// rules, the exit codes. The counts come from the native qcow2 checker (branch checkq): these need it.
@Suite(.serialized)
struct CheckCommandTests {
    @Test func cleanImage() throws {
        let dir = try TempDir("check")
        try QemuImg.run(["create", "-q", "-f", "qcow2", "vm.qcow2", "64M"], cwd: dir.path)
        try DamagedImage.leak.writeData("vm.qcow2", in: dir.path)
        let before = try fileDigest(dir.file("vm.qcow2"))
        let r = try ImgtoolBinary.run(["check", "vm.qcow2"], cwd: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("No errors were found on the image.\n"), "\(r.stdout)")
        #expect(r.stdout.contains("Image end offset: "), "\(r.stdout)")
        let q = try runProgram(try QemuImg.path(), ["check", "vm.qcow2"], cwd: dir.path)
        #expect(r.stdout == q.stdout, "imgtool:\n\(r.stdout)\nqemu-img:\n\(q.stdout)")
        #expect(try fileDigest(dir.file("vm.qcow2")) == before)
    }

    /// Each damage: exit 2, qemu-img's wording and counts, and JSON with qemu-img's fields (every one qemu-img
    /// prints, with its value; none it leaves out) plus findings that name the cluster.
    @Test(arguments: DamagedImage.allCases)
    func damagedImage(_ damage: DamagedImage) throws {
        let dir = try TempDir("check")
        try damage.make("vm.qcow2", in: dir.path)
        let before = try fileDigest(dir.file("vm.qcow2"))
        let human = try ImgtoolBinary.run(["check", "vm.qcow2"], cwd: dir.path)
        #expect(human.status == 2, "\(human.stdout)\n\(human.stderr)")
        // qemu-img's summary, word for word, before the findings (refcount 0 under a reference is also an
        // OFLAG_COPIED error: two corruptions, as qemu-img counts them).
        let q = try runProgram(try QemuImg.path(), ["check", "vm.qcow2"], cwd: dir.path)
        #expect(human.stdout.hasPrefix(q.stdout), "imgtool:\n\(human.stdout)\nqemu-img:\n\(q.stdout)")
        if damage == .leak {
            #expect(human.stdout.contains("\n1 leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n"), "\(human.stdout)")
        } else {
            #expect(human.stdout.contains(" errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n"), "\(human.stdout)")
        }
        let json = try ImgtoolBinary.run(["check", "vm.qcow2", "--output", "json"], cwd: dir.path)
        #expect(json.status == 2)
        let mine = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let theirs = try qemuImgCheck(dir.file("vm.qcow2")).json
        for (key, value) in theirs where key != "filename" {
            #expect("\(mine[key] ?? "absent")" == "\(value)", "\(key)")
        }
        for key in mine.keys where !["findings", "held", "filename"].contains(key) {
            #expect(theirs[key] != nil, "\(key) is not in qemu-img's answer")
        }
        let findings = try #require(mine["findings"] as? [[String: Any]])
        #expect(!findings.isEmpty)
        #expect(findings.allSatisfy { Set($0.keys) == ["kind", "cluster", "offset", "table", "message"] })
        #expect(try fileDigest(dir.file("vm.qcow2")) == before)
    }

    /// A format qemu-img has no check for: exit 1, qemu-img's wording.
    @Test func rawIsUnsupported() throws {
        let dir = try TempDir("check")
        try QemuImg.run(["create", "-q", "-f", "raw", "disk.raw", "1M"], cwd: dir.path)
        let r = try ImgtoolBinary.run(["check", "disk.raw"], cwd: dir.path)
        #expect(r.status == 1)
        #expect(r.stderr.contains("does not support checks"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    /// A missing file: exit 1.
    @Test func missingFile() throws {
        let dir = try TempDir("check")
        let r = try ImgtoolBinary.run(["check", "nope.qcow2"], cwd: dir.path)
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("imgtool: error: "), "\(r.stderr)")
    }

    /// `--dry-run` without `--repair` is a usage error.
    @Test func dryRunNeedsRepair() throws {
        let dir = try TempDir("check")
        try QemuImg.run(["create", "-q", "-f", "qcow2", "vm.qcow2", "1M"], cwd: dir.path)
        #expect(try ImgtoolBinary.run(["check", "vm.qcow2", "--dry-run"], cwd: dir.path).status == 64)
    }

    /// A held image is checked anyway (no lock), with a note that the answer may be stale.
    @Test func heldImageIsCheckedWithANote() throws {
        let dir = try TempDir("check")
        try QemuImg.run(["create", "-q", "-f", "qcow2", "vm.qcow2", "64M"], cwd: dir.path)
        let holder = try FDHolder(dir.file("vm.qcow2"))
        let r = try ImgtoolBinary.run(["check", "vm.qcow2"], cwd: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("note: vm.qcow2 is held by"), "\(r.stdout)")
        let j = try ImgtoolBinary.run(["check", "vm.qcow2", "--output", "json"], cwd: dir.path)
        #expect(j.stdout.contains("\"held\": true"), "\(j.stdout)")
        _ = holder
    }

    /// `scan --check`: one leaky and one clean image; a line for the leaky one, totals, JSON per image, exit 2.
    @Test func scanCheck() throws {
        let dir = try TempDir("check")
        try DamagedImage.leak.make("leaky.qcow2", in: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "clean.qcow2", "64M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "raw", "disk.raw", "1M"], cwd: dir.path)
        let r = try ImgtoolBinary.run(["scan", ".", "--check"], cwd: dir.path)
        #expect(r.status == 2, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("leaky.qcow2: 1 leaked clusters"), "\(r.stdout)")
        #expect(!r.stdout.contains("clean.qcow2: "), "\(r.stdout)")
        #expect(r.stdout.contains("Checked 2: 1 clean, 1 with problems (0 errors, 1 leaked clusters); 1 of a format qemu-img does not check"), "\(r.stdout)")
        let j = try ImgtoolBinary.run(["scan", ".", "--check", "--output", "json"], cwd: dir.path)
        #expect(j.status == 2)
        let top = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        let check = try #require(top["check"] as? [String: Any])
        let images = try #require(check["images"] as? [[String: Any]])
        #expect(images.count == 2)
        #expect(images.first { ($0["filename"] as? String)?.hasSuffix("leaky.qcow2") == true }?["leaks"] as? Int == 1)
        // Without the leaky image: exit 0.
        try FileManager.default.removeItem(atPath: dir.file("leaky.qcow2"))
        #expect(try ImgtoolBinary.run(["scan", ".", "--check"], cwd: dir.path).status == 0)
    }

    /// A file name with an escape byte is shown escaped in `scan --check`'s line and in the held note, never raw.
    @Test func namesAreEscaped() throws {
        let dir = try TempDir("check")
        let name = "a\u{1B}[31mb.qcow2"
        try DamagedImage.leak.make(name, in: dir.path)
        let r = try ImgtoolBinary.run(["scan", ".", "--check"], cwd: dir.path)
        #expect(r.status == 2)
        #expect(!r.stdout.contains("\u{1B}"), "\(r.stdout)")
        #expect(r.stdout.contains("a\\x1b[31mb.qcow2: 1 leaked clusters"), "\(r.stdout)")
        let holder = try FDHolder(dir.file(name))
        let c = try ImgtoolBinary.run(["check", name], cwd: dir.path)
        #expect(c.status == 2)
        #expect(!c.stdout.contains("\u{1B}"), "\(c.stdout)")
        _ = holder
    }
}
