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
        // Where the tables are: the first 64 KiB (headers, small tables), and for VHDX its BAT and region table.
        var spans: [Range<Int>] = [0..<min(bytes.count, 1 << 16)]
        if fmt == "vhdx", let h = try? VHDXHeader.read(try ImageFile.open(base)) {
            spans.append(Int(h.batOffset)..<min(bytes.count, Int(h.batOffset) + 4096))
            spans.append((192 << 10)..<((192 << 10) + 256))
        }
        var rng = SplitMix(seed: UInt64(fmt.utf8.reduce(7) { $0 &* 31 &+ UInt64($1) }))
        var differences: [String] = []
        for round in 0..<60 {
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
            differences += try CheckDiff.differences(p, "\(fmt) round \(round)")
        }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n"))")
    }
}

/// A small seeded generator (SplitMix64), so a mutation that finds a difference is found again.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
