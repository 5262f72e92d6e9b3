import Foundation
import Testing
import TestSupport

/// Sizes that are not whole sectors, and keys qemu-img prints only for some formats: `info`, `chain` and
/// `partitions` say what qemu-img and QEMU's block layer say. QEMU rounds a file's length up to a whole 512-byte
/// sector (a 1000-byte raw file is a 1024-byte disk) and cuts a header's byte size down to whole sectors.
@Suite(.serialized)
struct SizeAndKeyParityTests {
    static func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let h = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: offset)
        try h.write(contentsOf: Data(bytes))
    }

    static func be(_ v: UInt64) -> [UInt8] { (0..<8).reversed().map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    /// imgtool's and qemu-img's virtual size of `name` (run in `dir`).
    static func sizes(_ name: String, in dir: TempDir) throws -> (ours: JSONValue?, theirs: JSONValue?) {
        let theirs = try QemuImg.infoValue(name, cwd: dir.path)
        let r = try ImgtoolBinary.run(["info", "--output", "json", name], cwd: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        return (try JSONValue.parse(r.stdout)["virtual-size"], theirs["virtual-size"])
    }

    /// A 1000-byte raw file: virtual size 1024 everywhere, alone and as the base of a qcow2 overlay, and the disk
    /// `partitions` reads is 1024 bytes too.
    @Test func aRawFileOfAnOddSizeIsWholeSectors() throws {
        let dir = try TempDir("oddsize")
        _ = FileManager.default.createFile(atPath: dir.file("odd.raw"), contents: Data(repeating: 0x5a, count: 1000))
        let (ours, theirs) = try Self.sizes("odd.raw", in: dir)
        #expect(theirs == .int(1024), "qemu-img: \(theirs?.description ?? "nil")")
        #expect(ours == theirs)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "odd.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        let chain = try QemuImg.infoValue("top.qcow2", chain: true, cwd: dir.path).elements
        let r = try ImgtoolBinary.run(["chain", "--output", "json", "top.qcow2"], cwd: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        let layers = try JSONValue.parse(r.stdout)["layers"]?.elements ?? []
        #expect(layers.count == 2 && chain.count == 2)
        for (a, b) in zip(layers, chain) { #expect(a["virtual-size"] == b["virtual-size"], "\(a["filename"]?.description ?? "")") }
        let p = try ImgtoolBinary.run(["partitions", "--output", "json", "odd.raw"], cwd: dir.path)
        #expect(try JSONValue.parse(p.stdout)["disk-size"] == .int(1024), "\(p.stdout)")
    }

    /// Headers whose byte size is not whole sectors: qcow2 and qcow keep `size / 512` sectors; VDI rounds up.
    @Test(arguments: [("qcow2", UInt64(24), true), ("qcow", UInt64(24), true), ("vdi", UInt64(368), false)])
    func anOddHeaderSizeIsCutToWholeSectors(format: String, offset: UInt64, bigEndian: Bool) throws {
        let dir = try TempDir("oddsize")
        let name = "odd.\(format)"
        try QemuImg.run(["create", "-q", "-f", format, name, "1M"], cwd: dir.path)
        let odd: UInt64 = format == "vdi" ? 1_048_576 - 1000 : 1_048_576 + 1000
        try Self.patch(dir.file(name), at: offset, bigEndian ? Self.be(odd) : Self.le(odd))
        let (ours, theirs) = try Self.sizes(name, in: dir)
        #expect(theirs != nil && theirs != .int(Int64(odd)), "qemu-img keeps whole sectors: \(theirs?.description ?? "nil")")
        #expect(ours == theirs, "\(format): imgtool \(ours?.description ?? "nil") vs qemu-img \(theirs?.description ?? "nil")")
    }

    /// A LUKS file whose length is not whole sectors: the payload is the rounded-up length less the header.
    @Test func aLUKSFileOfAnOddLength() throws {
        let dir = try TempDir("oddsize")
        try LUKSFixtures.copy("plain.luks", to: dir.file("odd.luks"))
        let h = try #require(FileHandle(forUpdatingAtPath: dir.file("odd.luks")))
        try h.seekToEnd()
        try h.write(contentsOf: Data(repeating: 0, count: 1000))
        try h.close()
        let (ours, theirs) = try Self.sizes("odd.luks", in: dir)
        #expect(ours == theirs, "imgtool \(ours?.description ?? "nil") vs qemu-img \(theirs?.description ?? "nil")")
    }

    /// `dirty-flag` only where qemu-img prints it: not for bochs, cloop, dmg and parallels (their drivers answer
    /// no `bdrv_get_info`), and for every format qemu-img makes. Every key, both ways, but imgtool's own count.
    @Test(arguments: ["empty.bochs", "simple-pattern.cloop", "simple-dmg.dmg", "parallels-v1", "virtualpc-dynamic.vhd"])
    func theKeysAreQemuImgsForEachFormat(_ name: String) throws {
        let dir = try TempDir("keys")
        let image = try #require(ThirdPartyCorpus.images.first { $0.name == name })
        _ = try ThirdPartyCorpus.materialise(image, in: dir)
        let theirs = try QemuImg.infoValue(name, cwd: dir.path)
        let r = try ImgtoolBinary.run(["info", "--output", "json", name], cwd: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try JSONValue.parse(r.stdout)
        let mine = Set(ours.members.keys).subtracting(["snapshot-count"])
        #expect(mine == Set(theirs.members.keys), "imgtool \(mine.sorted()) vs qemu-img \(theirs.members.keys.sorted())")
    }
}
