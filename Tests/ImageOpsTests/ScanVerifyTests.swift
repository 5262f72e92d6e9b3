import Foundation
import Testing
@testable import ImageOps
@testable import imgtool
import TestSupport

/// A pool made with real qemu-img: scan finds every broken link with the right candidates; verify flags every
/// unsafe kind and passes clean images.
@Suite(.serialized)
struct ScanVerifyTests {
    @Test func scanPool() async throws {
        let root = try TempDir("pool")
        let pool = try root.mkdir("pool")
        for d in ["bases", "vms", "moved", "deep/er"] { try root.mkdir("pool/" + d) }
        func q(_ a: String...) throws { try QemuImg.run(a, cwd: pool) }
        try q("create", "-q", "-f", "raw", "bases/deb.raw", "64M")
        try q("create", "-q", "-f", "qcow2", "bases/fed.qcow2", "32M")
        try q("create", "-q", "-f", "qcow2", "-b", "../bases/deb.raw", "-F", "raw", "vms/a.cow")
        try q("create", "-q", "-f", "qcow2", "-b", "a.cow", "-F", "qcow2", "vms/a2.cow")
        try q("create", "-q", "-f", "qcow2", "-b", pool + "/bases/fed.qcow2", "-F", "qcow2", "vms/abs.cow")
        // Broken by a move: candidate found by name.
        try q("create", "-q", "-f", "raw", "bases/old.raw", "16M")
        try q("create", "-q", "-f", "qcow2", "-b", "../bases/old.raw", "-F", "raw", "vms/c.cow")
        try FileManager.default.moveItem(atPath: pool + "/bases/old.raw", toPath: pool + "/deep/er/old.raw")
        // Gone for good: no candidate.
        try q("create", "-q", "-f", "qcow2", "-u", "-b", "/nowhere/x.raw", "-F", "raw", "vms/d.cow", "8M")
        // A loop.
        try q("create", "-q", "-f", "qcow2", "-u", "-b", "l2.cow", "-F", "qcow2", "vms/l1.cow", "8M")
        try q("create", "-q", "-f", "qcow2", "-u", "-b", "l1.cow", "-F", "qcow2", "vms/l2.cow", "8M")
        // Not images / unreadable.
        try "notes".write(toFile: pool + "/vms/notes.txt", atomically: true, encoding: .utf8)
        try root.write("pool/vms/broken.qcow2", [0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 3] + [UInt8](repeating: 0, count: 200))

        let r = try ImgtoolBinary.run(["scan", "--output", "json", "pool"], cwd: root.path)
        #expect(r.status == 2)
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let images = (j["images"] as? [[String: Any]] ?? []).compactMap { $0["filename"] as? String }
        #expect(Set(images) == Set(["pool/bases/deb.raw", "pool/bases/fed.qcow2", "pool/vms/a.cow", "pool/vms/a2.cow", "pool/vms/abs.cow",
                                    "pool/vms/c.cow", "pool/vms/d.cow", "pool/vms/l1.cow", "pool/vms/l2.cow", "pool/deep/er/old.raw"]), "\(images)")
        let problems = j["problems"] as? [[String: Any]] ?? []
        func problem(_ image: String) -> [String: Any]? { problems.first { $0["image"] as? String == "pool/vms/" + image } }
        #expect(problem("c.cow")?["kind"] as? String == "missing")
        #expect(problem("c.cow")?["candidates"] as? [String] == ["pool/deep/er/old.raw"])
        #expect(problem("d.cow")?["kind"] as? String == "missing")
        #expect((problem("d.cow")?["candidates"] as? [String])?.isEmpty == true)
        #expect(problems.contains { $0["kind"] as? String == "loop" })
        #expect(problem("a.cow") == nil && problem("a2.cow") == nil && problem("abs.cow") == nil)
        #expect((j["unreadable"] as? [[String: Any]])?.contains { ($0["filename"] as? String)?.hasSuffix("broken.qcow2") == true } == true)
        let summary = j["summary"] as? [String: Any]
        #expect(summary?["broken"] as? Int == 2)
        #expect(summary?["loops"] as? Int == 1)

        // The CLI streams the JSON one image at a time; it must be the very bytes of the whole document.
        let whole = await Scan.run(pool)
        let streamed = try ImgtoolBinary.run(["scan", "--output", "json", pool])
        let document = await whole.json().rendered()
        #expect(streamed.stdout == document + "\n")
        // Human output streams too; the library's string form is the same text.
        let text = await whole.human(style: .plain)
        #expect(try ImgtoolBinary.run(["scan", pool]).stdout == text + "\n")

        let plan = try ImgtoolBinary.run(["scan", "pool", "--fix-plan"], cwd: root.path)
        #expect(plan.stdout == "imgtool fix-backing pool/vms/c.cow --to pool/deep/er/old.raw\n")
        // The plan works.
        var env = ProcessInfo.processInfo.environment
        env["IMGTOOL_STATE_DIR"] = root.file("state")
        #expect(try ImgtoolBinary.run(["fix-backing", "pool/vms/c.cow", "--to", "pool/deep/er/old.raw"], cwd: root.path, environment: env).status == 0)
        let after = try ImgtoolBinary.run(["scan", "--output", "json", "pool"], cwd: root.path)
        let j2 = try #require(try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [String: Any])
        #expect((j2["summary"] as? [String: Any])?["broken"] as? Int == 1)
    }

    /// Raw and plain qcow2 images print from what the scan read (no second open); an image with more to print (a
    /// snapshot table) is read again when printed. Either removed in between is printed from what the scan saw, not
    /// dropped and not a crash.
    @Test func scanPrintsWhatItSawWhenAnImageGoes() async throws {
        let root = try TempDir("poolgone")
        try QemuImg.run(["create", "-q", "-f", "raw", root.file("base.raw"), "4M"])
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", root.file("top.qcow2")])
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", root.file("snap.qcow2")])
        try QemuImg.run(["snapshot", "-c", "s1", root.file("snap.qcow2")])
        let scan = await Scan.run(root.path)
        let before = await scan.json()
        try FileManager.default.removeItem(atPath: root.file("top.qcow2"))
        try FileManager.default.removeItem(atPath: root.file("snap.qcow2"))
        let after = await scan.json()
        #expect(before != after)
        func images(_ doc: JSON) throws -> [[String: Any]] {
            let j = try #require(try JSONSerialization.jsonObject(with: Data(doc.rendered().utf8)) as? [String: Any])
            return j["images"] as? [[String: Any]] ?? []
        }
        let was = try images(before), now = try images(after)
        for name in ["top.qcow2", "snap.qcow2"] {
            let image = try #require(now.first { $0["filename"] as? String == root.file(name) })
            #expect(image["format"] as? String == "qcow2")
            #expect(image["virtual-size"] as? Int == 4 << 20)
            #expect(image["backing-filename"] as? String == "base.raw")
            #expect(image["backing-image"] as? String == root.file("base.raw"))
        }
        // The plain one as the scan read it, every field; the one read again, from the slim record.
        let top = try #require(now.first { $0["filename"] as? String == root.file("top.qcow2") })
        let topBefore = try #require(was.first { $0["filename"] as? String == root.file("top.qcow2") })
        #expect(top["actual-size"] != nil && top["actual-size"] as? Int == topBefore["actual-size"] as? Int)
        #expect(Set(top.keys) == Set(topBefore.keys))
        let snap = try #require(now.first { $0["filename"] as? String == root.file("snap.qcow2") })
        #expect(snap["actual-size"] == nil)
        #expect(snap["snapshots"] == nil)
        let text = await scan.human(style: .plain)
        #expect(text.contains("├─ " + root.file("snap.qcow2") + "  qcow2, 4 MiB virtual"), "\(text)")
        #expect(text.contains("└─ " + root.file("top.qcow2") + "  qcow2 v3, 4 MiB virtual"), "\(text)")
    }

    /// Files the scanning user cannot read: a qcow2 left mode 000 is listed as unreadable, and the overlay whose base
    /// is unreadable gets an `unreadable` link, not `missing` (the fix is permissions, not repointing).
    @Test func scanReportsUnreadableFiles() throws {
        let root = try TempDir("poolperm")
        let pool = try root.mkdir("pool")
        func q(_ a: String...) throws { try QemuImg.run(a, cwd: pool) }
        try q("create", "-q", "-f", "raw", "secret.raw", "1M")
        try q("create", "-q", "-f", "qcow2", "-b", "secret.raw", "-F", "raw", "u.cow")
        try q("create", "-q", "-f", "qcow2", "locked.qcow2", "1M")
        try q("create", "-q", "-f", "qcow2", "fine.qcow2", "1M")
        // A base that is a symlink to itself is there but cannot be read: unreadable, as `chain` says, not missing.
        #expect(symlink("self.raw", pool + "/self.raw") == 0)
        try q("create", "-q", "-f", "qcow2", "-u", "-b", "self.raw", "-F", "raw", "s.cow", "1M")
        chmod(pool + "/secret.raw", 0)
        chmod(pool + "/locked.qcow2", 0)
        chmod(root.path, 0o755)
        chmod(pool, 0o755)
        var exe = try ImgtoolBinary.path()
        var args = ["scan", "--output", "json", pool]
        if getuid() == 0 {
            // Root reads everything; drop to nobody so the permission problem is real.
            args = ["--reuid=65534", "--regid=65534", "--clear-groups", exe] + args
            exe = try #require(which("setpriv"))
        }
        let r = try runProgram(exe, args)
        #expect(r.status == 2, "\(r.stderr)")
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout) \(r.stderr)")
        let unreadable = (j["unreadable"] as? [[String: Any]] ?? []).compactMap { $0["filename"] as? String }
        #expect(unreadable.contains(pool + "/locked.qcow2"), "\(unreadable)")
        let problems = j["problems"] as? [[String: Any]] ?? []
        let u = problems.first { $0["image"] as? String == pool + "/u.cow" }
        #expect(u?["kind"] as? String == "unreadable", "\(problems)")
        let selfLoop = problems.first { $0["image"] as? String == pool + "/s.cow" }
        #expect(selfLoop?["kind"] as? String == "unreadable", "\(problems)")
        let images = (j["images"] as? [[String: Any]] ?? []).compactMap { $0["filename"] as? String }
        #expect(images.contains(pool + "/fine.qcow2") && images.contains(pool + "/u.cow"))
    }

    @Test func scanNamesHolders() throws {
        let root = try TempDir("poolheld")
        try QemuImg.run(["create", "-q", "-f", "qcow2", root.file("held.qcow2"), "8M"])
        let nbd = try #require(which("qemu-nbd"))
        let pidFile = root.file("nbd.pid")
        let line = [nbd, "--fork", "--pid-file", pidFile, "-k", root.file("s.sock"), "-f", "qcow2", root.file("held.qcow2")].map(shellQuote).joined(separator: " ")
        #expect(shell(line + " >/dev/null 2>&1") == 0)
        let pid = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { if let p = Int32(pid) { kill(p, SIGTERM) } }
        let r = try ImgtoolBinary.run(["scan", root.path])
        #expect(r.status == 0)
        #expect(r.stdout.contains("held by PID \(pid)"), "\(r.stdout)")
    }

    @Test func verifyFlagsEveryUnsafeKind() throws {
        let dir = try TempDir("verify")
        func q(_ a: String...) throws { try QemuImg.run(a, cwd: dir.path) }
        try q("create", "-q", "-f", "qcow2", "clean.qcow2", "1M")
        try q("create", "-q", "-f", "raw", "clean.raw", "1M")
        try q("create", "-q", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", "backing.qcow2", "1M")
        try q("create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.file("host.data"), "datafile.qcow2", "1M")
        try q("create", "-q", "-f", "vmdk", "sparse.vmdk", "1M")
        try "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 2048 FLAT \"/etc/shadow\" 0\n"
            .write(toFile: dir.file("shadow.vmdk"), atomically: true, encoding: .utf8)
        try q("create", "-q", "-f", "qcow2", "corrupt.qcow2", "1M")
        let h = try #require(FileHandle(forUpdatingAtPath: dir.file("corrupt.qcow2")))
        try h.seek(toOffset: 79)
        h.write(Data([0x02]))  // incompatible bit 1: corrupt
        try h.close()
        try q("create", "-q", "-f", "qcow2", "unknown.qcow2", "1M")
        let u = try #require(FileHandle(forUpdatingAtPath: dir.file("unknown.qcow2")))
        try u.seek(toOffset: 72)
        u.write(Data([0x01]))  // incompatible bit 56: nobody knows it
        try u.close()

        // Polyglots: a qcow2 qemu-img still opens, carrying another format's signature where that format keeps it.
        func plant(_ name: String, _ offset: UInt64, _ bytes: [UInt8]) throws {
            try q("create", "-q", "-f", "qcow2", name, "1M")
            let f = try #require(FileHandle(forUpdatingAtPath: dir.file(name)))
            try f.seek(toOffset: offset)
            f.write(Data(bytes))
            try f.close()
            #expect((try QemuImg.info(dir.file(name)) as? [String: Any])?["format"] as? String == "qcow2")
        }
        try plant("iso.qcow2", 32769, Array("CD001".utf8))
        try plant("gpt.qcow2", 512, Array("EFI PART".utf8))
        try q("create", "-q", "-f", "qcow2", "vhd.qcow2", "1M")
        let size = try FileManager.default.attributesOfItem(atPath: dir.file("vhd.qcow2"))[.size] as? UInt64 ?? 0
        let f = try #require(FileHandle(forUpdatingAtPath: dir.file("vhd.qcow2")))
        try f.seek(toOffset: size)
        f.write(Data(Array("conectix".utf8) + [UInt8](repeating: 0, count: 504)))
        try f.close()
        // A raw disk holding an ISO and a partition table is an ordinary (hybrid) disk.
        try q("create", "-q", "-f", "raw", "hybrid.raw", "1M")
        let r = try #require(FileHandle(forUpdatingAtPath: dir.file("hybrid.raw")))
        try r.seek(toOffset: 32769)
        r.write(Data(Array("CD001".utf8)))
        try r.close()

        // Backing links of the other formats that keep one: a VMDK delta (and one whose parent hint was rewritten,
        // same length, to a host file), a QED overlay, a qcow v1 overlay.
        try q("create", "-q", "-f", "vmdk", "-b", "sparse.vmdk", "-F", "vmdk", "delta.vmdk")
        var delta = try Data(contentsOf: URL(fileURLWithPath: dir.file("delta.vmdk")))
        let hint = try #require(delta.range(of: Data("parentFileNameHint=\"sparse.vmdk\"".utf8)))
        delta.replaceSubrange(hint, with: Data("parentFileNameHint=\"/etc/shadow\"".utf8))
        try delta.write(to: URL(fileURLWithPath: dir.file("hostile-delta.vmdk")))
        try q("create", "-q", "-f", "qed", "-b", "clean.raw", "-F", "raw", "over.qed")
        try q("create", "-q", "-f", "qcow", "-b", "clean.raw", "-F", "raw", "over.qcow")

        let cases: [([String], Int32, String?)] = [
            (["delta.vmdk"], 2, "backing file: sparse.vmdk"), (["hostile-delta.vmdk"], 2, "backing file: /etc/shadow"),
            (["over.qed"], 2, "backing file"), (["over.qcow"], 2, "backing file: clean.raw"),
            (["iso.qcow2"], 2, "ISO 9660"), (["gpt.qcow2"], 2, "GPT header"), (["vhd.qcow2"], 2, "VHD footer"),
            (["hybrid.raw"], 0, nil), (["sparse.vmdk"], 0, nil),
            (["clean.qcow2"], 0, nil), (["clean.raw", "--format", "raw"], 0, nil), (["sparse.vmdk"], 0, nil),
            (["backing.qcow2"], 2, "backing file"), (["datafile.qcow2"], 2, "data file"), (["shadow.vmdk"], 2, "/etc/shadow"),
            (["corrupt.qcow2"], 2, "corrupt"), (["unknown.qcow2"], 2, "incompatible_features"),
            (["clean.qcow2", "--format", "raw"], 2, "claimed to be raw"),
        ]
        for (args, status, words) in cases {
            let r = try ImgtoolBinary.run(["verify"] + args, cwd: dir.path)
            #expect(r.status == status, "\(args): \(r.stdout)")
            if let words { #expect(r.stdout.contains(words), "\(args): \(r.stdout)") }
        }
        #expect(try ImgtoolBinary.run(["verify", "missing.qcow2"], cwd: dir.path).status == 1)
    }
}
