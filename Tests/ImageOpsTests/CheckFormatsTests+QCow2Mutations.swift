import Foundation
import Testing
@testable import QCow2
import TestSupport

extension CheckFormatsTests {
    /// qcow2 images (plain, with an internal snapshot so copied flags and refcounts of 2 matter, with extended L2) made
    /// by qemu-img and qemu-io, then random edits of their header, L1, L2, refcount table and refcount blocks (seeded,
    /// so a failure repeats): every count of imgtool's check equals `qemu-img check`'s. The copied-flag pass reuses
    /// the entries the refcount walk kept; these edits are what would show a kept entry differing from a read one.
    @Test(arguments: [("plain", ["-o", "cluster_size=4K"]), ("snapshot", ["-o", "cluster_size=4K"]),
                      ("extended", ["-o", "cluster_size=64K,extended_l2=on"])] as [(String, [String])])
    func qcow2MutationsAgreeWithQemuImg(_ kind: String, _ opts: [String]) throws {
        let dir = try TempDir("checkq")
        let base = dir.file("base.qcow2")
        try CheckImages.create(base, "qcow2", "16M", opts)
        try CheckImages.io(base, "qcow2", ["write -P 1 0 64K", "write -P 2 3M 8K", "write 7M 4K", "write -z 9M 64K", "write 1M 4K"])
        if kind == "snapshot" {
            try QemuImg.run(["snapshot", "-c", "s1", base])
            try CheckImages.io(base, "qcow2", ["write -P 3 0 4K", "write -P 4 12M 4K"])
        }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: base)))
        let h = try QCow2Header.read(from: try ImageFile.open(base))
        let cs = UInt64(1) << UInt64(h.clusterBits)
        // Where the header and tables are, each span as likely to be edited as another.
        var spans: [Range<Int>] = [0..<512]
        func span(_ at: UInt64, _ count: UInt64) {
            guard at < UInt64(bytes.count) else { return }
            spans.append(Int(at)..<min(bytes.count, Int(at + max(count, 8))))
        }
        span(h.l1TableOffset, UInt64(h.l1Size) * 8)
        for k in 0..<UInt64(h.l1Size) {
            let l2 = try CheckImages.u64(base, at: h.l1TableOffset + k * 8) & 0x00FF_FFFF_FFFF_FE00
            if l2 != 0 { span(l2, cs) }
        }
        span(h.refcountTableOffset, UInt64(h.refcountTableClusters) * cs)
        let block = try CheckImages.u64(base, at: h.refcountTableOffset) & ~UInt64(0x1FF)
        if block != 0 { span(block, cs) }
        var rng = FastPathTests.SplitMix(state: UInt64(kind.utf8.reduce(11) { $0 &* 31 &+ UInt64($1) }))
        var differences: [String] = []
        var answered = 0, damaged = 0
        let rounds = 200
        for round in 0..<rounds {
            var b = bytes
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let span = spans[Int(rng.next() % UInt64(spans.count))]
                // Entries are big-endian words: edit the flags (first byte), the offset, or the whole word.
                let at = span.lowerBound + Int(rng.next() % UInt64(span.count)) & ~7
                switch rng.next() % 4 {
                case 0: b[at] ^= 0x80  // the copied flag
                case 1: b[min(b.count - 1, at + 6)] = UInt8(truncatingIfNeeded: rng.next())
                case 2: b[min(b.count - 1, at + Int(rng.next() % 8))] ^= 1 << (rng.next() % 8)
                default: for k in at..<min(b.count, at + 8) { b[k] = 0 }
                }
            }
            let p = dir.file("m\(round).qcow2")
            try Data(b).write(to: URL(fileURLWithPath: p))
            let (theirs, d) = try CheckDiff.compared(p, "qcow2 \(kind) round \(round)")
            differences += d
            if case .counts(let obj, _) = theirs {
                answered += 1
                if Self.number(obj, "corruptions") + Self.number(obj, "leaks") > 0 { damaged += 1 }
            }
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
        #expect(answered >= rounds / 4 && damaged >= rounds / 10, "\(kind): \(answered) answered (\(damaged) damaged)")
    }
}
