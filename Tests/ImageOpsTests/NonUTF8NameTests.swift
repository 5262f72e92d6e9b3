import Foundation
import Testing
@testable import ImageOps
@testable import imgtool
import QCow2
import TestSupport

/// File names that are not UTF-8 (a Latin-1 `caf\xe9.qcow2`, the invalid `\xff\xfe.cow`) name their files in every
/// command: on the command line, in folder listings, as backing names read from and written into images, in qemu-img's
/// argv. The terminal shows such a byte as `\xNN`, JSON carries it as `\udcNN`, and a printed command line quotes it
/// `$'…\xNN…'` so it pastes exactly. Every command runs through bash so that argv holds the raw bytes.
@Suite struct NonUTF8NameTests {
    /// The name spelled by `spelling`, where `\\xNN` stands for byte NN and everything else for its UTF-8.
    static func name(_ spelling: String) -> String {
        var bytes: [UInt8] = []
        var rest = Substring(spelling)
        while let r = rest.range(of: "\\x") {
            bytes += Array(rest[..<r.lowerBound].utf8)
            let hex = rest[r.upperBound...].prefix(2)
            bytes.append(UInt8(hex, radix: 16) ?? 0x3F)
            rest = rest[r.upperBound...].dropFirst(2)
        }
        return String(pathBytes: bytes + Array(rest.utf8))
    }

    static let latin1 = name("caf\\xe9.qcow2")
    static let invalid = name("\\xff\\xfe.cow")
    static let dependent = name("d\\xe9p.cow")
    static let other = name("oth\\xe8r.cow")
    /// The UTF-8 of U+10FF80, the first scalar that stands for a byte: it must name its own file, not byte 0x80.
    static let escapeLike = name("\\xf4\\x8f\\xbe\\x80.qcow2")

    /// A folder of images, a save store, and commands run through bash with their words quoted byte for byte.
    struct Store {
        let dir: TempDir
        var state: String { dir.path + "/.state" }

        init() throws { dir = try TempDir("nonutf8") }

        /// `words` run in the folder by bash, each quoted so the program gets its exact bytes.
        func run(_ words: [String], slow: Bool = false) throws -> RunResult {
            var env = ProcessInfo.processInfo.environment
            env["IMGTOOL_STATE_DIR"] = state
            if slow { env["IMGTOOL_NO_FAST_PATH"] = "1" }
            return try runProgram("/bin/bash", ["-c", "exec " + Shell.join(words)], cwd: dir.path, environment: env)
        }

        func imgtool(_ args: String..., slow: Bool = false) throws -> RunResult {
            try run([try ImgtoolBinary.path()] + args, slow: slow)
        }

        func qemu(_ args: String...) throws {
            let r = try run([try QemuImg.path()] + args)
            guard r.status == 0 else { throw ToolError("qemu-img \(args) failed: \(r.stderr)") }
        }

        func digest(_ name: String) throws -> String {
            String(try run(["sha256sum", "--", name]).stdout.prefix(64))
        }

        func digests(_ names: [String]) throws -> [String] { try names.map(digest) }

        /// `qemu-img check` passes.
        func checks(_ name: String) throws -> Bool { try run([try QemuImg.path(), "check", "-q", name]).status == 0 }

        /// The backing name qemu-img reads from `name`, as its exact bytes (qemu-img's human output prints them raw).
        func backingBytes(_ name: String) throws -> [UInt8]? {
            let line = "\(Shell.join([try QemuImg.path(), "info", "-U", name])) | sed -n 's/^backing file: //p' | od -An -tx1"
            let r = try runProgram("/bin/bash", ["-c", line], cwd: dir.path)
            let hex = r.stdout.split(whereSeparator: \.isWhitespace).compactMap { UInt8($0, radix: 16) }
            guard hex.last == 0x0A else { return nil }
            return Array(hex.dropLast())
        }

        /// A qcow2 base and an overlay backed by it, both named as given.
        func chain(base: String, top: String) throws {
            try qemu("create", "-q", "-f", "qcow2", base, "16M")
            try qemu("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
        }
    }

    static func shown(_ s: String) -> String { Untrusted.shown(s) }
    static func json(_ s: String) -> String {
        s.unicodeScalars.map { u in PathBytes.escapedByte(u).map { "\\udc" + String($0, radix: 16) } ?? String(u) }.joined()
    }

