import Testing
@testable import QCow2
import TestSupport

/// Hand-made hostile headers: each must be refused with the field named, never a trap or a huge read.
struct HeaderValidationTests {
    /// A minimal valid v3 header for a 1 MiB disk with 64 KiB clusters and an optional backing name.
    static func header(
        version: UInt32 = 3, clusterBits: UInt32 = 16, size: UInt64 = 1 << 20, l1Size: UInt32 = 1,
        headerLength: UInt32 = 112, backing: String? = nil, backingOffset: UInt64? = nil, backingSize: UInt32? = nil,
        incompatible: UInt64 = 0, refcountOrder: UInt32 = 4, crypt: UInt32 = 0
    ) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 4096)
        func put32(_ o: Int, _ v: UInt32) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32(i))) } }
        func put64(_ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64(i))) } }
        put32(0, QCow2Header.magic)
        put32(4, version)
        put32(20, clusterBits)
        put64(24, size)
        put32(32, crypt)
        put32(36, l1Size)
        put64(40, 3 << 16)
        put64(48, 1 << 16)
        put32(56, 1)
        if version == 3 {
            put64(72, incompatible)
            put32(96, refcountOrder)
            put32(100, headerLength)
        }
        if let backing {
            let off = backingOffset ?? 512
            put64(8, off)
            put32(16, backingSize ?? UInt32(backing.utf8.count))
            for (i, c) in backing.utf8.enumerated() where Int(off) + i < b.count { b[Int(off) + i] = c }
        }
        return b
    }

    func parse(_ bytes: [UInt8]) throws(QCow2Header.Error) -> QCow2Header {
        try QCow2Header.parse(bytes, path: "hostile.qcow2") { (_, _) throws(QCow2Header.Error) in [] }
    }

    func expectField(_ bytes: [UInt8], _ field: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try parse(bytes)
            Issue.record("accepted a header with a bad \(field)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.field == field, "\(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains("hostile.qcow2"), sourceLocation: sourceLocation)
        }
    }

    @Test func validHeaderParses() throws {
        let h = try parse(Self.header(backing: "base.raw"))
        #expect(h.version == 3)
        #expect(h.clusterSize == 65536)
        #expect(h.backingFile == "base.raw")
        #expect(h.size == 1 << 20)
    }

    @Test func truncatedAnywhere() {
        let full = Self.header()
        for cut in [0, 3, 7, 40, 71, 100] {
            expectFieldPrefix(Array(full.prefix(cut)))
        }
    }

    func expectFieldPrefix(_ bytes: [UInt8]) {
        do {
            _ = try parse(bytes)
            Issue.record("accepted a truncated header of \(bytes.count) bytes")
        } catch {
            #expect(error.field != nil)
        }
    }

    @Test func badVersion() { expectField(Self.header(version: 4), "version") }
    @Test func clusterBitsTooSmall() { expectField(Self.header(clusterBits: 8), "cluster_bits") }
    @Test func clusterBitsTooLarge() { expectField(Self.header(clusterBits: 22), "cluster_bits") }
    @Test func clusterBitsAbsurd() { expectField(Self.header(clusterBits: 0xFFFF_FFFF), "cluster_bits") }
    @Test func headerLengthTooShort() { expectField(Self.header(headerLength: 100), "header_length") }
    @Test func headerLengthBeyondCluster() { expectField(Self.header(clusterBits: 9, headerLength: 1024), "header_length") }
    @Test func backingOffsetBeyondCluster() { expectField(Self.header(backing: "x", backingOffset: 70000), "backing_file_offset") }
    @Test func backingNameTooLong() { expectField(Self.header(backing: "x", backingSize: 2000), "backing_file_size") }
    @Test func absurdL1Size() { expectField(Self.header(l1Size: 0xFFFF_FFFF), "l1_size") }
    @Test func l1TooSmallForSize() { expectField(Self.header(size: 1 << 40, l1Size: 1), "l1_size") }
    @Test func absurdVirtualSize() { expectField(Self.header(clusterBits: 9, size: UInt64.max, l1Size: 1), "size") }
    @Test func unknownIncompatibleBit() { expectField(Self.header(incompatible: 1 << 40), "incompatible_features") }
    @Test func refcountOrderTooLarge() { expectField(Self.header(refcountOrder: 7), "refcount_order") }
    @Test func unknownEncryption() { expectField(Self.header(crypt: 3), "crypt_method") }

    @Test func extensionLengthPastEnd() {
        var b = Self.header()
        // An extension at 112 claiming 0xFFFFFFF0 bytes.
        b[112] = 0x12; b[113] = 0x34; b[114] = 0x56; b[115] = 0x78
        b[116] = 0xFF; b[117] = 0xFF; b[118] = 0xFF; b[119] = 0xF0
        expectField(b, "header extension 0x12345678 length")
    }

    @Test func backingFormatTooLong() {
        var b = Self.header()
        b[112] = 0xE2; b[113] = 0x79; b[114] = 0x2A; b[115] = 0xCA
        b[119] = 40
        expectField(b, "backing format extension length")
    }

    @Test func manyTinyExtensionsEnd() throws {
        // Cluster 0 full of 8-byte unknown extensions: the walk must end at the cluster's end, not loop.
        var b = Self.header(clusterBits: 12)
        var o = 112
        while o + 8 <= 4096 { b[o] = 1; b[o + 7] = 0; o += 8 }
        let h = try parse(b)
        #expect(h.unknownExtensions.count == (4096 - 112) / 8)
    }

    @Test func probeNeverTrapsOnShortInput() {
        for n in 0..<80 {
            let bytes = Array(Self.header().prefix(n))
            let r = ImageFormat.probe(bytes, fileSize: UInt64(n))
            // Without the version word the magic alone decides nothing (QEMU's probe needs both): raw, the file
            // size in whole sectors (QEMU rounds a file's length up to 512 bytes).
            if n < 8 {
                #expect(r.format == .raw && r.virtualSize == (n == 0 ? 0 : 512), "\(n) bytes: \(r)")
            } else {
                #expect(r.format == .qcow2, "\(n) bytes: \(r)")
                // The probe reads a zero-padded 2048-byte buffer, as QEMU does: a size field cut off reads as 0,
                // never from past the bytes given; a whole one reads as written.
                #expect(r.virtualSize == (n < 30 ? 0 : 1 << 20), "\(n) bytes: \(r)")  // 1 MiB: its one set byte is at 29
            }
        }
    }
}
