import Foundation
import Testing
@testable import QCow2
import TestSupport

/// The bitmap directory checked as QEMU 7.2 checks it when it opens an image: images with real bitmaps
/// (`qemu-img bitmap --add`), then hand-corrupted fields. `verify` calls the image unsafe exactly where
/// `qemu-img info` refuses to open it.
@Suite(.serialized)
struct BitmapDirectoryTests {
    let dir: TempDir

    init() throws { dir = try TempDir("bitmapdir") }

    /// A 10 MiB image with two bitmaps (64 KiB and 4 KiB granularity) and some data; returns its path and where the
    /// bitmaps extension's data and the directory start.
    func makeImage(_ name: String) throws -> (path: String, ext: UInt64, directory: UInt64) {
        try QemuImg.run(["create", "-q", "-f", "qcow2", name, "10M"], cwd: dir.path)
        try QemuImg.run(["bitmap", "--add", name, "b0"], cwd: dir.path)
        try QemuImg.run(["bitmap", "--add", "-g", "4096", name, "b1"], cwd: dir.path)
        let path = dir.file(name)
        let h = try ImageFile.open(path)
        let header = try QCow2Header.read(from: h)
        let b = try #require(header.bitmaps)
        // Find the extension's data: walk the extensions from the end of the header.
        let bytes = try h.read(at: 0, count: 4096)
        var o = Int(header.headerLength)
        var ext: UInt64 = 0
        while o + 8 <= bytes.count {
            let type = SnapshotTableTests.u32(bytes, o), length = Int(SnapshotTableTests.u32(bytes, o + 4))
            if type == 0 { break }
            if type == QCow2Header.ExtensionType.bitmaps { ext = UInt64(o + 8) }
            o += 8 + (length + 7) & ~7
        }
        #expect(ext != 0)
        return (path, ext, b.directoryOffset)
    }