    @Test func readCommandsNameTheFile() throws {
        let s = try Store()
        try s.chain(base: Self.latin1, top: Self.invalid)
        #expect(Self.shown(Self.latin1) == "caf\\xe9.qcow2" && Self.json(Self.latin1) == "caf\\udce9.qcow2")
        for slow in [false, true] {
            let info = try s.imgtool("info", Self.latin1, slow: slow)
            #expect(info.status == 0 && info.stdout.contains("image:         caf\\xe9.qcow2"), "\(info)")
            let infoJSON = try s.imgtool("info", "--output", "json", Self.invalid, slow: slow)
            #expect(infoJSON.status == 0, "\(infoJSON)")
            #expect(infoJSON.stdout.contains(#""filename": "\udcff\udcfe.cow""#), "\(infoJSON.stdout)")
            #expect(infoJSON.stdout.contains(#""backing-filename": "caf\udce9.qcow2""#), "\(infoJSON.stdout)")
            let chain = try s.imgtool("chain", Self.invalid, slow: slow)
            #expect(chain.status == 0 && chain.stdout.contains("└─ caf\\xe9.qcow2") && chain.stdout.contains("2 layers, healthy"), "\(chain)")
            let chainJSON = try s.imgtool("chain", "--output=json", Self.invalid, slow: slow)
            #expect(chainJSON.status == 0 && chainJSON.stdout.contains(#""filename": "caf\udce9.qcow2""#), "\(chainJSON)")
            let who = try s.imgtool("who", Self.latin1, slow: slow)
            #expect(who.status == 0 && who.stdout.contains("caf\\xe9.qcow2: no process or device holds it"), "\(who)")
            for r in [info, infoJSON, chain, chainJSON, who] {
                #expect(!r.stdout.contains("\u{FFFD}") && !r.stderr.contains("\u{FFFD}"), "a byte was lost: \(r)")
            }
        }
        let scan = try s.imgtool("scan", ".")
        #expect(scan.status == 0 && scan.stdout.contains("caf\\xe9.qcow2") && scan.stdout.contains("└─ \\xff\\xfe.cow"), "\(scan)")
        #expect(scan.stdout.contains("2 images in 1 chain, no broken links"), "\(scan)")
        let scanJSON = try s.imgtool("scan", "--output", "json", ".")
        #expect(scanJSON.stdout.contains(#""filename": "\udcff\udcfe.cow""#) && scanJSON.stdout.contains(#""filename": "caf\udce9.qcow2""#), "\(scanJSON)")
        let unsafe = try s.imgtool("verify", Self.invalid)
        #expect(unsafe.status == 2 && unsafe.stdout.contains("names a backing file: caf\\xe9.qcow2"), "\(unsafe)")
        let safe = try s.imgtool("verify", "--output", "json", Self.latin1)
        #expect(safe.status == 0, "\(safe)")
        // The old decoding read this as "no such file".
        let missing = try s.imgtool("info", Self.name("caf\\xe8.qcow2"))
        #expect(missing.status == 1 && missing.stderr.contains("caf\\xe8.qcow2"), "\(missing)")
    }

    /// A name holding the UTF-8 of an escape scalar is its own file, shown as its four bytes.
    @Test func theEscapeScalarsOwnUTF8IsAnotherName() throws {
        let s = try Store()
        try s.chain(base: Self.escapeLike, top: "top.cow")
        let chain = try s.imgtool("chain", "top.cow")
        #expect(chain.status == 0 && chain.stdout.contains("└─ \\xf4\\x8f\\xbe\\x80.qcow2"), "\(chain)")
        let json = try s.imgtool("info", "--output=json", "top.cow")
        #expect(json.stdout.contains(#""backing-filename": "\udcf4\udc8f\udcbe\udc80.qcow2""#), "\(json)")
        #expect(try s.backingBytes("top.cow") == [0xF4, 0x8F, 0xBE, 0x80] + Array(".qcow2".utf8))
    }

    /// A VMDK's extent name is read from its descriptor as bytes and opened by them.
    @Test func vmdkExtentNamedInLatin1() throws {
        let s = try Store()
        let vmdk = Self.name("v\\xe9.vmdk")
        try s.qemu("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", vmdk, "1M")
        #expect(try s.run(["cp", fixturesDirectory() + "/mbr.raw", Self.name("v\\xe9-flat.vmdk")]).status == 0)
        let info = try s.imgtool("info", "--output=json", vmdk)
        #expect(info.status == 0 && info.stdout.contains(#""filename": "v\udce9-flat.vmdk""#), "\(info)")
        // The partitions are read through the extent: the table is the fixture's, not an empty disk.
        let parts = try s.imgtool("partitions", vmdk)
        #expect(parts.status == 0 && !parts.stdout.contains("no partition table"), "\(parts)")
        let verify = try s.imgtool("verify", vmdk)
        #expect(verify.status == 2 && verify.stdout.contains("names another file: v\\xe9-flat.vmdk"), "\(verify)")
    }

