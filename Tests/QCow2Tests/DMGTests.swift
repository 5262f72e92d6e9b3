import Foundation
import Testing
@testable import QCow2
import TestSupport

/// dmg guest reads against qemu-img's: QEMU's own sample (zlib and zero chunks, XML property list) and hand-built
/// images (raw, zero and ignored chunks, resource fork and XML), then hostile tables that must be typed errors.
@Suite(.serialized)
struct DMGTests {
    typealias Chunk = DMGBuilder.Chunk

    /// QEMU's sample dmg, unpacked into `dir`.
    static func sample(_ dir: TempDir) throws -> String {
        let src = fixturesDirectory().replacingOccurrences(of: "/Fixtures/images", with: "/Fixtures/third-party") + "/simple-dmg.dmg.bz2"
        let dst = dir.file("simple-dmg.dmg")
        let bzip2 = try #require(which("bzip2"), "bzip2 is needed to unpack the sample")
        #expect(shell("\(shellQuote(bzip2)) -dc \(shellQuote(src)) > \(shellQuote(dst))") == 0)
        return dst
    }

    /// The whole guest disk through imgtool and through `qemu-img convert -O raw`, byte for byte.
    static func agree(_ path: String, _ dir: TempDir) throws {
        let raw = path + ".raw"
        try QemuImg.run(["convert", "-O", "raw", path, raw])
        let want = [UInt8](try Data(contentsOf: URL(fileURLWithPath: raw)))
        let disk = try GuestDisk.open(path)
        #expect(disk.size == UInt64(want.count), "\(path): size")
        #expect(try disk.read(at: 0, count: want.count) == want, "\(path): guest bytes differ from qemu-img's")
        var rng = SplitMix(seed: 5)
        for _ in 0..<100 {
            let start = Int(rng.next() % UInt64(want.count)), n = Int(rng.next() % 70_000)
            var expected = Array(want[start..<min(want.count, start + n)])
            expected += [UInt8](repeating: 0, count: n - expected.count)
            #expect(try disk.read(at: UInt64(start), count: n) == expected, "\(path): range \(start)+\(n)")
        }
    }

