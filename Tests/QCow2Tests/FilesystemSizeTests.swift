import Testing
@testable import QCow2

/// The superblock reader on hostile bytes: out-of-range fields are refused by name, overflow is caught, short reads
/// and random bytes behind a planted magic never trap.
struct FilesystemSizeTests {
    /// A disk of `bytes` (zeros past them), read as the guard reads it.
    func probe(_ bytes: [UInt8], at start: UInt64 = 0) throws(FilesystemSize.Error) -> FilesystemSize? {
        try FilesystemSize.probe(at: start) { (offset, count) throws(GuestDisk.Error) in
            var out = [UInt8](repeating: 0, count: count)
            guard offset < UInt64(bytes.count) else { return out }
            var i = 0
            while i < count, Int(offset) + i < bytes.count { out[i] = bytes[Int(offset) + i]; i += 1 }
            return out
        }
    }

    func put(_ b: inout [UInt8], _ at: Int, le value: UInt64, _ n: Int) { for k in 0..<n { b[at + k] = UInt8(truncatingIfNeeded: value >> (8 * k)) } }
    func put(_ b: inout [UInt8], _ at: Int, be value: UInt64, _ n: Int) { for k in 0..<n { b[at + k] = UInt8(truncatingIfNeeded: value >> (8 * (n - 1 - k))) } }

    @Test func ext4SizeAndHostileFields() throws {
        var b = [UInt8](repeating: 0, count: 4096)
        put(&b, 1024 + 0x38, le: 0xEF53, 2)
        put(&b, 1024 + 0x18, le: 2, 4)            // 4 KiB blocks
        put(&b, 1024 + 0x04, le: 8192, 4)
        put(&b, 1024 + 0x60, le: 0x80 | 0x40, 4)  // 64bit, extents
        put(&b, 1024 + 0x150, le: 1, 4)
        #expect(try probe(b) == FilesystemSize(name: "ext4", bytes: ((1 << 32) + 8192) * 4096, exact: true))
        put(&b, 1024 + 0x18, le: 7, 4)
        #expect(throws: FilesystemSize.Error.self) { try probe(b) }
        put(&b, 1024 + 0x18, le: 6, 4)
        put(&b, 1024 + 0x150, le: 0xFFFF_FFFF, 4)  // 2^64 − … blocks of 64 KiB: past 2^64
        #expect(throws: FilesystemSize.Error.self) { try probe(b) }
    }

    @Test func xfsAndNTFSBlockSizesAreChecked() throws {
        var x = [UInt8](repeating: 0, count: 512)
        x.replaceSubrange(0..<4, with: Array("XFSB".utf8))
        put(&x, 4, be: 4096, 4); put(&x, 8, be: 1000, 8)
        #expect(try probe(x)?.bytes == 4096 * 1000)
        put(&x, 4, be: 0, 4)
        #expect(throws: FilesystemSize.Error.self) { try probe(x) }
        var n = [UInt8](repeating: 0, count: 512)
        n.replaceSubrange(3..<11, with: Array("NTFS    ".utf8))
        put(&n, 0x0B, le: 512, 2); put(&n, 0x28, le: UInt64.max, 8)
        #expect(throws: FilesystemSize.Error.self) { try probe(n) }
    }

    @Test func luks2HeaderSizeIsChecked() throws {
        var l = [UInt8](repeating: 0, count: 8192)
        l.replaceSubrange(0..<6, with: [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE])
        put(&l, 6, be: 2, 2); put(&l, 8, be: 0x4000, 8)
        let json = #"{"keyslots":{},"segments":{"0":{"type":"crypt","offset":"16777216","size":"dynamic"}},"config":{"json_size":"12288","keyslots_size":"16744448"}}"#
        l.replaceSubrange(4096..<(4096 + json.utf8.count), with: Array(json.utf8))
        #expect(try probe(l) == FilesystemSize(name: "crypto_LUKS", bytes: 16 << 20, exact: false))
        put(&l, 8, be: UInt64.max, 8)
        #expect(throws: FilesystemSize.Error.self) { try probe(l) }
        // A number longer than 2^64 in the JSON is ignored, not trapped on.
        put(&l, 8, be: 0x4000, 8)
        let big = #"{"segments":{"0":{"offset":"99999999999999999999999"}}}"#
        l.replaceSubrange(4096..<(4096 + big.utf8.count + 64), with: Array(big.utf8) + [UInt8](repeating: 0, count: 64))
        #expect(try probe(l)?.bytes == 0x8000)
    }

    @Test func randomBytesBehindEveryMagicNeverTrap() {
        var rng = SystemRandomNumberGenerator()
        let magics: [(Int, [UInt8])] = [(1024 + 0x38, [0x53, 0xEF]), (0, Array("XFSB".utf8)), (0x10040, Array("_BHRfS_M".utf8)),
                                        (3, Array("NTFS    ".utf8)), (0x36, Array("FAT".utf8)), (4086, Array("SWAPSPACE2".utf8)),
                                        (0, Array("LABELONE".utf8)), (0, [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE])]
        for _ in 0..<100 {
            for (at, magic) in magics {
                var b = [UInt8](repeating: 0, count: 0x11000)
                // Random words where the fields are (the first 8 KiB and btrfs's superblock), cheaply.
                for i in stride(from: 0, to: 0x2000, by: 8) { put(&b, i, le: rng.next(), 8) }
                for i in stride(from: 0x10000, to: 0x11000, by: 8) { put(&b, i, le: rng.next(), 8) }
                b.replaceSubrange(at..<(at + magic.count), with: magic)
                if magic.first == 0x4C, magic.count == 6 { b[6] = 0; b[7] = UInt8.random(in: 1...2, using: &rng) }
                if magic == Array("LABELONE".utf8) { b.replaceSubrange(8..<16, with: [UInt8](repeating: 0, count: 8)); b.replaceSubrange(24..<32, with: Array("LVM2 001".utf8)) }
                _ = try? probe(b, at: UInt64.random(in: 0...UInt64.max, using: &rng) | (UInt64.max - 0x10000))
                _ = try? probe(Array(b.prefix(Int.random(in: 0...0x11000, using: &rng))))
            }
        }
    }
}