    @Test func createAndMBRWrap() throws {
        let s = try Store()
        let raw = Self.name("n\\xe9w.raw")
        let create = try s.imgtool("create", raw, "1M", "--format", "raw")
        let exists = try s.run(["test", "-f", raw]).status
        #expect(create.status == 0 && exists == 0, "\(create)")
        let wrap = try s.imgtool("mbr-wrap", raw)
        #expect(wrap.status == 0 && wrap.stdout.contains("cat $'n\\xe9w.raw.mbr' $'n\\xe9w.raw'"), "\(wrap)")
        #expect(try s.run(["test", "-s", raw + ".mbr"]).status == 0)
    }

    @Test func partitionsAndOffset() throws {
        let s = try Store()
        let disk = Self.name("d\\xefsk.raw")
        #expect(try s.run(["cp", fixturesDirectory() + "/mbr.raw", disk]).status == 0)
        let parts = try s.imgtool("partitions", disk)
        #expect(parts.status == 0 && parts.stdout.contains("$'d\\xefsk.raw'"), "\(parts)")
        #expect(try s.imgtool("partitions", "--output", "json", disk).status == 0)
        let offset = try s.imgtool("offset", disk, "1")
        #expect(offset.status == 0 && Int(offset.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) != nil, "\(offset)")
    }

    @Test func whoFindsAHolder() throws {
        let s = try Store()
        try s.qemu("create", "-q", "-f", "qcow2", Self.latin1, "1M")
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/bash")
        // Its command line holds the name too (argv[0]): /proc/PID/cmdline is read as bytes.
        holder.arguments = ["-c", "exec 3<\(Shell.quote(Self.latin1)) && exec -a \(Shell.quote(Self.latin1)) sleep 600"]
        holder.currentDirectoryURL = URL(fileURLWithPath: s.dir.path)
        try holder.run()
        // SIGKILL: swift test may run us with SIGTERM ignored, and the holder would inherit that.
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        // No timing assumed: ask until the holder has the file open (bash opens it before it becomes sleep).
        var who = try s.imgtool("who", Self.latin1)
        for _ in 0..<600 {
            if who.status == 2 && who.stdout.contains("caf\\xe9.qcow2 600") { break }
            usleep(100_000)
            who = try s.imgtool("who", Self.latin1)
        }
        #expect(who.status == 2 && who.stdout.contains("caf\\xe9.qcow2 600") && !who.stdout.contains("\u{FFFD}"), "\(who)")
    }

    /// The dependent named in Latin-1 is found, so the commit that would corrupt it is refused.
    @Test func commitFindsTheDependent() throws {
        let s = try Store()
        try s.chain(base: Self.latin1, top: Self.invalid)
        try s.qemu("create", "-q", "-f", "qcow2", "-b", Self.invalid, "-F", "qcow2", Self.dependent)
        try s.qemu("create", "-q", "-f", "qcow2", "-b", Self.invalid, "-F", "qcow2", Self.other)
        let all = [Self.latin1, Self.invalid, Self.dependent, Self.other]
        let before = try s.digests(all)
        let refused = try s.imgtool("commit", Self.dependent)
        #expect(refused.status == 1 && refused.stderr.contains("oth\\xe8r.cow"), "\(refused)")
        #expect(try s.digests(all) == before)
        #expect(try s.run(["rm", "--", Self.other]).status == 0)
        let done = try s.imgtool("commit", Self.dependent)
        #expect(done.status == 0, "\(done)")
        #expect(try s.checks(Self.invalid) && s.checks(Self.dependent))
        #expect(try s.backingBytes(Self.dependent) == Self.invalid.pathBytes)
    }

