import Foundation
@testable import QCow2

/// Bochs and cloop images built by hand (qemu-img cannot create either).
enum BochsCloop {
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func be32(_ v: UInt32) -> [UInt8] { le32(v).reversed() }
    static func be64(_ v: UInt64) -> [UInt8] { le64(v).reversed() }

    /// A growing redolog (v2) with 512 KiB extents; `allocated` lists (extent, fill byte): those extents get every
    /// even sector set in their bitmap.
    static func bochs(diskSize: UInt64, allocated: [(Int, UInt8)] = []) -> [UInt8] {
        let extent: UInt32 = 512 << 10, catalog = UInt32(diskSize / UInt64(extent))
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ at: Int, _ b: [UInt8]) { h.replaceSubrange(at..<(at + b.count), with: b) }
        put(0, Array("Bochs Virtual HD Image".utf8)); put(32, Array("Redolog".utf8)); put(48, Array("Growing".utf8))
        put(64, le32(0x0002_0000)); put(68, le32(512)); put(72, le32(catalog)); put(76, le32(512)); put(80, le32(extent))
        put(88, le64(diskSize))
        var cat = [UInt8]()
        for i in 0..<Int(catalog) {
            let slot = allocated.firstIndex { $0.0 == i }
            cat += le32(slot.map { UInt32($0) } ?? 0xFFFF_FFFF)
        }
        var data = [UInt8]()
        for (_, fill) in allocated {
            data += [UInt8](repeating: 0x55, count: 512)  // bitmap: every even sector
            data += [UInt8](repeating: fill, count: Int(extent))
        }
        return h + cat + data
    }

    /// A cloop v2 image of zlib-compressed 64 KiB blocks.
    static func cloop(blocks: [[UInt8]]) -> [UInt8] {
        var head = Array("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n".utf8)
        head += [UInt8](repeating: 0, count: 128 - head.count)
        head += be32(65536) + be32(UInt32(blocks.count))
        let compressed = blocks.map(zlibCompress)
        var offset = UInt64(head.count + 8 * (blocks.count + 1))
        var offsets = [UInt8]()
        for c in compressed { offsets += be64(offset); offset += UInt64(c.count) }
        offsets += be64(offset)
        return head + offsets + compressed.flatMap { $0 } + [UInt8](repeating: 0, count: 512)
    }

    /// zlib format with stored (uncompressed) deflate blocks: valid zlib without linking a compressor.
    static func zlibCompress(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var i = 0
        while i < data.count {
            let n = min(65535, data.count - i)
            out.append(i + n == data.count ? 1 : 0)
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[i..<(i + n)]
            i += n
        }
        var a: UInt32 = 1, b: UInt32 = 0
        for x in data { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        return out + be32(b << 16 | a)
    }
}
