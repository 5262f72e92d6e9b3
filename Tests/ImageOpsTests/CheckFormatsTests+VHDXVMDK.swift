import Foundation
import Testing
@testable import QCow2
import TestSupport

extension CheckFormatsTests {
    /// The metadata region's offset and the file offset of the logical sector size item, read as a test would
    /// with a hex editor (the region table at 192 KiB, the metadata table at its region's start).
    static func vhdxLogicalSectorItem(_ path: String) throws -> (meta: UInt64, item: UInt64) {
        var meta: UInt64?
        for i in 0..<UInt64(try CheckImages.u32(path, at: (192 << 10) + 8)) {
            let e = (192 << 10) + 16 + i * 32
            if try CheckImages.read(path, at: e, 16) == VHDXHeader.metadataRegion { meta = try CheckImages.u64(path, at: e + 16) }
        }
        let m = try #require(meta)
        for i in 0..<UInt64(try CheckImages.u32(path, at: m + 10) & 0xFFFF) {
            let e = m + 32 + i * 32
            if try CheckImages.read(path, at: e, 16) == VHDXHeader.logicalSector { return (m, m + (try CheckImages.u32(path, at: e + 16))) }
        }
        throw ToolError("no logical sector size item in \(path)")
    }

    @Test func vhdx() throws {
        let dir = try TempDir("checkf")
        let base = dir.file("base.vhdx")
        try CheckImages.create(base, "vhdx", "66M", ["-o", "block_size=1M"])
        let data = dir.file("data.vhdx")
        try CheckImages.copy(base, data)
        try CheckImages.io(data, "vhdx", ["write -P 1 0 1M", "write -P 2 5M 2M", "write 30M 4K", "write 65M 1M"])
        let fixed = dir.file("fixed.vhdx")
        try CheckImages.create(fixed, "vhdx", "16M", ["-o", "subformat=fixed,block_size=1M"])
        var cases = [("empty", base), ("data", data), ("fixed", fixed)]
        func variant(_ name: String, from: String? = nil, _ edit: (String) throws -> Void) throws {
            try CheckImages.variant(&cases, dir, name, "vhdx", from: from ?? data, edit)
        }
        let h = try VHDXHeader.read(try ImageFile.open(data))
        let size = try CheckImages.size(data), bat = h.batOffset
        let (meta, logical) = try Self.vhdxLogicalSectorItem(data)
        try variant("truncated-mid") { try CheckImages.truncate($0, to: size - (512 << 10)) }
        try variant("truncated-whole") { try CheckImages.truncate($0, to: size - (1 << 20) - (512 << 10)) }
        try variant("into-metadata") { try CheckImages.putU64($0, at: bat, meta | 6) }
        try variant("into-log") { try CheckImages.putU64($0, at: bat, 1 << 20 | 6) }
        try variant("overflow") { try CheckImages.putU64($0, at: bat, 0xFFFF_FFFF_FFF0_0006) }
        try variant("partially-present") { p in try CheckImages.putU64(p, at: bat, try CheckImages.u64(p, at: bat) | 7) }
        // QEMU 7.2 opens only 512-byte logical sectors: both refuse.
        try variant("4k-logical") { try CheckImages.putU32($0, at: logical, 4096) }
        // 8 GiB of 256 MiB blocks: a chunk ratio of 16, so QEMU's countdown of fully present entries runs out
        // before the 32 payload entries (each pointed into the metadata region) are all tested for overlap.
        let big = dir.file("countdown.vhdx")
        try CheckImages.create(big, "vhdx", "8G", ["-o", "block_size=256M"])
        let hb = try VHDXHeader.read(try ImageFile.open(big))
        let (bigMeta, _) = try Self.vhdxLogicalSectorItem(big)
        for k in UInt64(0)..<32 { try CheckImages.putU64(big, at: hb.batOffset + (k + k / hb.chunkRatio) * 8, bigMeta | 6) }
        cases.append(("countdown", big))

        try Self.expectAgreement(cases)
        #expect(Self.number(try CheckDiff.counts(dir.file("truncated-mid.vhdx")), "corruptions") == 1)
        #expect(Self.number(try CheckDiff.counts(dir.file("into-metadata.vhdx")), "corruptions") == 1)
        #expect(Self.number(try CheckDiff.counts(dir.file("overflow.vhdx")), "corruptions") == 2)
        #expect(Self.number(try CheckDiff.counts(big), "corruptions") > 32)
    }

