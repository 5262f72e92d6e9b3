import Foundation
import QCow2
import Testing
@testable import ImageOps
import TestSupport

/// Saves of format 4 fingerprint the tables with runs of zero pieces hashed as their length (the tables of a fresh
/// image are nearly all zeros, and hashing every byte was most of `fix-backing`'s instructions). The encoding must
/// still tell any two different tables apart, and saves of format 3, written by the imgtool before, must still be
/// undone with their fingerprints taken the old way.
@Suite(.serialized)
struct SaveFormatTests {
    let f: SafetyFixture

    init() throws { f = try SafetyFixture() }

    func zeroRunDigest(_ bytes: [UInt8]) -> String {
        var hash = SHA256()
        hash.update(number: UInt64(bytes.count))
        MetadataFingerprint.updateSkippingZeroRuns(&hash, bytes)
        return hash.hex()
    }

    /// Tables that differ anywhere (a byte in a zero run, the run's length, a short last piece) hash apart.
    @Test func zeroRunsStillTellTablesApart() {
        var tables: [[UInt8]] = [
            [], [0], [0, 0], [1], [0, 1], [1, 0],
            [UInt8](repeating: 0, count: 64), [UInt8](repeating: 0, count: 65), [UInt8](repeating: 0, count: 128),
            [UInt8](repeating: 0, count: 64) + [1] + [UInt8](repeating: 0, count: 63),
            [UInt8](repeating: 0, count: 65536), [UInt8](repeating: 0, count: 65535),
        ]
        // One byte set at each of several places of a 64 KiB table of zeros (a refcount block with one cluster).
        for at in [0, 1, 63, 64, 4095, 4096, 65535] {
            var t = [UInt8](repeating: 0, count: 65536)
            t[at] = 1
            tables.append(t)
        }
        let digests = tables.map(zeroRunDigest)
        #expect(Set(digests).count == tables.count)
    }

    /// A format 3 save (fingerprints of every byte) left by the imgtool before is still undone; the format 4 save
    /// this imgtool writes is too. The image is byte-identical to before the change after each undo.
    @Test func formatThreeSavesAreStillUndone() throws {
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "64M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "64M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "vm.cow")
        let original = try f.digest("vm.cow")

        // This imgtool's own save: format 4.
        var r = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"])
        #expect(r.status == 0, "\(r.stderr)")
        let saves = f.saves().filter { $0.hasSuffix(".hdr") }
        #expect(saves.count == 1)
        let saveFile = f.state + "/" + (saves.first ?? "")
        let written = try Data(contentsOf: URL(fileURLWithPath: saveFile))
        #expect(written.starts(with: Array("imgtool-undo 4\n".utf8)))
        r = try f.imgtool(["undo", "vm.cow"])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        #expect(try f.digest("vm.cow") == original)

        // The same change, its save rewritten as format 3 with every-byte fingerprints (rebase -u leaves the tables
        // alone, so before and after are the image's tables now).
        r = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"])
        #expect(r.status == 0, "\(r.stderr)")
        // (Closed before undo: this process holding the image would make undo refuse it as in use.)
        let (plain, zeroRuns) = try { () throws -> (String, String) in
            let file = try ImageFile.open(f.path("vm.cow"))
            return (try MetadataFingerprint.of(file, encoding: .plain), try MetadataFingerprint.of(file, encoding: .zeroRuns))
        }()
        #expect(plain != zeroRuns)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: saveFile)))
        let split = try #require(bytes.firstRange(of: [10, 10]))
        var head = String(decoding: bytes[..<split.lowerBound], as: UTF8.self)
        #expect(head.hasPrefix("imgtool-undo 4\n") && head.contains("meta-before=\(zeroRuns)") && head.contains("meta-after=\(zeroRuns)"))
        head = head.replacingOccurrences(of: "imgtool-undo 4\n", with: "imgtool-undo 3\n").replacingOccurrences(of: zeroRuns, with: plain)
        bytes = Array(head.utf8) + bytes[split.lowerBound...]
        try Data(bytes).write(to: URL(fileURLWithPath: saveFile))
        r = try f.imgtool(["undo", "vm.cow"])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        #expect(try f.digest("vm.cow") == original)
        #expect(try f.checks("vm.cow"))
        #expect(try f.backing("vm.cow") == "old.raw")
    }
}
