import Foundation
import Testing
import TestSupport

/// `verify` on VMDK and VHD flags exactly what makes QEMU open another file or misread this one: not a renamed
/// sparse image, not VMware's `createType="streamOptimized" ` with its trailing space; yes a zero-capacity header
/// whose embedded descriptor names a file, descriptor extents past the first 4 KiB, a differencing VHD.
@Suite(.serialized)
struct VerifyVMDKTests {
    static func verify(_ path: String, _ cwd: String) throws -> RunResult {
        try ImgtoolBinary.run(["verify", "--output", "json", path], cwd: cwd)
    }

    @Test(arguments: ["monolithicSparse", "streamOptimized"])
    func renamedSparseImageIsSafe(subformat: String) throws {
        let dir = try TempDir("vvmdk")
        try QemuImg.run(["create", "-q", "-f", "vmdk", "-o", "subformat=\(subformat)", "made.vmdk", "10M"], cwd: dir.path)
        try FileManager.default.moveItem(atPath: dir.file("made.vmdk"), toPath: dir.file("renamed.vmdk"))
        // The embedded descriptor still names made.vmdk, which no longer exists; qemu-img opens the image anyway.
        #expect(try QemuImg.run(["info", "renamed.vmdk"], cwd: dir.path).contains("file format: vmdk"))
        let r = try Self.verify("renamed.vmdk", dir.path)
        #expect(r.status == 0, "\(r.stdout)")
        #expect(!r.stdout.contains("made.vmdk"))
    }

    @Test func vmwareStreamOptimizedWithTrailingSpaceIsSafe() throws {
        let dir = try TempDir("vvmdk")
        let image = try #require(ThirdPartyCorpus.images.first { $0.name == "iotest-version3.vmdk" })
        let path = try ThirdPartyCorpus.materialise(image, in: dir)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.range(of: Data("createType=\"streamOptimized\" \n".utf8)) != nil, "the corpus image has the trailing space")
        let r = try Self.verify(image.name, dir.path)
        #expect(r.status == 0, "\(r.stdout)")
    }

    /// Capacity 0 sends QEMU to the embedded descriptor as a descriptor file: its FLAT extent is read from the host.
    @Test func zeroCapacityHeaderFollowingAnExtentIsUnsafe() throws {
        let dir = try TempDir("vvmdk")
        try QemuImg.run(["create", "-q", "-f", "vmdk", "base.vmdk", "1M"], cwd: dir.path)
        var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file("base.vmdk"))))
        for i in 12..<20 { b[i] = 0 }
        let descSector = Int(b[28]) | Int(b[29]) << 8
        let desc = Array("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2 FLAT \"secret.txt\" 0\n".utf8)
        b.replaceSubrange((descSector * 512)..<(descSector * 512 + 1024), with: desc + [UInt8](repeating: 0, count: 1024 - desc.count))
        try dir.write("cap0.vmdk", b)
        try dir.write("secret.txt", Array("TOP SECRET".utf8) + [UInt8](repeating: 0, count: 1014))
        // The finding is real: qemu-img hands out the host file's bytes.
        try QemuImg.run(["convert", "-O", "raw", "cap0.vmdk", "out.raw"], cwd: dir.path)
        #expect(try String(contentsOfFile: dir.file("out.raw"), encoding: .isoLatin1).hasPrefix("TOP SECRET"))
        let r = try Self.verify("cap0.vmdk", dir.path)
        #expect(r.status == 2)
        #expect(r.stdout.contains("secret.txt"))
    }

    /// QEMU reads a descriptor file up to 1 MiB: an extent after 8 KiB of comments is followed all the same.
    @Test func extentPastTheProbePrefixIsFound() throws {
        let dir = try TempDir("vvmdk")
        try dir.write("data.bin", [UInt8](repeating: 7, count: 4096))
        let padding = String(repeating: "# padding padding padding padding padding padding padding\n", count: 150)
        let text = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n" + padding + "RW 8 FLAT \"data.bin\" 0\n"
        try dir.write("far.vmdk", Array(text.utf8))
        #expect(try QemuImg.run(["info", "--output=json", "far.vmdk"], cwd: dir.path).contains("data.bin"))
        let r = try Self.verify("far.vmdk", dir.path)
        #expect(r.status == 2)
        #expect(r.stdout.contains("data.bin"), "\(r.stdout)")
    }

    /// A differencing VHD stays a finding, and says why: its data is incomplete without the parent.
    @Test func differencingVHDSaysWhy() throws {
        let dir = try TempDir("vvmdk")
        try QemuImg.run(["create", "-q", "-f", "vpc", "d.vhd", "10M"], cwd: dir.path)
        var b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file("d.vhd"))))
        // Disk type 4 in both footer copies, checksum recomputed.
        for base in [0, b.count - 512] {
            b[base + 63] = 4
            for i in 64..<68 { b[base + i] = 0 }
            var sum: UInt32 = 0
            for i in 0..<512 { sum &+= UInt32(b[base + i]) }
            let c = ~sum
            for i in 0..<4 { b[base + 64 + i] = UInt8(truncatingIfNeeded: c >> (8 * UInt32(3 - i))) }
        }
        try dir.write("diff.vhd", b)
        #expect(try QemuImg.run(["info", "diff.vhd"], cwd: dir.path).contains("file format: vpc"))
        let r = try Self.verify("diff.vhd", dir.path)
        #expect(r.status == 2)
        #expect(r.stdout.contains("differencing") && r.stdout.contains("parent"), "\(r.stdout)")
    }
}
