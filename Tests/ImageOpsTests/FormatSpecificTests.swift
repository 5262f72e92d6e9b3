import Foundation
import Testing
@testable import QCow2
import TestSupport

/// Hostile VMDK and LUKS headers: `info --output json` must not trap, and its `format-specific` block must be
/// qemu-img's, or imgtool must refuse the image as qemu-img does.
@Suite(.serialized)
struct FormatSpecificTests {
    static let secret = ["--object", "secret,id=s0,data=pw"]

    /// Runs both on `name` (relative to `dir`): both refuse, or both print the same block.
    static func agree(_ name: String, in dir: TempDir) throws {
        let theirs = try runProgram(try QemuImg.path(), ["info", "--output=json", name], cwd: dir.path)
        let ours = try ImgtoolBinary.run(["info", "--output", "json", name], cwd: dir.path)
        guard theirs.status == 0 else {
            #expect(ours.status == 1, "qemu-img refuses (\(theirs.stderr)); imgtool exit \(ours.status): \(ours.stdout)")
            return
        }
        #expect(ours.status == 0, "\(ours.stderr)")
        let a = try JSONValue.parse(ours.stdout)["format-specific"], b = try JSONValue.parse(theirs.stdout)["format-specific"]
        #expect(a == b, "imgtool \(a?.description ?? "nil") vs qemu-img \(b?.description ?? "nil")")
    }

    /// Key slot offsets near 2^32 sectors: QEMU's 32-bit sums wrap (one such header opens), others overlap the
    /// payload or the header; a non-UTF-8 UUID and a string without its NUL.
    @Test(arguments: [
        ("wrapping-slot", [(248, [0xFF, 0xFF, 0xFF, 0xF0])]),
        ("slot-past-payload", [(392, [0x7F, 0xFF, 0xFF, 0xFF])]),
        ("slot-in-header", [(248, [0, 0, 0, 1])]),
        ("bad-uuid", [(168, [0xFF, 0xFE, 0x41, 0x00])]),
        ("no-nul", [(8, [UInt8](repeating: 0x41, count: 32))]),
        ("unknown-ivgen-hash", [(40, Array("xts-plain64:bogus".utf8) + [0])]),
        ("huge-key", [(108, [0xFF, 0xFF, 0xFF, 0xFF])]),
    ] as [(String, [(UInt64, [UInt8])])])
    func hostileLUKS(_ name: String, _ patches: [(UInt64, [UInt8])]) throws {
        let dir = try TempDir("fspec")
        try LUKSFixtures.copy("plain.luks", to: dir.file(name + ".luks"))
        for (offset, bytes) in patches { try patch(dir.file(name + ".luks"), at: offset, bytes) }
        try Self.agree(name + ".luks", in: dir)
    }

    /// Every 592-byte prefix of a few thousand mutations parses without trapping; what parses has eight slots.
    @Test func luksParserSurvivesMutations() throws {
        var rng = SystemRandomNumberGenerator()
        var base = Array("LUKS".utf8) + [0xBA, 0xBE, 0, 1]
        base += [UInt8](repeating: 0, count: LUKSHeader.size - base.count)
        for _ in 0..<5000 {
            var b = base
            for _ in 0..<Int.random(in: 1...40, using: &rng) { b[Int.random(in: 8..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if case .success(let h) = LUKSHeader.parse(b) { #expect(h.slots.count == 8) }
            _ = LUKSHeader.parse(Array(b.prefix(Int.random(in: 0...b.count, using: &rng))))
        }
    }

    /// A descriptor of 3000 one-sector extents on one file, and CIDs written oddly: the list comes out whole and
    /// equal to qemu-img's, the file looked at once.
    @Test func vmdkWithManyExtents() throws {
        let dir = try TempDir("fspec")
        FileManager.default.createFile(atPath: dir.file("data.bin"), contents: Data(count: 1 << 20))
        var lines = ["# Disk DescriptorFile", "version=1", "parentCID=-1", "CID=0x7fffffffffffffffff", "createType=\"monolithicFlat\"", ""]
        lines += (0..<3000).map { "RW 1 FLAT \"data.bin\" \($0)" }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir.file("many.vmdk"), atomically: true, encoding: .utf8)
        try Self.agree("many.vmdk", in: dir)
        let r = try ImgtoolBinary.run(["info", "--output", "json", "many.vmdk"], cwd: dir.path)
        let extents = try JSONValue.parse(r.stdout)["format-specific"]?["data"]?["extents"]?.elements ?? []
        // The blank line before the extents scans (sscanf skips newlines) as the first extent line again: QEMU lists
        // that extent twice, and so does imgtool.
        #expect(extents.count == 3001)
    }

    /// sscanf's `%x` as QEMU's CID read uses it: the first "CID" may be parentCID's; signs negate, overflow clamps.
    @Test func cidScan() {
        func cids(_ s: String) -> VMDKCIDs? { VMDKCIDs.parse(Array(s.utf8)) }
        #expect(cids("CID=1f\nparentCID=ffffffff\n") == VMDKCIDs(cid: 0x1F, parentCID: 0xFFFF_FFFF))
        #expect(cids("parentCID=12\nCID=34\n") == VMDKCIDs(cid: 0x12, parentCID: 0x12))
        #expect(cids("CID= -1\nparentCID=0xZ\n") == VMDKCIDs(cid: 0xFFFF_FFFF, parentCID: 0))
        #expect(cids("CID=123456789abcdef01\nparentCID=+A\n") == VMDKCIDs(cid: 0xFFFF_FFFF, parentCID: 10))
        #expect(cids("CID=zz\nparentCID=1\n") == nil)
        #expect(cids("CID=1\n") == nil)
    }
}