    @Test func changesWriteTheExactBytes() throws {
        let s = try Store()
        try s.qemu("create", "-q", "-f", "qcow2", Self.latin1, "16M")
        // overlay: the default name is the base's with .cow, and the backing name its exact bytes.
        let overlay = try s.imgtool("overlay", Self.latin1)
        let cow = Self.name("caf\\xe9.cow")
        #expect(overlay.status == 0, "\(overlay)")
        #expect(try s.checks(cow) && s.backingBytes(cow) == Self.latin1.pathBytes)
        // The base moves into a folder whose name is not UTF-8 either: the no-IMAGE form finds the overlay.
        let sub = Self.name("sub\\xf1")
        #expect(try s.run(["mkdir", sub]).status == 0 && s.run(["mv", Self.latin1, sub + "/"]).status == 0)
        let moved = sub + "/" + Self.latin1
        let dry = try s.imgtool("fix-backing", "--to", moved, "--dry-run")
        #expect(dry.status == 0 && dry.stdout.contains("-b $'sub\\xf1/caf\\xe9.qcow2'"), "\(dry)")
        let fixed = try s.imgtool("fix-backing", "--to", moved)
        #expect(fixed.status == 0 && fixed.stdout.contains("fixed: caf\\xe9.cow"), "\(fixed)")
        #expect(try s.checks(cow) && s.backingBytes(cow) == moved.pathBytes)
        // undo puts the old name back, byte for byte.
        let undo = try s.imgtool("undo", cow)
        #expect(undo.status == 0, "\(undo)")
        #expect(try s.backingBytes(cow) == Self.latin1.pathBytes)
        // The explicit form, with the slow parser.
        let explicit = try s.imgtool("fix-backing", cow, "--to", moved, slow: true)
        #expect(try explicit.status == 0 && s.backingBytes(cow) == moved.pathBytes, "\(explicit)")
        // rebase, header only and safe.
        let other = Self.name("b2\\xe4.qcow2")
        try s.qemu("create", "-q", "-f", "qcow2", other, "16M")
        let unsafe = try s.imgtool("rebase", cow, "--onto", other, "--unsafe")
        #expect(try unsafe.status == 0 && s.backingBytes(cow) == other.pathBytes, "\(unsafe)")
        let safe = try s.imgtool("rebase", cow, "--onto", moved)
        #expect(try safe.status == 0 && s.backingBytes(cow) == moved.pathBytes, "\(safe)")
        #expect(try s.checks(cow))
        // resize, then flatten.
        let resize = try s.imgtool("resize", cow, "32M")
        #expect(resize.status == 0 && resize.stdout.contains("32 MiB"), "\(resize)")
        #expect(try s.checks(cow))
        let flatten = try s.imgtool("rebase", cow, "--flatten")
        #expect(try flatten.status == 0 && s.backingBytes(cow) == nil, "\(flatten)")
        #expect(try s.checks(cow))
    }

    /// A dry run's command line, pasted into bash, does what the change would: the quoting carries the bytes.
    @Test func printedCommandLinesPasteExactly() throws {
        let s = try Store()
        try s.qemu("create", "-q", "-f", "qcow2", Self.latin1, "16M")
        try s.qemu("create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", Self.invalid, "16M")
        let dry = try s.imgtool("fix-backing", Self.invalid, "--to", Self.latin1, "--dry-run")
        let line = try #require(dry.stdout.split(separator: "\n").first { $0.contains(" rebase ") }, "\(dry)")
        #expect(line.hasSuffix("< $'\\xff\\xfe.cow'"), "\(line)")
        #expect(try runProgram("/bin/bash", ["-c", String(line)], cwd: s.dir.path).status == 0)
        #expect(try s.backingBytes(Self.invalid) == Self.latin1.pathBytes)
    }

    @Test func refusalsLeaveEveryByte() throws {
        let s = try Store()
        try s.chain(base: Self.latin1, top: Self.invalid)
        let notImage = Self.name("n\\xf6t.txt")
        #expect(try s.run(["bash", "-c", "echo hello > \"$1\"", "-", notImage]).status == 0)
        let all = [Self.latin1, Self.invalid, notImage]
        let before = try s.digests(all)
        let exists = try s.imgtool("overlay", Self.latin1, Self.invalid)
        #expect(exists.status == 1 && exists.stderr.contains("\\xff\\xfe.cow"), "\(exists)")
        let notAnImage = try s.imgtool("fix-backing", Self.invalid, "--to", notImage)
        #expect(notAnImage.status == 1 && notAnImage.stderr.contains("n\\xf6t.txt"), "\(notAnImage)")
        let loop = try s.imgtool("rebase", Self.latin1, "--onto", Self.invalid, "--unsafe")
        #expect(loop.status == 1, "\(loop)")
        let shrink = try s.imgtool("resize", Self.invalid, "8M")
        #expect(shrink.status != 0, "\(shrink)")
        #expect(try s.digests(all) == before)
    }

    /// QMP is JSON text: a name that is not UTF-8 is refused before anything is sent, never sent as another name.
    @Test func qmpRefusesANameItCannotCarry() {
        #expect(QMPValue.object(["a": .array([.string("x"), .string(Self.latin1)])]).nameNotUTF8 == Self.latin1)
        #expect(QMPValue.object(["filename": .string("caf\u{E9}.qcow2")]).nameNotUTF8 == nil)
        #expect(QMPValue.object(["backing-file": .string("b\u{FFFD}.qcow2")]).nameNotUTF8 == "b\u{FFFD}.qcow2")
    }

    @Test func renderings() {
        #expect(JSON.string(Self.invalid + "\u{1B}").rendered() == #""\udcff\udcfe.cow\u001b""#)
        #expect(JSON.string("caf\u{E9}").rendered() == "\"caf\u{E9}\"")
        #expect(Untrusted.shown(Self.latin1 + "\u{1B}") == "caf\\xe9.qcow2\\x1b")
        #expect(Shell.quote(Self.latin1) == "$'caf\\xe9.qcow2'")
    }
}
