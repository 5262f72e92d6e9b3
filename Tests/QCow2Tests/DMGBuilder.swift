import Foundation

/// Small dmg (UDIF) files built by hand, as Apple lays them out: the chunks' data (the data fork), one `mish` block
/// either in a resource fork or base64 in an XML property list, then the 512-byte `koly` trailer. qemu-img cannot
/// create dmg, so these are checked against its reading of them.
enum DMGBuilder {
    /// One chunk table entry; `offset`/`length` default to where `data` lands in the data fork.
    struct Chunk {
        var type: UInt32
        var sector: UInt64
        var sectors: UInt64
        var data: [UInt8] = []
        var offset: UInt64?
        var length: UInt64?
    }

    static func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } }
    static func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }

    /// The mish block of `chunks` (a last-entry marker appended), starting at guest sector `first`.
    static func mish(_ chunks: [Chunk], first: UInt64 = 0, dataOffset: UInt64 = 0, fork: inout [UInt8]) -> [UInt8] {
        var entries: [UInt8] = []
        for c in chunks {
            let at = UInt64(fork.count)
            fork += c.data
            entries += be32(c.type) + be32(0) + be64(c.sector) + be64(c.sectors) + be64(c.offset ?? at) + be64(c.length ?? UInt64(c.data.count))
        }
        let end = chunks.map { $0.sector &+ $0.sectors }.max() ?? 0
        entries += be32(0xFFFF_FFFF) + be32(0) + be64(end) + be64(0) + be64(0) + be64(0)
        var m = Array("mish".utf8) + be32(1) + be64(first) + be64(end) + be64(dataOffset) + be32(0) + be32(UInt32(chunks.count + 1))
        m += [UInt8](repeating: 0, count: 0xC8 - m.count)
        m += be32(UInt32(chunks.count + 1))
        return m + entries
    }

    /// A whole dmg of `sectors` guest sectors.
    static func build(_ chunks: [Chunk], sectors: UInt64, resourceFork: Bool = false, first: UInt64 = 0,
                      xmlData: ((String) -> String)? = nil) -> [UInt8] {
        var file: [UInt8] = []
        let block = mish(chunks, first: first, fork: &file)
        let dataLength = UInt64(file.count)
        let tableAt = UInt64(file.count)
        if resourceFork {
            // A resource fork as QEMU reads it: the resource data's offset (16) and length, then [length][bytes].
            let resource = be32(UInt32(block.count)) + block
            file += be32(16) + be32(UInt32(16 + resource.count)) + be32(UInt32(resource.count)) + be32(0) + resource
        } else {
            let b64 = Data(block).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
            let data = xmlData?(b64) ?? b64
            let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <plist version="1.0"><dict><key>resource-fork</key><dict><key>blkx</key><array><dict>
            <key>Data</key>
            <data>
            \(data)
            </data>
            <key>Name</key><string>whole disk</string>
            </dict></array></dict></dict></plist>

            """
            file += Array(xml.utf8)
        }
        let tableLength = UInt64(file.count) - tableAt
        var koly = Array("koly".utf8) + be32(4) + be32(512) + be32(1)
        koly += be64(0) + be64(0) + be64(dataLength)  // running data fork offset, data fork offset, length
        koly += resourceFork ? be64(tableAt) + be64(tableLength) : be64(0) + be64(0)
        koly += [UInt8](repeating: 0, count: 0xD8 - koly.count)
        koly += resourceFork ? be64(0) + be64(0) : be64(tableAt) + be64(tableLength)
        koly += [UInt8](repeating: 0, count: 0x1EC - koly.count)
        koly += be64(sectors)
        koly += [UInt8](repeating: 0, count: 512 - koly.count)
        return file + koly
    }
}
