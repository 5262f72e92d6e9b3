import Foundation
import Testing
@testable import ImageOps
import QCow2
import TestSupport

/// `imgtool space` and `scan --space` as a user runs them.
extension SpaceDifferentialTests {
    /// The CLI: the contract's JSON keys, dependents, exit codes, and names shown escaped.
    @Test func commandLine() throws {
        try img("create", "-q", "-f", "qcow2", "base.qcow2", "8M")
        try io("base.qcow2", "write -P 1 0 1M")
        try img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top\u{1b}[31m.qcow2", "16M")
        try io("top\u{1b}[31m.qcow2", "write -P 2 512k 1M")
        try img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "other.qcow2")
        let before = try fileDigest(f("base.qcow2"))
        let r = try ImgtoolBinary.run(["space", "--output", "json", "top\u{1b}[31m.qcow2"], cwd: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        let v = try JSONValue.parse(r.stdout)
        #expect(v["image"] == .string("top\u{1b}[31m.qcow2"))
        #expect(v["virtual-size"] == .int(16 << 20))
        let layers = v["layers"]?.elements ?? []
        #expect(layers.count == 2)
        for key in ["filename", "format", "file-size", "allocated", "visible", "shadowed", "metadata", "unused", "dependents"] {
            #expect(layers.allSatisfy { $0[key] != nil }, "layers lack \(key)")
        }
        #expect(layers.first?["allocated"] == .int(1 << 20))
        #expect(layers.last?["shadowed"] == .int(512 << 10))
        #expect(layers.last?["dependents"]?.elements == [.string(f("other.qcow2"))])
        let commit = v["commit"]?.elements.first
        for key in ["layer", "into", "writes", "target-grows", "needs-resize"] { #expect(commit?[key] != nil, "commit lacks \(key)") }
        #expect(commit?["needs-resize"] == .bool(true))
        #expect(v["flatten"]?["file-size"] != nil)
        #expect(try fileDigest(f("base.qcow2")) == before)

        let human = try ImgtoolBinary.run(["space", "top\u{1b}[31m.qcow2"], cwd: dir.path)
        #expect(human.status == 0)
        #expect(!human.stdout.contains("\u{1b}") && human.stdout.contains("\\x1b"), "\(human.stdout)")
        #expect(human.stdout.contains("Flatten"))

        let missing = try ImgtoolBinary.run(["space", "nothing.qcow2"], cwd: dir.path)
        #expect(missing.status == 1 && missing.stderr.hasPrefix("imgtool: error: "))
        try img("create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", "broken.qcow2", "1M")
        let broken = try ImgtoolBinary.run(["space", "broken.qcow2"], cwd: dir.path)
        #expect(broken.status == 2 && broken.stderr.contains("imgtool chain"), "\(broken.stderr)")
        // A link with no recorded format: followed as QEMU does, reported, exit 2 as `chain`.
        // (qemu-img will not write one: the backing-format extension's type is renamed to one every reader skips.)
        try img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "noformat.qcow2")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: f("noformat.qcow2"))))
        let at = try #require((0..<4096).first { Array(bytes[$0..<($0 + 4)]) == [0xE2, 0x79, 0x2A, 0xCA] })
        bytes[at] = 0x11
        try Data(bytes).write(to: URL(fileURLWithPath: f("noformat.qcow2")))
        let warned = try ImgtoolBinary.run(["space", "noformat.qcow2"], cwd: dir.path)
        #expect(warned.status == 2 && warned.stdout.contains("Flatten"), "\(warned.stdout)\(warned.stderr)")
    }

    /// `--store DIR`: images backed by a layer found at any depth under DIR, beside those in the chain's folders.
    @Test func storeDependents() throws {
        try FileManager.default.createDirectory(atPath: f("vms/base"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: f("store/a/b"), withIntermediateDirectories: true)
        try img("create", "-q", "-f", "qcow2", "vms/base/base.qcow2", "8M")
        try img("create", "-q", "-f", "qcow2", "-b", "base/base.qcow2", "-F", "qcow2", "vms/top.qcow2")
        try img("create", "-q", "-f", "qcow2", "-b", "../../../vms/base/base.qcow2", "-F", "qcow2", "store/a/b/deep.qcow2")
        let without = try ImgtoolBinary.run(["space", "--output", "json", "vms/top.qcow2"], cwd: dir.path)
        #expect(try JSONValue.parse(without.stdout)["layers"]?.elements.last?["dependents"]?.elements == [])
        let with = try ImgtoolBinary.run(["space", "--output", "json", "--store", "store", "vms/top.qcow2"], cwd: dir.path)
        let deps = try JSONValue.parse(with.stdout)["layers"]?.elements.last?["dependents"]?.elements ?? []
        #expect(deps.count == 1 && "\(deps)".contains("deep.qcow2"), "\(deps)")
    }

    /// `scan DIR --space`: each chain's totals, a shared layer read once, and what no chain reads.
    @Test func scanSpace() throws {
        try img("create", "-q", "-f", "raw", "base.raw", "64M")
        try io("base.raw", "write -P 1 0 8M", "write -P 2 32M 4M", format: "raw")
        try img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "vm.qcow2", "64M")
        try io("vm.qcow2", "write -P 3 4M 6M", "write -z 33M 1M")
        try img("create", "-q", "-f", "qcow2", "-b", "vm.qcow2", "-F", "qcow2", "snap.qcow2")
        try io("snap.qcow2", "write -P 4 6M 2M")
        try img("create", "-q", "-f", "qcow2", "-b", "vm.qcow2", "-F", "qcow2", "other.qcow2")
        let r = try ImgtoolBinary.run(["scan", ".", "--space", "--output", "json"], cwd: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        let space = try #require(try JSONValue.parse(r.stdout)["space"])
        #expect(space["chains"]?.elements.count == 2)
        #expect(space["files"] == .int(4))
        // base.raw's 4...8 MiB (under vm.qcow2's data) and 33...34 MiB (under its zeros) are read by neither chain;
        // vm.qcow2's 6...8 MiB is hidden in snap's chain only: other.qcow2 still reads it.
        #expect(space["unread"] == .int(5 << 20))
        let human = try ImgtoolBinary.run(["scan", ".", "--space"], cwd: dir.path)
        #expect(human.stdout.contains("could reclaim 5 MiB"), "\(human.stdout)")
    }
}
