import Foundation
import Testing
@testable import QCow2
import TestSupport

extension CheckFormatsTests {
    /// Small images of each checked format with data, then random byte edits in their headers and tables (a seeded
    /// generator, so a failure repeats): imgtool's check and qemu-img's give the same answer on every one, and
    /// imgtool's never traps or runs away.
    @Test(arguments: [("qed", ["-o", "cluster_size=4K,table_size=4"]), ("vdi", []), ("parallels", ["-o", "cluster_size=4K"]),
                      ("vhdx", ["-o", "block_size=1M,log_size=1M"]), ("vmdk", [])] as [(String, [String])])
    func mutationsAgreeWithQemuImg(_ fmt: String, _ opts: [String]) throws {
        let dir = try TempDir("checkf")
        let base = dir.file("base." + fmt)
        try CheckImages.create(base, fmt, "8M", opts)
        try CheckImages.io(base, fmt, ["write -P 1 0 64K", "write -P 2 3M 8K", "write 7M 4K", "write 1M 4K"])
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: base)))
        // Where the header and tables are, each span as likely to be edited as another.
        let file = try ImageFile.open(base)
        var spans: [Range<Int>] = [0..<512]
        func span(_ at: UInt64, _ count: UInt64) { spans.append(Int(at)..<min(bytes.count, Int(at + max(count, 4)))) }
        switch fmt {
        case "vhdx":
            let h = try VHDXHeader.read(file)
            span(h.batOffset, h.batEntries * 8)
            span(64 << 10, 128)
            span(192 << 10, 128)
        case "vdi":
            let h = try VDIHeader.read(file)
            span(h.bmapOffset, h.blocks * 4)
        case "vmdk":
            let h = try VMDKSparseHeader.read(file)
            span(h.gdOffset, h.l1Size * 4)
            span(try CheckImages.u32(base, at: h.gdOffset) * 512, h.gtes * 4)
        case "parallels":
            span(64, try CheckImages.u32(base, at: 32) * 4)
        default:
            span(512, 1 << 16)
        }
        var rng = FastPathTests.SplitMix(state: UInt64(fmt.utf8.reduce(7) { $0 &* 31 &+ UInt64($1) }))
        var differences: [String] = []
        var answered = 0, damaged = 0, failed = 0, refused = 0
        let rounds = 120
        for round in 0..<rounds {
            var b = bytes
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let span = spans[Int(rng.next() % UInt64(spans.count))]
                guard !span.isEmpty else { continue }
                let at = span.lowerBound + Int(rng.next() % UInt64(span.count))
                switch rng.next() % 3 {
                case 0: b[at] = UInt8(truncatingIfNeeded: rng.next())
                case 1: b[at] ^= 1 << (rng.next() % 8)
                default: for k in at..<min(b.count, at + 4) { b[k] = 0xFF }
                }
            }
            if rng.next() % 5 == 0 { b.removeLast(Int(rng.next() % UInt64(b.count / 2))) }
            let p = dir.file("m\(round)." + fmt)
            try Data(b).write(to: URL(fileURLWithPath: p))
            let (theirs, d) = try CheckDiff.compared(p, "\(fmt) round \(round)")
            differences += d
            switch theirs {
            case .counts(let obj, _):
                answered += 1
                if Self.number(obj, "corruptions") + Self.number(obj, "leaks") > 0 { damaged += 1 }
            case .failed: failed += 1
            case .refused, .unsupported: refused += 1
            }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
        // The edits must reach the checks, not only the header checks of the open.
        // (qemu-img's VMDK check never counts: it is clean or it fails.)
        #expect(answered >= rounds / 4 && (fmt == "vmdk" ? failed : damaged) >= rounds / 20, "\(fmt): \(answered) answered (\(damaged) damaged), \(failed) failed, \(refused) refused")
    }
}
