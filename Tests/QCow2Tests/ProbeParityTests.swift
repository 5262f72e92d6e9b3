import Foundation
import Testing
@testable import QCow2
import TestSupport

/// The probe agrees with qemu-img 7.2 on every form of VMDK descriptor `vmdk_probe` accepts (and on near misses it
/// refuses), on bochs, cloop, dmg and LUKS2, and on polyglots where two probes score alike.
@Suite(.serialized)
struct ProbeParityTests {
    /// Descriptor heads; each is followed by a createType and a FLAT extent naming `ext.raw` beside it.
    static let descriptors: [(String, String)] = [
        ("standard", "# Disk DescriptorFile\nversion=1\n"),
        ("crlf", "# Disk DescriptorFile\r\nversion=1\r\n"),
        ("version first", "version=1\n"),
        ("version 2", "version=2\n"),
        ("version 3 crlf", "version=3\r\n"),
        ("blank line of spaces", "# Disk DescriptorFile\n   \nversion=1\n"),
        ("blank line of spaces crlf", "  \r\nversion=1\r\n"),
        ("#Disk without space", "#Disk DescriptorFile\nversion=1\n"),
        ("comment lines", "# made by hand\n#\n# more\nversion=1\n"),
        ("empty line first", "\nversion=1\n"),
        ("crlf empty line", "\r\nversion=1\n"),
        ("version 4", "version=4\n"),
        ("tab indented", "\tversion=1\n"),
        ("spaces then text", "  x\nversion=1\n"),
        ("version past 2 KiB", "#" + String(repeating: "x", count: 2100) + "\nversion=1\n"),
        ("version without newline", "version=1 \n"),
    ]

    static func descriptor(_ head: String) -> String {
        head + "CID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW 2048 FLAT \"ext.raw\" 0\n"
    }

    @Test func vmdkDescriptorsProbeAsQemuProbesThem() throws {
        let dir = try TempDir("probe")
        try QemuImg.run(["create", "-q", "-f", "raw", dir.file("ext.raw"), "1M"])
        for (i, (name, head)) in Self.descriptors.enumerated() {
            let file = dir.file("d\(i).vmdk")
            try dir.write("d\(i).vmdk", Array(Self.descriptor(head).utf8))
            let qemu = (try QemuImg.info(file) as? [String: Any])?["format"] as? String
            let ours = try ImageInfo.read(file).format.rawValue
            #expect(ours == qemu, "\(name): imgtool \(ours), qemu-img \(qemu ?? "?")")
        }
    }

    @Test func flatExtentNamingAHostFileIsVmdkUnsafeAndNotRead() throws {
        let dir = try TempDir("probe")
        // CRLF and a comment first: the forms imgtool used to call raw.
        try dir.write("evil.img", Array("#Disk\r\nversion=1\r\nCID=1\r\nparentCID=ffffffff\r\ncreateType=\"monolithicFlat\"\r\nRW 1 FLAT \"/etc/hostname\" 0\r\n".utf8))
        #expect(try ImageInfo.read(dir.file("evil.img")).format == .vmdk)
        #expect((try QemuImg.info(dir.file("evil.img")) as? [String: Any])?["format"] as? String == "vmdk")
        let r = try ImgtoolBinary.run(["verify", dir.file("evil.img"), "--format", "raw"])
        #expect(r.status == 2, "\(r.stdout)")
        #expect(r.stdout.contains("/etc/hostname"))
        #expect(throws: GuestDisk.Error.self) { try GuestDisk.open(dir.file("evil.img")) }
        // An extent line after 4 KiB of comments is still seen.
        try dir.write("late.img", Array(("version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n" + String(repeating: "# pad\n", count: 1000) + "RW 1 FLAT \"/etc/hostname\" 0\n").utf8))
        let late = try ImgtoolBinary.run(["verify", dir.file("late.img")])
        #expect(late.status == 2 && late.stdout.contains("/etc/hostname"), "\(late.stdout)")
    }

