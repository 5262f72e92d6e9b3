import Foundation
import QCow2
import Testing
@testable import imgtool
import ImageOps
import TestSupport

/// `chain --output json` writes each layer's object straight as bytes and sends them out in 64 KiB pieces
/// (`ChainReport.streamJSON`), instead of building the whole tree and one buffer. Its bytes must be the tree's, to
/// the byte: healthy and broken chains, a chain long enough to be sent in several pieces, snapshots, odd names.
@Suite struct ChainStreamTests {
    /// The streamed bytes, and the tree's as `printToStandardOutput` writes them.
    /// (Absolute names: the current folder is the whole process's, and these tests run in parallel.)
    func both(_ image: String, maxDepth: Int = BackingChain.defaultMaxDepth) throws -> (streamed: [UInt8], tree: [UInt8], pieces: Int) {
        let report = ChainReport(image: image, chain: try BackingChain.follow(image, maxDepth: maxDepth))
        var streamed: [UInt8] = []
        var pieces = 0
        report.streamJSON { streamed += $0; pieces += 1 }
        return (streamed, report.json.renderedBytes() + [10], pieces)
    }

    @Test func streamedBytesAreTheTreesBytes() throws {
        let dir = try TempDir("chainstream")
        func q(_ args: String...) throws { try QemuImg.run(args, cwd: dir.path) }
        try q("create", "-q", "-f", "raw", "base.raw", "1M")
        var below = "base.raw", format = "raw"
        // ~800 bytes a layer: 120 layers are sent in two pieces at least.
        for i in 1...120 {
            try q("create", "-q", "-f", "qcow2", "-u", "-b", below, "-F", format, "l\(i).qcow2", "1M")
            (below, format) = ("l\(i).qcow2", "qcow2")
        }
        try q("snapshot", "-c", "snap \"one\"", "l120.qcow2")
        try q("create", "-q", "-f", "qcow2", "-u", "-b", "gone\tname.raw", "-F", "raw", "broken.cow", "1M")
        // A link without a format (a warning, and the walk goes on): the format extension renamed to an unknown type.
        try q("create", "-q", "-f", "qcow2", "-u", "-b", "l3.qcow2", "-F", "qcow2", "nofmt.cow", "1M")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file("nofmt.cow"))))
        let at = try #require((0..<4092).first { Array(bytes[$0..<($0 + 4)]) == [0xE2, 0x79, 0x2A, 0xCA] })
        bytes[at] = 0x11
        try Data(bytes).write(to: URL(fileURLWithPath: dir.file("nofmt.cow")))
        try q("create", "-q", "-f", "qcow2", "-u", "-b", "l2.qcow2", "-F", "raw", "mismatch.cow", "1M")

        let long = try both(dir.file("l120.qcow2"))
        #expect(long.streamed == long.tree)
        #expect(long.pieces >= 2)
        for (image, depth) in [("l1.qcow2", 1000), ("broken.cow", 1000), ("nofmt.cow", 1000), ("mismatch.cow", 1000), ("l120.qcow2", 5), ("base.raw", 1000)] {
            let r = try both(dir.file(image), maxDepth: depth)
            #expect(r.streamed == r.tree, "\(image): \(String(decoding: r.streamed, as: UTF8.self))")
        }
        // And the command prints the same bytes (the fast path streams).
        let out = try ImgtoolBinary.run(["chain", "--output", "json", dir.file("l120.qcow2")], cwd: dir.path)
        #expect(Array(out.stdout.utf8) == long.tree)
    }
}