    @Test func vmdk() throws {
        let dir = try TempDir("checkf")
        let base = dir.file("base.vmdk")
        try CheckImages.create(base, "vmdk", "256M")
        let data = dir.file("data.vmdk")
        try CheckImages.copy(base, data)
        try CheckImages.io(data, "vmdk", ["write -P 1 0 64K", "write -P 2 1M 200K", "write 100M 4K", "write 255M 1M"])
        let stream = dir.file("stream.vmdk")
        try QemuImg.run(["convert", "-q", "-f", "vmdk", "-O", "vmdk", "-o", "subformat=streamOptimized", data, stream])
        let flat = dir.file("flat.vmdk")
        try CheckImages.create(flat, "vmdk", "8M", ["-o", "subformat=monolithicFlat"])
        try CheckImages.io(flat, "vmdk", ["write -P 3 1M 1M"])
        let split = dir.file("split.vmdk")
        try CheckImages.create(split, "vmdk", "5G", ["-o", "subformat=twoGbMaxExtentSparse"])
        try CheckImages.io(split, "vmdk", ["write 0 64K", "write 2560M 1M", "write 4G 4K"])
        let zeroed = dir.file("zeroed.vmdk")
        try CheckImages.create(zeroed, "vmdk", "64M", ["-o", "zeroed_grain=on"])
        try CheckImages.io(zeroed, "vmdk", ["write 0 1M", "write -z 64K 128K"])
        // 2 TiB: QEMU walks 32 Mi grains; imgtool steps over unallocated grain tables.
        let huge = dir.file("huge.vmdk")
        try CheckImages.create(huge, "vmdk", "2T")
        try CheckImages.io(huge, "vmdk", ["write 1T 64K"])
        var cases = [("empty", base), ("data", data), ("stream", stream), ("flat", flat), ("split", split), ("zeroed", zeroed), ("huge", huge)]
        func variant(_ name: String, from: String? = nil, _ edit: (String) throws -> Void) throws {
            try CheckImages.variant(&cases, dir, name, "vmdk", from: from ?? data, edit)
        }
        let gd = try CheckImages.u64(data, at: 56) * 512, size = try CheckImages.size(data)
        let gt = try CheckImages.u32(data, at: gd) * 512
        try variant("gt-past-eof") { try CheckImages.putU32($0, at: gt + 4 * 16, 0x7FFF_0000) }
        try variant("gd-past-eof") { try CheckImages.putU32($0, at: gd, 0x7FFF_FFFF) }
        try variant("truncated") { try CheckImages.truncate($0, to: size - (64 << 10)) }
        try variant("zero-grain-unflagged") { try CheckImages.putU32($0, at: gt + 4 * 40, 1) }
        try variant("stream-past-eof", from: stream) { p in
            let sgt = try CheckImages.u32(p, at: try CheckImages.u64(p, at: 56) * 512) * 512
            try CheckImages.putU32(p, at: sgt + 4 * 3, 0x0FFF_FFFF)
        }
        // A flat extent whose start lies past its file's end: the descriptor rewritten.
        let flatPast = dir.file("flat-past.vmdk")
        let text = try String(contentsOfFile: flat, encoding: .utf8)
        try text.replacingOccurrences(of: "\"flat-flat.vmdk\" 0", with: "\"flat-flat.vmdk\" 99999").write(toFile: flatPast, atomically: true, encoding: .utf8)
        #expect(text.contains("\"flat-flat.vmdk\" 0"), "the descriptor names its flat extent as expected")
        cases.append(("flat-past", flatPast))

        try Self.expectAgreement(cases)
        guard case .failed(let why) = try CheckDiff.theirs(dir.file("gt-past-eof.vmdk")) else {
            Issue.record("qemu-img's check of a grain past EOF is expected to fail")
            return
        }
        #expect(why == "Invalid argument")
        guard case .success(let c) = CheckDiff.ours(dir.file("truncated.vmdk")) else { Issue.record("truncated.vmdk"); return }
        #expect(c.aborted == "Invalid argument" && c.corruptions == 1 && c.findings.contains { $0.message.contains("after the end") })
    }
}