    /// sscanf skips newlines, so QEMU reads an extent once per blank line before it (and once for its own line);
    /// imgtool counts it the same, and a descriptor of blank lines costs one pass, not one per line.
    @Test func blankLinesBeforeAnExtentCountAsQemuCountsThem() throws {
        let dir = try TempDir("probe")
        try QemuImg.run(["create", "-q", "-f", "raw", dir.file("ext.raw"), "1M"])
        let head = "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
        try dir.write("b.vmdk", Array((head + "\n\n\nRW 2048 FLAT \"ext.raw\" 0\n").utf8))
        let want = (try QemuImg.info(dir.file("b.vmdk")) as? [String: Any])?["virtual-size"] as? Int
        #expect(want == 4 << 20)
        #expect(try ImageInfo.read(dir.file("b.vmdk")).virtualSize == want.map(UInt64.init))
        try dir.write("many.vmdk", Array((head + String(repeating: "\n", count: 200_000) + "# end\n").utf8))
        let clock = ContinuousClock()
        let took = try clock.measure { _ = try? ImageInfo.read(dir.file("many.vmdk")) }
        #expect(took < .seconds(5), "\(took)")
    }

    static func agree(_ file: String, _ expected: String) throws {
        let r = try runProgram(try QemuImg.path(), ["info", "--output=json", file])
        let ours = ImageFormat.probe(Array(try Data(contentsOf: URL(fileURLWithPath: file)).prefix(4096)),
                                     fileSize: UInt64((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0), filename: file)
        #expect(ours.format.rawValue == expected, "\(file): imgtool probes \(ours.format)")
        if r.status == 0 {
            let qemu = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["format"] as? String
            #expect(qemu == expected, "\(file): qemu-img says \(qemu ?? "?")")
        } else {
            // qemu-img names the driver that refused it.
            #expect(r.stderr.lowercased().contains(expected == "dmg" ? "dmg" : expected), "\(file): \(r.stderr)")
        }
    }

    @Test func bochsCloopDmgAndLuks2ProbeAsQemuProbesThem() throws {
        let dir = try TempDir("probe")
        try dir.write("disk.bochs", BochsCloop.bochs(diskSize: 1 << 20))
        try Self.agree(dir.file("disk.bochs"), "bochs")
        try dir.write("disk.cloop", BochsCloop.cloop(blocks: [[UInt8](repeating: 7, count: 65536)]))
        try Self.agree(dir.file("disk.cloop"), "cloop")
        // The same cloop named .dmg: both score 2, dmg is asked first.
        try dir.write("disk.dmg", BochsCloop.cloop(blocks: [[UInt8](repeating: 7, count: 65536)]))
        try Self.agree(dir.file("disk.dmg"), "dmg")
        var luks2 = [UInt8](repeating: 0, count: 16384)
        luks2.replaceSubrange(0..<8, with: [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE, 0, 2])
        try dir.write("l2.img", luks2)
        try Self.agree(dir.file("l2.img"), "raw")
        try dir.write("empty.dmg", [])
        try Self.agree(dir.file("empty.dmg"), "raw")
    }

    @Test func polyglotTiesGoWhereQemuSendsThem() throws {
        let dir = try TempDir("probe")
        for (fmt, expected) in [("qcow2", "vdi"), ("vpc", "vdi"), ("qed", "qed"), ("parallels", "parallels"), ("vhdx", "vdi")] {
            let f = dir.file("p.\(fmt)")
            try QemuImg.run(["create", "-q", "-f", fmt, f, "1M"])
            try patch(f, at: 64, [0x7F, 0x10, 0xDA, 0xBE])
            try Self.agree(f, expected)
        }
    }

    @Test func bochsAndCloopGuestsReadAsQemuReadsThem() throws {
        let dir = try TempDir("probe")
        var rng = SplitMix(seed: 3)
        let blocks = (0..<3).map { i in (0..<65536).map { j in i == 1 ? UInt8(0) : UInt8(truncatingIfNeeded: rng.next() >> UInt64(j % 7)) } }
        try dir.write("c.cloop", BochsCloop.cloop(blocks: blocks))
        try dir.write("b.bochs", BochsCloop.bochs(diskSize: 4 << 20, allocated: [(0, 0x41), (3, 0x42)]))
        for name in ["c.cloop", "b.bochs"] {
            try QemuImg.run(["convert", "-O", "raw", name, name + ".raw"], cwd: dir.path)
            let want = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file(name + ".raw"))))
            let disk = try GuestDisk.open(dir.file(name))
            #expect(try disk.read(at: 0, count: want.count) == want, "\(name)")
        }
    }
}

/// Writes `bytes` into `file` at `offset`.
func patch(_ file: String, at offset: UInt64, _ bytes: [UInt8]) throws {
    let h = try #require(FileHandle(forUpdatingAtPath: file))
    try h.seek(toOffset: offset)
    h.write(Data(bytes))
    try h.close()
}