    /// The error a read of the first `count` bytes (or the open) throws, as text; nil when it succeeds.
    static func failure(_ path: String, at offset: UInt64 = 0, count: Int = 512) -> String? {
        do {
            let disk = try GuestDisk.open(path)
            _ = try disk.read(at: offset, count: count)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func qemuSampleReadsAsQemuImgConvertReadsIt() throws {
        let dir = try TempDir("dmg")
        let path = try Self.sample(dir)
        try Self.agree(path, dir)
        #expect(try ImageInfo.read(path).virtualSize == 1_799_168)
    }

    @Test(arguments: [false, true]) func builtImagesReadAsQemuImgReadsThem(_ resourceFork: Bool) throws {
        let dir = try TempDir("dmg")
        var rng = SplitMix(seed: resourceFork ? 11 : 12)
        let bytes = (0..<(20 * 512)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let chunks = [
            Chunk(type: 1, sector: 0, sectors: 8, data: Array(bytes[0..<4096])),
            Chunk(type: 0, sector: 8, sectors: 100),
            Chunk(type: 2, sector: 108, sectors: 4),
            Chunk(type: 1, sector: 112, sectors: 12, data: Array(bytes[4096..<(4096 + 6144)])),
            Chunk(type: 0x7FFF_FFFE, sector: 124, sectors: 0),  // a comment: left out
        ]
        let path = dir.file(resourceFork ? "r.dmg" : "x.dmg")
        try dir.write((path as NSString).lastPathComponent, DMGBuilder.build(chunks, sectors: 124, resourceFork: resourceFork, first: 0))
        try Self.agree(path, dir)
    }

    @Test func aSectorInNoChunkFailsAsItDoesForQemu() throws {
        let dir = try TempDir("dmg")
        try dir.write("gap.dmg", DMGBuilder.build([Chunk(type: 0, sector: 0, sectors: 4), Chunk(type: 0, sector: 8, sectors: 4)], sectors: 12))
        let err = try #require(Self.failure(dir.file("gap.dmg"), at: 4 * 512))
        #expect(err.contains("guest sector 4 lies in no chunk"), "\(err)")
        #expect(Self.failure(dir.file("gap.dmg"), at: 0, count: 2048) == nil)
        #expect(try runProgram(try QemuImg.path(), ["convert", "-O", "raw", dir.file("gap.dmg"), dir.file("gap.raw")]).status != 0)
    }

    @Test func bzip2AndLzfseChunksAreAClearError() throws {
        let dir = try TempDir("dmg")
        for (type, method) in [(UInt32(0x8000_0006), "bzip2"), (0x8000_0007, "lzfse")] {
            let file = "\(method).dmg"
            try dir.write(file, DMGBuilder.build([Chunk(type: 1, sector: 0, sectors: 1, data: [UInt8](repeating: 1, count: 512)),
                                                   Chunk(type: type, sector: 1, sectors: 8, data: Array("BZh91AY&SY".utf8))], sectors: 9))
            // The raw chunk still reads; the compressed one names the file, its offset and the way out.
            #expect(Self.failure(dir.file(file)) == nil)
            let disk = try GuestDisk.open(dir.file(file))
            #expect(throws: GuestDisk.Error.unsupportedCompression(path: dir.file(file), method: method, offset: 512)) {
                _ = try disk.read(at: 512, count: 512)
            }
            let err = try #require(Self.failure(dir.file(file), at: 512))
            #expect(err.contains(file) && err.contains("offset 512") && err.contains("\(method) chunks are not supported") && err.contains("qemu-img convert -O raw"), "\(err)")
        }
    }

    @Test func hostileTablesAreTypedErrors() throws {
        let dir = try TempDir("dmg")
        // A resource fork whose one resource claims 4 GiB (the data fork is empty: the resource's length is at 16).
        var bigResource = DMGBuilder.build([Chunk(type: 0, sector: 0, sectors: 8)], sectors: 8, resourceFork: true)
        bigResource.replaceSubrange(16..<20, with: [0xFF, 0xFF, 0xFF, 0xFF])
        // Name, bytes, words of the error, and whether qemu-img fails too (it reads a short raw chunk's missing bytes
        // from a stale buffer, and glib's base64 skips what it does not know).
        let cases: [(String, [UInt8], String, Bool)] = [
            ("past.dmg", DMGBuilder.build([Chunk(type: 0x8000_0005, sector: 0, sectors: 8, offset: 1 << 40, length: 4096)], sectors: 8),
             "lie past the end of the file", true),
            ("wrap.dmg", DMGBuilder.build([Chunk(type: 0x8000_0005, sector: 0, sectors: 8, offset: UInt64.max - 10, length: 4096)], sectors: 8),
             "overflows", true),
            ("short.dmg", DMGBuilder.build([Chunk(type: 1, sector: 0, sectors: 8, data: [1, 2, 3])], sectors: 8), "stale buffer", false),
            ("sector.dmg", DMGBuilder.build([Chunk(type: 0, sector: 5, sectors: 1)], sectors: 8, first: UInt64.max - 1), "sector number", true),
            ("count.dmg", DMGBuilder.build([Chunk(type: 1, sector: 0, sectors: 1 << 40)], sectors: 8), "is larger than max", true),
            ("length.dmg", DMGBuilder.build([Chunk(type: 0, sector: 0, sectors: 8, length: UInt64.max)], sectors: 8), "is larger than max", true),
            ("b64.dmg", DMGBuilder.build([Chunk(type: 0, sector: 0, sectors: 8)], sectors: 8) { "*" + $0 }, "not valid base64", false),
            ("pad.dmg", DMGBuilder.build([Chunk(type: 0, sector: 0, sectors: 8)], sectors: 8) { $0 + "=A" }, "not valid base64", false),
            ("rsrc.dmg", bigResource, "resource length", true),
            ("tiny.dmg", Array("koly".utf8) + [UInt8](repeating: 0, count: 100), "RsrcForkOffset", true),
        ]
        for (name, bytes, words, qemuRefuses) in cases {
            try dir.write(name, bytes)
            let err = try #require(Self.failure(dir.file(name)), "\(name) reads")
            #expect(err.contains(words), "\(name): \(err)")
            let qemu = try runProgram(try QemuImg.path(), ["convert", "-O", "raw", dir.file(name), dir.file(name + ".raw")])
            #expect((qemu.status != 0) == qemuRefuses, "\(name): qemu-img exit \(qemu.status)")
        }
        // A zero chunk may span any number of sectors: reads are capped, not trapped.
        try dir.write("huge.dmg", DMGBuilder.build([Chunk(type: 0, sector: 0, sectors: UInt64.max)], sectors: 64))
        #expect(try GuestDisk.open(dir.file("huge.dmg")).read(at: 0, count: 64 * 512) == [UInt8](repeating: 0, count: 64 * 512))
        // The sample cut short: its trailer is gone, or no longer where QEMU looks.
        let sample = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try Self.sample(dir))))
        for cut in [200, 400, 600, sample.count - 300] {
            try dir.write("cut\(cut).dmg", Array(sample.prefix(sample.count - cut)))
            #expect(Self.failure(dir.file("cut\(cut).dmg")) != nil, "cut by \(cut)")
        }
    }
}
