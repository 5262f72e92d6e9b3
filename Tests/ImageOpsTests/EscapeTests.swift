import Foundation
import Testing
import TestSupport

/// Hostile text from images and file names — backing names, file names, GPT names, VMDK descriptor text, process
/// command lines — reaches every human renderer escaped (`\x1b`, `\n`): nothing can retitle the terminal, clear it
/// or forge a line such as a verdict. JSON carries the exact strings.
@Suite(.serialized)
struct EscapeTests {
    /// An OSC title change, a screen clear, a forged line, a carriage return, a C1 CSI, a right-to-left override.
    static let evil = "e\u{1b}]0;pwned\u{07}\u{1b}[2J\nFORGED: safe\r\u{9b}31m\u{202e}x"

    /// Output a terminal can show as it is: no control character but the newlines between our own lines, and no
    /// line that the hostile text started.
    static func expectClean(_ text: String, _ what: String, mustShow: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) {
        let bad = text.unicodeScalars.filter { $0 != "\n" && ($0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\u{202e}") }
        #expect(bad.isEmpty, "\(what): raw \(bad.map { String($0.value, radix: 16) }) in \(text.debugDescription)", sourceLocation: sourceLocation)
        #expect(!text.split(separator: "\n").contains { $0.hasPrefix("FORGED") }, "\(what): a forged line", sourceLocation: sourceLocation)
        if mustShow { #expect(text.contains("\\x1b"), "\(what): the escape is shown, not dropped", sourceLocation: sourceLocation) }
    }

    static func run(_ args: [String], in dir: TempDir) throws -> RunResult {
        try ImgtoolBinary.run(args, cwd: dir.path, environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": dir.path])
    }

    /// An overlay whose backing name is hostile (written by qemu-img itself, unchecked).
    static func hostileOverlay(_ dir: TempDir, name: String = "over.qcow2") throws {
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", evil, "-F", "raw", name, "1M"], cwd: dir.path)
    }

    @Test func infoChainVerifyEscapeABackingName() throws {
        let dir = try TempDir("esc")
        try Self.hostileOverlay(dir)
        for cmd in ["info", "chain", "verify"] {
            let r = try Self.run([cmd, "over.qcow2"], in: dir)
            #expect(r.status != 1 || cmd == "info", "\(cmd): \(r.stderr)")
            Self.expectClean(r.stdout, cmd)
        }
        // verify still says unsafe, by exit code and in words.
        let v = try Self.run(["verify", "over.qcow2"], in: dir)
        #expect(v.status == 2 && v.stdout.contains("UNSAFE"))
        // JSON: the exact name, both for info and chain.
        let j = try Self.run(["info", "--output", "json", "over.qcow2"], in: dir)
        let info = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        #expect(info["backing-filename"] as? String == Self.evil)
        #expect(!j.stdout.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x9B }, "JSON escapes controls")
        let c = try Self.run(["chain", "--output", "json", "over.qcow2"], in: dir)
        let chain = try #require(try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as? [String: Any])
        #expect((chain["problems"] as? [[String: Any]])?.first?["backing"] as? String == Self.evil)
    }

    @Test func fileNamesAreEscapedEverywhere() throws {
        let dir = try TempDir("esc")
        // "./" keeps qemu-img from reading "e…FORGED:" as a protocol prefix.
        let name = "./" + Self.evil + ".qcow2"
        try QemuImg.run(["create", "-q", "-f", "qcow2", name, "1M"], cwd: dir.path)
        for args in [["info", name], ["chain", name], ["verify", name], ["partitions", name], ["who", name], ["scan", "."]] {
            let r = try Self.run(args, in: dir)
            Self.expectClean(r.stdout, args[0])
            Self.expectClean(r.stderr, args[0] + " (stderr)", mustShow: false)
        }
        // Errors name the file, escaped.
        let missing = try Self.run(["info", "./" + Self.evil], in: dir)
        #expect(missing.status == 1)
        Self.expectClean(missing.stderr, "error")
        // A dry run's command line quotes the name the way bash pastes exactly: $'…\x1b…'.
        let dry = try Self.run(["overlay", name, "--dry-run"], in: dir)
        #expect(dry.status == 0, "\(dry.stderr)")
        Self.expectClean(dry.stdout, "overlay --dry-run")
        #expect(dry.stdout.contains("$'e\\x1b]0;pwned\\x07"), "\(dry.stdout)")
    }

    /// `who` shows a holder's command line, which carries whatever its argv holds.
    @Test func holderCommandLinesAreEscaped() throws {
        let dir = try TempDir("esc")
        let name = "./" + Self.evil + ".img"
        try QemuImg.run(["create", "-q", "-f", "raw", name, "1M"], cwd: dir.path)
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: try #require(which("tail")))
        holder.arguments = ["-f", name]
        holder.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        holder.standardOutput = FileHandle.nullDevice
        try holder.run()
        // SIGKILL: a child spawned from the test runner may inherit a mask that blocks SIGTERM.
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        var r = try Self.run(["who", name], in: dir)
        // Until tail has the file open: bounded at a minute, for a loaded machine, not five seconds.
        let until = Date().addingTimeInterval(60)
        while r.status != 2 && Date() < until {
            usleep(100_000)
            r = try Self.run(["who", name], in: dir)
        }
        #expect(r.status == 2, "tail holds it: \(r.stdout)")
        #expect(r.stdout.contains("PID \(holder.processIdentifier)"))
        Self.expectClean(r.stdout, "who")
    }

    @Test func gptNamesAndScanProblemsAreEscaped() throws {
        let dir = try TempDir("esc")
        try QemuImg.run(["create", "-q", "-f", "raw", "disk.raw", "8M"], cwd: dir.path)
        let sfdisk = try #require(which("sfdisk"))
        #expect(shell("printf 'label: gpt\\nstart=2048, size=4096\\n' | \(sfdisk) -q \(shellQuote(dir.file("disk.raw")))") == 0)
        let label = try runProgram(sfdisk, ["--part-label", dir.file("disk.raw"), "1", Self.evil.replacingOccurrences(of: "\u{9b}", with: "")])
        #expect(label.status == 0, "\(label.stderr)")
        let r = try Self.run(["partitions", "disk.raw"], in: dir)
        Self.expectClean(r.stdout, "partitions")
        let j = try Self.run(["partitions", "--output", "json", "disk.raw"], in: dir)
        let t = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        #expect((t["partitions"] as? [[String: Any]])?.first?["name"] as? String == Self.evil.replacingOccurrences(of: "\u{9b}", with: ""))
        // scan: an overlay with a hostile, missing backing file.
        try Self.hostileOverlay(dir)
        let s = try Self.run(["scan", "."], in: dir)
        #expect(s.status == 2)
        Self.expectClean(s.stdout, "scan")
    }

    @Test func vmdkDescriptorTextIsEscaped() throws {
        let dir = try TempDir("esc")
        let text = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"\(Self.evil.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " "))\" 0\n"
        try dir.write("d.vmdk", Array(text.utf8))
        for cmd in ["verify", "info"] {
            let r = try Self.run([cmd, "d.vmdk"], in: dir)
            // The extent file does not exist, so info refuses the image as qemu-img does: the name is in its error.
            Self.expectClean(cmd == "info" ? r.stderr : r.stdout, cmd)
        }
        #expect(try Self.run(["verify", "d.vmdk"], in: dir).status == 2)
        #expect(try Self.run(["info", "d.vmdk"], in: dir).status == 1)
    }
}