    func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: offset)
        h.write(Data(bytes))
    }

    /// qemu-img info refuses ⇔ verify is unsafe (the images are otherwise clean, so no other finding decides it)
    /// ⇔ imgtool info and chain refuse (exit 1, naming the file, the offset and the bitmap field). Neither command
    /// changes the image.
    func agree(_ path: String, _ what: String, refused: Bool) throws {
        let before = try fileDigest(path)
        let theirs = try runProgram(try QemuImg.path(), ["info", "--output=json", path])
        let verify = try ImgtoolBinary.run(["verify", path])
        let info = try ImgtoolBinary.run(["info", "--output", "json", path])
        let chain = try ImgtoolBinary.run(["chain", path])
        #expect((theirs.status != 0) == refused, "\(what): qemu-img info says \(theirs.status): \(theirs.stderr)")
        #expect((verify.status == 2) == (theirs.status != 0), "\(what): qemu-img \(theirs.status) \(theirs.stderr) but verify \(verify.status): \(verify.stdout)")
        #expect(info.status == (theirs.status != 0 ? 1 : 0), "\(what): qemu-img \(theirs.status) \(theirs.stderr) but imgtool info \(info.status): \(info.stderr)")
        #expect(chain.status == info.status, "\(what): imgtool info \(info.status) but chain \(chain.status): \(chain.stderr)")
        if theirs.status != 0 {
            #expect(verify.stdout.contains("bitmap"), "\(what): \(verify.stdout)")
            #expect(info.stderr.contains(path) && info.stderr.contains("bitmap") && info.stderr.contains("offset"), "\(what): \(info.stderr)")
        }
        #expect(try fileDigest(path) == before, "\(what): the image changed")
    }

    @Test func realBitmapsAreSafe() throws {
        let (path, _, _) = try makeImage("real.qcow2")
        try agree(path, "two real bitmaps", refused: false)
        let bitmaps = try QCow2Header.read(from: try ImageFile.open(path)).readBitmaps(from: try ImageFile.open(path))
        #expect(bitmaps.map(\.name) == ["b0", "b1"] && bitmaps.map(\.granularityBits) == [16, 12])
    }

    @Test func everyFieldQemuChecksIsCheckedWhereQemuChecksIt() throws {
        typealias T = SnapshotTableTests
        // (name, which offset: extension data or directory, field offset, bytes, qemu-img refuses)
        let cases: [(String, Bool, UInt64, [UInt8], Bool)] = [
            ("reserved", true, 4, T.be32(1), true),
            ("zero bitmaps", true, 0, T.be32(0), true),
            ("one bitmap too many", true, 0, T.be32(3), true),
            ("one bitmap too few", true, 0, T.be32(1), true),
            ("directory unaligned", true, 16, T.be64(0x10200), true),
            ("directory size zero", true, 8, T.be64(0), true),
            ("directory too big", true, 8, T.be64(1024 * 65535 + 8), true),
            ("granularity 8", false, 17, [8], true),
            ("type 2", false, 16, [2], true),
            ("reserved flag", false, 12, T.be32(6), true),
            ("extra data", false, 20, T.be32(8), true),
            ("table unaligned", false, 0, T.be64(0x10008), true),
            ("table size wrong", false, 8, T.be32(2), true),
            ("name longer than the directory", false, 18, T.be16(1000), true),
            // Issue 20: fields whose refusal info missed, and the table offset whose read overflows QEMU's
            // request limit (BDRV_MAX_LENGTH, 0x7fffffffc0000000): reads past the end of the file give zeros, but a
            // read ending past that limit fails with EIO.
            ("nb_bitmaps 65535", true, 0, T.be32(65535), true),
            ("directory offset 0x7fffffffffff0000", true, 16, T.be64(0x7FFF_FFFF_FFFF_0000), true),
            ("granularity 63", false, 17, [63], true),
            ("table size huge", false, 8, T.be32(0xFFFF_FFFF), true),
            ("table offset 0x7fffffffffff0000", false, 0, T.be64(0x7FFF_FFFF_FFFF_0000), true),
            ("table offset at QEMU's request limit", false, 0, T.be64(0x7FFF_FFFF_C000_0000), true),
            // The second entry starts at 32 (24 bytes and the name "b0", rounded up to 8).
            ("second bitmap named as the first", false, 32 + 24, Array("b0".utf8), true),
            ("second bitmap named with a leading NUL", false, 32 + 24, [0], false),
        ]
        for (i, (name, inExtension, field, bytes, refused)) in cases.enumerated() {
            let (path, ext, directory) = try makeImage("case\(i).qcow2")
            try patch(path, at: (inExtension ? ext : directory) + field, bytes)
            try agree(path, name, refused: refused)
        }
    }

    @Test func aBitmapTableEntryWithReservedBitsIsRefused() throws {
        let (path, _, _) = try makeImage("entry.qcow2")
        let first = try #require(try QCow2Header.read(from: try ImageFile.open(path)).readBitmaps(from: try ImageFile.open(path)).first)
        try patch(path, at: first.tableOffset, SnapshotTableTests.be64(0x2))
        try agree(path, "table entry with bit 1 set", refused: true)
    }

    @Test func anExtensionWithoutTheAutoclearBitIsIgnoredAsQemuIgnoresIt() throws {
        let (path, ext, _) = try makeImage("noautoclear.qcow2")
        try patch(path, at: 88, SnapshotTableTests.be64(0))
        try patch(path, at: ext + 4, SnapshotTableTests.be32(7))
        try agree(path, "bitmaps extension with the autoclear bit clear", refused: false)
    }

    /// QEMU creates the bitmaps in directory order and refuses a name already created ("Bitmap already exists"),
    /// except that it skips a later entry marked in use; names compare as C strings (up to the first NUL).
    @Test func duplicateNamesAreRefusedWhereQemuRefusesThem() throws {
        typealias T = SnapshotTableTests
        let cases: [(String, [(UInt64, [UInt8])], Bool)] = [
            ("second, in use, named as the first", [(32 + 24, Array("b0".utf8)), (32 + 12, T.be32(1))], false),
            ("first in use, second named as the first", [(32 + 24, Array("b0".utf8)), (12, T.be32(1))], true),
            ("names equal up to a NUL", [(24, [UInt8(ascii: "b"), 0]), (32 + 24, [UInt8(ascii: "b"), 0])], true),
        ]
        for (i, (name, patches, refused)) in cases.enumerated() {
            let (path, _, directory) = try makeImage("dup\(i).qcow2")
            for (field, bytes) in patches { try patch(path, at: directory + field, bytes) }
            try agree(path, name, refused: refused)
        }
    }

    /// A backing file QEMU refuses for its bitmaps breaks the chain where `qemu-img info --backing-chain` fails.
    @Test func aBackingFileWithABadBitmapTableBreaksTheChain() throws {
        let (path, _, directory) = try makeImage("base.qcow2")
        // The overlay first: qemu-img create opens the backing file, and refuses once it is broken.
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"], cwd: dir.path)
        try patch(path, at: directory, SnapshotTableTests.be64(0x7FFF_FFFF_FFFF_0000))
        let before = try fileDigest(path)
        let theirs = try runProgram(try QemuImg.path(), ["info", "--backing-chain", dir.file("top.qcow2")])
        #expect(theirs.status != 0, "\(theirs.stdout)")
        let ours = try ImgtoolBinary.run(["chain", dir.file("top.qcow2")])
        #expect(ours.status != 0, "\(ours.stdout)")
        #expect((ours.stdout + ours.stderr).contains("bitmap_table_offset"), "\(ours.stdout) \(ours.stderr)")
        #expect(try fileDigest(path) == before)
    }

    /// A bitmap table past the end of the file: QEMU opens the image (it reads zeros there, up to its request limit)
    /// so info does too, but qemu-img check calls it corrupt, so verify calls it unsafe.
    @Test func aBitmapTablePastTheEndOfTheFileOpensButIsNotSafe() throws {
        for (i, offset) in [UInt64(0x1_0000_0000), 0x7FFF_FFFF_BFFF_0000].enumerated() {
            let (path, _, directory) = try makeImage("past\(i).qcow2")
            try patch(path, at: directory, SnapshotTableTests.be64(offset))
            let before = try fileDigest(path)
            let theirs = try runProgram(try QemuImg.path(), ["info", "--output=json", path])
            let check = try runProgram(try QemuImg.path(), ["check", path])
            let info = try ImgtoolBinary.run(["info", "--output", "json", path])
            let verify = try ImgtoolBinary.run(["verify", path])
            #expect(theirs.status == 0 && info.status == 0, "\(offset): qemu-img \(theirs.stderr), imgtool \(info.stderr)")
            #expect(check.status == 2, "\(offset): qemu-img check \(check.status) \(check.stdout)")
            #expect(verify.status == 2 && verify.stdout.contains("bitmap 0 bitmap_table_offset"), "\(offset): \(verify.stdout)")
            #expect(try fileDigest(path) == before)
        }
    }
}
