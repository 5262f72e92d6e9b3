import Foundation
import Testing
@testable import QCow2
import TestSupport

/// Where qemu-img's open refuses an image, imgtool refuses it too: `info` exits 1 naming the field, `chain` reports
/// an `invalid-header` link, `verify` calls it unsafe. Each image is made by qemu-img and then damaged the way the
/// wild damages them.
@Suite(.serialized)
struct RefusalTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var format: String
        var field: String
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "vhd-bat-too-large", format: "vpc", field: "max_table_entries"),
        Case(name: "vhd-footer-checksum", format: "vpc", field: "checksum"),
        Case(name: "vhdx-log-needs-replay", format: "vhdx", field: "log"),
        Case(name: "luks-without-payload", format: "luks", field: "payload_offset"),
        Case(name: "vmdk-l1-too-big", format: "vmdk", field: "capacity"),
        Case(name: "vdi-parent-uuid", format: "vdi", field: "uuid_parent"),
        Case(name: "qed-unknown-feature", format: "qed", field: "features"),
        Case(name: "vmdk-flat-extent-missing", format: "vmdk", field: "extent"),
    ]

    static func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    /// Makes the damaged image; returns its path.
    static func make(_ c: Case, in dir: TempDir) throws -> String {
        let f = dir.file(c.name + "." + c.format)
        switch c.name {
        case "luks-without-payload":
            let full = dir.file("full.luks")
            try LUKSFixtures.copy("plain.luks", to: full)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: full)).prefix(4096)
            try bytes.write(to: URL(fileURLWithPath: f))
            return f
        case "vmdk-flat-extent-missing":
            // The descriptor of a monolithicFlat image whose data file is gone (moved without it).
            try QemuImg.run(["create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", f, "1M"])
            try FileManager.default.removeItem(atPath: dir.file(c.name + "-flat.vmdk"))
            return f
        default:
            try QemuImg.run(["create", "-q", "-f", c.format, f, "64M"])
        }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: f)))
        let w = ByteWindow(bytes)
        switch c.name {
        case "vhd-bat-too-large":
            let dyn = try #require(w.u64BE(16))
            try patch(f, at: dyn + 28, [0x20, 0, 0, 0])
        case "vhd-footer-checksum":
            try patch(f, at: 64, [bytes[64] ^ 1])
        case "vhdx-log-needs-replay":
            // A log entry with this header's log GUID and a valid CRC-32C, and the GUID set in the current header.
            let s1 = w.u64LE((64 << 10) + 8) ?? 0, s2 = w.u64LE((128 << 10) + 8) ?? 0
            let h = s1 >= s2 ? 64 << 10 : 128 << 10
            let guid = (1...16).map { UInt8($0) }
            let logOffset = try #require(w.u64LE(h + 72))
            var entry = [UInt8](repeating: 0, count: 4096)
            entry.replaceSubrange(0..<4, with: Array("loge".utf8))
            entry.replaceSubrange(8..<12, with: le(4096, 4))
            entry.replaceSubrange(16..<24, with: le(1, 8))
            entry.replaceSubrange(32..<48, with: guid)
            entry.replaceSubrange(48..<56, with: le(UInt64(bytes.count), 8))
            entry.replaceSubrange(56..<64, with: le(UInt64(bytes.count), 8))
            entry.replaceSubrange(4..<8, with: le(UInt64(CRC32C.checksum(entry, zeroedAt: 4)), 4))
            try patch(f, at: logOffset, entry)
            var header = Array(bytes[h..<(h + 4096)])
            header.replaceSubrange(48..<64, with: guid)
            header.replaceSubrange(4..<8, with: le(UInt64(CRC32C.checksum(header, zeroedAt: 4)), 4))
            try patch(f, at: UInt64(h), header)
        case "vmdk-l1-too-big":
            try patch(f, at: 12, le(1 << 42, 8))
        case "vdi-parent-uuid":
            try patch(f, at: 440, [1])
        case "qed-unknown-feature":
            try patch(f, at: 16, [0x80])
        default: break
        }
        return f
    }

    @Test(arguments: cases) func refusedAsQemuRefuses(_ c: Case) throws {
        let dir = try TempDir("refuse")
        let f = try Self.make(c, in: dir)
        let qemu = try runProgram(try QemuImg.path(), ["info", f])
        #expect(qemu.status == 1, "qemu-img opens \(c.name): \(qemu.stdout)")

        let info = try ImgtoolBinary.run(["info", f, "--output", "json"])
        #expect(info.status == 1, "\(c.name): info exit \(info.status): \(info.stdout)")
        #expect(info.stderr.contains(c.field), "\(c.name): \(info.stderr)")
        #expect(info.stdout.isEmpty)

        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", f, "-F", c.format, dir.file("top.qcow2"), "64M"])
        let chain = try ImgtoolBinary.run(["chain", dir.file("top.qcow2"), "--output", "json"])
        #expect(chain.status == 2)
        let json = try JSONSerialization.jsonObject(with: Data(chain.stdout.utf8)) as? [String: Any]
        let problem = (json?["problems"] as? [[String: Any]])?.first
        #expect(problem?["kind"] as? String == "invalid-header", "\(c.name): \(chain.stdout)")

        let verify = try ImgtoolBinary.run(["verify", f])
        #expect(verify.status == 2, "\(c.name): \(verify.stdout)")
        #expect(verify.stdout.contains(c.field))
    }

    /// A JSON key imgtool promises is never missing on exit 0: every format qemu-img makes has its virtual size,
    /// and it is qemu-img's.
    @Test func everyFormatReportsQemuImgsVirtualSize() throws {
        let dir = try TempDir("refuse")
        for (fmt, opts) in [("qcow", ""), ("qed", ""), ("vdi", ""), ("parallels", ""), ("vpc", ""), ("vhdx", ""), ("vmdk", ""),
                            ("vmdk", "subformat=streamOptimized"), ("vmdk", "subformat=twoGbMaxExtentSparse"), ("vmdk", "subformat=monolithicFlat")] {
            let f = dir.file("s\(opts.count).\(fmt)")
            try QemuImg.run(["create", "-q", "-f", fmt] + (opts.isEmpty ? [] : ["-o", opts]) + [f, "100M"])
            let want = (try QemuImg.info(f) as? [String: Any])?["virtual-size"] as? Int
            let r = try ImgtoolBinary.run(["info", f, "--output", "json"])
            #expect(r.status == 0, "\(fmt) \(opts): \(r.stderr)")
            let got = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["virtual-size"] as? Int
            #expect(got != nil && got == want, "\(fmt) \(opts): imgtool \(got ?? -1), qemu-img \(want ?? -1)")
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
