import Foundation
import Testing
@testable import ImageOps
@testable import imgtool
import TestSupport

/// The start-up fast path and ArgumentParser must be indistinguishable: same bytes out, same exit code.
struct CLITests {
    @Test func fastPathMatchesFullParser() throws {
        let dir = try TempDir("cli")
        try QemuImg.run(["create", "-q", "-f", "raw", "b.raw", "1M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "b.raw", "-F", "raw", "o.cow"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "gone.raw", "-F", "raw", "broken.cow", "1M"], cwd: dir.path)
        try FileManager.default.copyItem(atPath: fixturesDirectory() + "/mbr.raw", toPath: dir.file("mbr.raw"))
        try QemuImg.run(["convert", "-q", "-O", "qcow2", fixturesDirectory() + "/gpt.raw", "gpt.cow"], cwd: dir.path)
        var slow = ProcessInfo.processInfo.environment
        slow["IMGTOOL_NO_FAST_PATH"] = "1"
        let forms: [[String]] = [
            ["info", "o.cow"], ["info", "--output", "json", "o.cow"], ["info", "o.cow", "--output=json"],
            ["chain", "o.cow"], ["chain", "--output=json", "broken.cow"], ["chain", "broken.cow", "--max-depth", "1"],
            ["chain", "--max-depth=1", "--output", "json", "o.cow"], ["info", "missing.qcow2"],
            ["partitions", "mbr.raw"], ["partitions", "--output=json", "gpt.cow"], ["partitions", "o.cow", "--output", "json"],
            ["partitions", "missing.raw"], ["partitions", "o.cow", "--output", "xml"],
            ["offset", "mbr.raw", "5"], ["offset", "gpt.cow", "2"], ["offset", "mbr.raw", "9"], ["offset", "mbr.raw", "x"],
            ["offset", "mbr.raw"], ["offset", "mbr.raw", "1", "2"],
            ["who", "o.cow"], ["who", "--output", "json", "o.cow"], ["who", "missing.raw"], ["who", "o.cow", "--bogus"],
        ]
        for args in forms {
            let fast = try ImgtoolBinary.run(args, cwd: dir.path)
            let full = try ImgtoolBinary.run(args, cwd: dir.path, environment: slow)
            #expect(fast.status == full.status, "\(args)")
            #expect(fast.stdout == full.stdout, "\(args)")
            #expect(fast.stderr == full.stderr, "\(args)")
        }
    }

    /// `fix-backing` has a fast path too: dry runs, refusals and real changes print the same bytes either way.
    @Test func fixBackingFastPathMatchesFullParser() throws {
        func store(_ name: String) throws -> TempDir {
            let dir = try TempDir(name)
            try QemuImg.run(["create", "-q", "-f", "raw", "b.raw", "1M"], cwd: dir.path)
            try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "gone/b.raw", "-F", "raw", "broken.cow", "1M"], cwd: dir.path)
            try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "gone/b.raw", "-F", "raw", "other.cow", "1M"], cwd: dir.path)
            return dir
        }
        let forms: [[String]] = [
            ["fix-backing", "broken.cow", "--to", "b.raw", "--dry-run"], ["fix-backing", "--to=b.raw", "--dry-run"],
            ["fix-backing", "broken.cow", "--absolute", "--to", "b.raw", "--dry-run"], ["fix-backing", "broken.cow", "--to", "nothere.raw"],
            ["fix-backing", "--to", "x.raw"], ["fix-backing", "broken.cow", "--to", "b.raw", "--qemu-img", "/nonexistent/qemu-img"],
            ["fix-backing", "broken.cow", "--to", "broken.cow"], ["fix-backing", "broken.cow", "--to", "b.raw"],
            ["fix-backing", "--to", "b.raw", "--force"],
        ]
        let fastStore = try store("fbfast"), fullStore = try store("fbfull")
        for args in forms {
            var env = ProcessInfo.processInfo.environment
            env["IMGTOOL_STATE_DIR"] = fastStore.file("state")
            let fast = try ImgtoolBinary.run(args, cwd: fastStore.path, environment: env)
            env["IMGTOOL_STATE_DIR"] = fullStore.file("state")
            env["IMGTOOL_NO_FAST_PATH"] = "1"
            let full = try ImgtoolBinary.run(args, cwd: fullStore.path, environment: env)
            // The stores differ only by folder and by inode (in the undo file's name).
            func same(_ text: String, _ dir: TempDir) -> String {
                text.replacingOccurrences(of: dir.path, with: "DIR")
                    .replacingOccurrences(of: #"/[0-9]+-[0-9]+\.hdr"#, with: "/DEV-INODE.hdr", options: .regularExpression)
            }
            #expect(fast.status == full.status, "\(args): \(fast.stderr) | \(full.stderr)")
            #expect(same(fast.stdout, fastStore) == same(full.stdout, fullStore), "\(args)")
            #expect(same(fast.stderr, fastStore) == same(full.stderr, fullStore), "\(args)")
        }
        // Both really changed their image.
        for dir in [fastStore, fullStore] {
            #expect((try QemuImg.info(dir.file("broken.cow")) as? [String: Any])?["backing-filename"] as? String == "b.raw")
            #expect((try QemuImg.info(dir.file("other.cow")) as? [String: Any])?["backing-filename"] as? String == "b.raw")
        }
    }

    /// A FIFO, a character device and a dangling link where an image should be: every command answers at once
    /// (a plain open of a FIFO would wait for a writer forever), with `imgtool: error:` and exit 1 where it reads.
    @Test func specialFilesNeverHang() throws {
        let dir = try TempDir("special")
        let fifo = dir.file("pipe.raw")
        #expect(mkfifo(fifo, 0o644) == 0)
        try QemuImg.run(["create", "-q", "-f", "qcow2", dir.file("ok.qcow2"), "1M"])
        #expect(symlink("nowhere", dir.file("dangling.qcow2")) == 0)
        let timeout = try #require(which("timeout"))
        let exe = try ImgtoolBinary.path()
        func run(_ args: [String]) throws -> RunResult { try runProgram(timeout, ["10", exe] + args) }
        for (args, status) in [(["info", fifo], Int32(1)), (["chain", fifo], 1), (["partitions", fifo], 1), (["offset", fifo, "1"], 1),
                               (["verify", fifo], 1), (["who", fifo], 0), (["info", "/dev/null"], 1),
                               (["fix-backing", fifo, "--to", dir.file("ok.qcow2")], 1), (["resize", fifo, "2M"], 1)] {
            let r = try run(args)
            #expect(r.status == status, "\(args): \(r.status) \(r.stderr)")
            if status == 1 && args[0] != "verify" { #expect(r.stderr.hasPrefix("imgtool: error: "), "\(args): \(r.stderr)") }
        }
        // A hostile image naming a character device as its backing file: reported, never read.
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", "/dev/zero", "-F", "raw", dir.file("dev.qcow2"), "1M"])
        let chain = try run(["chain", "--output", "json", dir.file("dev.qcow2")])
        #expect(chain.status == 2)
        #expect(chain.stdout.contains("\"not-an-image\""), "\(chain.stdout)")
        try FileManager.default.removeItem(atPath: dir.file("dev.qcow2"))

        let scan = try run(["scan", "--output", "json", dir.path])
        #expect(scan.status == 0, "\(scan.stderr)")
        let j = try #require(try JSONSerialization.jsonObject(with: Data(scan.stdout.utf8)) as? [String: Any])
        #expect((j["images"] as? [[String: Any]])?.compactMap { $0["filename"] as? String } == [dir.file("ok.qcow2")])
    }

    @Test func usageErrorIs64() throws {
        #expect(try ImgtoolBinary.run(["chain"]).status == 64)
        #expect(try ImgtoolBinary.run(["chain", "x", "--max-depth", "0"]).status == 64)
        #expect(try ImgtoolBinary.run(["frobnicate"]).status == 64)
    }

    @Test func sizes() {
        #expect(Sizes.human(0) == "0 B")
        #expect(Sizes.human(1024) == "1 KiB")
        #expect(Sizes.human(67_108_864) == "64 MiB")
        #expect(Sizes.human(1_610_612_736) == "1.5 GiB")
        // Near 2^63 and 2^64 the fraction's product needs more than 64 bits (it once printed 7.04 and 15.04 EiB).
        #expect(Sizes.human(UInt64(Int64.max)) == "8 EiB")
        #expect(Sizes.human(UInt64.max) == "16 EiB")
        #expect(Sizes.human((UInt64(1) << 63) - (UInt64(1) << 59)) == "7.5 EiB")
        #expect(Sizes.parse("64M") == 67_108_864)
        #expect(Sizes.parse("1G") == 1 << 30)
        #expect(Sizes.parse("512") == 512)
        #expect(Sizes.parse("2KiB") == nil)  // qemu-img refuses it too
        #expect(Sizes.parse("x") == nil)
        #expect(Sizes.parse("99999999999E") == nil)
    }

    @Test func jsonEscapes() {
        let j = JSON.object([("a\"b", .string("line\nnext\u{1}\\"))])
        #expect(j.rendered(indent: 0) == #"{"a\"b":"line\nnext\u0001\\"}"#)
    }
}

/// A relative save folder would move with the current folder (undo from elsewhere would find no save): it is
/// ignored, as the XDG spec says of a relative XDG_STATE_HOME.
@Suite struct SaveFolderTests {
    @Test func relativeStateFoldersAreIgnored() throws {
        let dir = try TempDir("statedir")
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "1M"], cwd: dir.path)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        var env = ProcessInfo.processInfo.environment
        env["IMGTOOL_STATE_DIR"] = "saves"
        env["XDG_STATE_HOME"] = "state"
        env["HOME"] = dir.path
        let r = try ImgtoolBinary.run(["fix-backing", "top.qcow2", "--to", "base.raw", "--dry-run"], cwd: dir.path, environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains(dir.path + "/.local/state/imgtool/undo"), "\(r.stdout)")
        env["IMGTOOL_STATE_DIR"] = dir.path + "/abs"
        let a = try ImgtoolBinary.run(["fix-backing", "top.qcow2", "--to", "base.raw", "--dry-run"], cwd: dir.path, environment: env)
        #expect(a.stdout.contains(dir.path + "/abs"), "\(a.stdout)")
    }
}
