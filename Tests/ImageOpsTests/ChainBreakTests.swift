import Foundation
import Testing
import TestSupport

/// Every kind of broken link, made with the real qemu-img, reported by `imgtool chain` run from a folder that is
/// not the images' own (so relative names must be resolved against the naming image, not the cwd).
@Suite(.serialized)
struct ChainBreakTests {
    let root: TempDir
    let store: String
    let elsewhere: String

    init() throws {
        root = try TempDir("breaks")
        store = try root.mkdir("store")
        elsewhere = try root.mkdir("elsewhere")
    }

    func qemu(_ args: String...) throws { try QemuImg.run(args, cwd: store) }

    /// Runs `imgtool chain --output json` from `elsewhere` on a store image; returns exit status and the problems.
    func chain(_ image: String, _ extra: [String] = [], asUser: Bool = false) throws -> (Int32, [[String: Any]], [String: Any]) {
        var args = ["chain", "--output", "json", "../store/" + image] + extra
        var exe = try ImgtoolBinary.path()
        if asUser {
            // Root reads everything; drop to nobody so a permission problem is real.
            args = ["--reuid=65534", "--regid=65534", "--clear-groups", exe] + args
            exe = try #require(which("setpriv"))
        }
        let r = try runProgram(exe, args, cwd: elsewhere)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "stdout: \(r.stdout) stderr: \(r.stderr)")
        return (r.status, (json["problems"] as? [[String: Any]]) ?? [], json)
    }

    func expectKind(_ image: String, _ kind: String, layer: Int = 0, _ extra: [String] = [], asUser: Bool = false, layers: Int? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (status, problems, json) = try chain(image, extra, asUser: asUser)
        #expect(status == 2, sourceLocation: sourceLocation)
        #expect(json["healthy"] as? Bool == false, sourceLocation: sourceLocation)
        let first = problems.first
        #expect(first?["kind"] as? String == kind, "\(problems)", sourceLocation: sourceLocation)
        #expect(first?["layer"] as? Int == layer, sourceLocation: sourceLocation)
        #expect((first?["message"] as? String)?.isEmpty == false, sourceLocation: sourceLocation)
        #expect((json["layers"] as? [Any])?.count == (layers ?? layer + 1), "the layers above the break are reported", sourceLocation: sourceLocation)
    }

    @Test func healthyFromElsewhere() throws {
        try qemu("create", "-q", "-f", "raw", "base.raw", "1M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "vm.cow")
        let (status, problems, json) = try chain("vm.cow")
        #expect(status == 0)
        #expect(problems.isEmpty)
        #expect((json["layers"] as? [Any])?.count == 2)
    }

    @Test func missingWithCandidate() throws {
        try qemu("create", "-q", "-f", "raw", "img1.raw", "1M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "img1.raw", "-F", "raw", "mid.cow")
        try qemu("create", "-q", "-f", "qcow2", "-b", "mid.cow", "-F", "qcow2", "img1.cow")
        try FileManager.default.createDirectory(atPath: store + "/new", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: store + "/img1.raw", toPath: store + "/new/img1.raw")
        try expectKind("img1.cow", "missing", layer: 1)
        let (_, problems, _) = try chain("img1.cow")
        #expect(problems.first?["resolved"] as? String == "../store/img1.raw")
        let suggestions = problems.first?["suggestions"] as? [String] ?? []
        #expect(suggestions.contains { $0.contains("fix-backing ../store/mid.cow --to ") && $0.hasSuffix("/store/new/img1.raw") }, "\(suggestions)")
        // The human tree names the missing path too.
        let human = try ImgtoolBinary.run(["chain", "../store/img1.cow"], cwd: elsewhere)
        #expect(human.status == 2)
        #expect(human.stdout.contains("missing"))
        #expect(human.stdout.contains("../store/img1.raw"))
    }

    @Test func unreadable() throws {
        try qemu("create", "-q", "-f", "raw", "secret.raw", "1M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "secret.raw", "-F", "raw", "u.cow")
        chmod(store + "/secret.raw", 0)
        chmod(root.path, 0o755)
        try expectKind("u.cow", "unreadable", asUser: getuid() == 0)
    }

    @Test func loop() throws {
        try qemu("create", "-q", "-f", "qcow2", "-u", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2", "1M")
        try qemu("create", "-q", "-f", "qcow2", "-u", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2", "1M")
        try expectKind("a.qcow2", "loop", layer: 1)
    }

    @Test func selfLoopThroughSymlink() throws {
        try qemu("create", "-q", "-f", "qcow2", "-u", "-b", "alias.qcow2", "-F", "qcow2", "self.qcow2", "1M")
        try FileManager.default.createSymbolicLink(atPath: store + "/alias.qcow2", withDestinationPath: "self.qcow2")
        try expectKind("self.qcow2", "loop")
    }

    @Test func notAnImage() throws {
        try FileManager.default.createDirectory(atPath: store + "/adir", withIntermediateDirectories: true)
        try qemu("create", "-q", "-f", "qcow2", "-u", "-b", "adir", "-F", "raw", "d.qcow2", "1M")
        try expectKind("d.qcow2", "not-an-image")
    }

    @Test func formatMismatch() throws {
        try qemu("create", "-q", "-f", "qcow2", "real.qcow2", "1M")
        try qemu("create", "-q", "-f", "qcow2", "-u", "-b", "real.qcow2", "-F", "raw", "m.qcow2", "1M")
        try expectKind("m.qcow2", "format-mismatch")
    }

    @Test func noFormat() throws {
        // qemu-img 6.1+ will not write a backing link without a format; older images have them. Make one by
        // renaming the backing-format extension to an unknown type, which every reader skips.
        try qemu("create", "-q", "-f", "raw", "nf.raw", "1M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "nf.raw", "-F", "raw", "nf.qcow2")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: store + "/nf.qcow2")))
        let ext: [UInt8] = [0xE2, 0x79, 0x2A, 0xCA]
        let at = try #require((0..<4096).first { Array(bytes[$0..<($0 + 4)]) == ext })
        bytes[at] = 0x11
        try Data(bytes).write(to: URL(fileURLWithPath: store + "/nf.qcow2"))
        // qemu-img agrees there is no recorded format.
        let theirs = try #require(try QemuImg.info(store + "/nf.qcow2") as? [String: Any])
        #expect(theirs["backing-filename-format"] == nil)
        // A link without a format still works in QEMU, so it is followed: both layers are reported.
        try expectKind("nf.qcow2", "no-format", layers: 2)
    }

    @Test func protocolName() throws {
        try qemu("create", "-q", "-f", "qcow2", "-u", "-b", "nbd:localhost:10809", "-F", "raw", "p.qcow2", "1M")
        try expectKind("p.qcow2", "protocol")
    }

    @Test func tooDeep() throws {
        try qemu("create", "-q", "-f", "raw", "l0.raw", "1M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "l0.raw", "-F", "raw", "l1.qcow2")
        for i in 2...5 { try qemu("create", "-q", "-f", "qcow2", "-b", "l\(i - 1).qcow2", "-F", "qcow2", "l\(i).qcow2") }
        try expectKind("l5.qcow2", "too-deep", layer: 3, ["--max-depth", "3"])
    }

    @Test func invalidHeaderBelow() throws {
        try qemu("create", "-q", "-f", "qcow2", "bad.qcow2", "1M")
        try qemu("create", "-q", "-f", "qcow2", "-b", "bad.qcow2", "-F", "qcow2", "top.qcow2")
        // cluster_bits = 40
        let h = try #require(FileHandle(forUpdatingAtPath: store + "/bad.qcow2"))
        try h.seek(toOffset: 20)
        h.write(Data([0, 0, 0, 40]))
        try h.close()
        try expectKind("top.qcow2", "invalid-header")
    }

    @Test func unreadableTopIsExitOne() throws {
        let r = try ImgtoolBinary.run(["chain", "../store/nope.qcow2"], cwd: elsewhere)
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("imgtool: error: "))
        #expect(r.stderr.contains("nope.qcow2"))
    }

    @Test func hostileTopHeaderIsExitOneNamingTheField() throws {
        let cases: [(Int, [UInt8], String)] = [
            (20, [0, 0, 0, 99], "cluster_bits"),
            (4, [0, 0, 0, 9], "version"),
            (36, [0xFF, 0xFF, 0xFF, 0xFF], "l1_size"),
            (100, [0, 0, 0, 8], "header_length"),
            (8, [0, 0, 0, 0, 0, 0x10, 0, 0], "backing_file_offset"),
            (72, [0x80, 0, 0, 0, 0, 0, 0, 0], "incompatible_features"),
        ]
        for (offset, patch, field) in cases {
            try qemu("create", "-q", "-f", "qcow2", "h.qcow2", "1M")
            let h = try #require(FileHandle(forUpdatingAtPath: store + "/h.qcow2"))
            try h.seek(toOffset: UInt64(offset))
            h.write(Data(patch))
            try h.close()
            for cmd in ["info", "chain"] {
                let r = try ImgtoolBinary.run([cmd, "../store/h.qcow2"], cwd: elsewhere)
                #expect(r.status == 1, "\(cmd) \(field)")
                #expect(r.stderr.contains(field), "\(cmd): \(r.stderr)")
                #expect(r.stderr.contains("h.qcow2"))
            }
            // qemu-img refuses it too.
            #expect(try runProgram(try QemuImg.path(), ["info", store + "/h.qcow2"]).status != 0, "\(field)")
        }
    }

    @Test func truncatedFile() throws {
        try qemu("create", "-q", "-f", "qcow2", "t.qcow2", "1M")
        truncate(store + "/t.qcow2", 50)
        let r = try ImgtoolBinary.run(["info", "../store/t.qcow2"], cwd: elsewhere)
        #expect(r.status == 1)
        #expect(r.stderr.contains("truncated"))
    }
}
