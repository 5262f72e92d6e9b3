import Foundation
import Testing
@testable import QCow2
import TestSupport

/// Guest reads agree byte for byte with `qemu-img convert -O raw` over a corpus with every cluster kind: standard,
/// zero, unallocated falling through to the backing file (and zeros past its end), compressed with zlib and zstd,
/// extended L2 subclusters, an external data file, small clusters, version 2, and chains with data at every depth.
@Suite(.serialized)
struct GuestReadTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var top: String
        var steps: [[String]]  // "qemu-img …" or "io IMAGE CMD" (qemu-io)
        var description: String { name }
    }

    static func io(_ image: String, _ cmd: String) -> [String] { ["io", image, cmd] }

    static let cases: [Case] = [
        Case(name: "standard+zero+backing", top: "top.qcow2", steps: [
            ["create", "-q", "-f", "raw", "base.raw", "4M"],
            io("base.raw", "write -P 0x11 0 4M"),
            ["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2", "8M"],
            io("top.qcow2", "write -P 0x22 65000 70000"),
            io("top.qcow2", "write -z 1M 128k"),
            io("top.qcow2", "write -P 0x33 6M 100k"),
        ]),
        Case(name: "v2-512", top: "v2.qcow2", steps: [
            ["create", "-q", "-f", "raw", "b.raw", "2M"],
            io("b.raw", "write -P 0x44 0 2M"),
            ["create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=512", "-b", "b.raw", "-F", "raw", "v2.qcow2"],
            io("v2.qcow2", "write -P 0x55 700 3000"),
            io("v2.qcow2", "write -z 8192 1024"),
        ]),
        Case(name: "extended-l2", top: "ext.qcow2", steps: [
            ["create", "-q", "-f", "raw", "eb.raw", "4M"],
            io("eb.raw", "write -P 0x66 0 4M"),
            ["create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", "-b", "eb.raw", "-F", "raw", "ext.qcow2"],
            io("ext.qcow2", "write -P 0x77 2048 2048"),
            io("ext.qcow2", "write -P 0x78 10240 5000"),
            io("ext.qcow2", "write -z 131072 4096"),
            io("ext.qcow2", "write -P 0x79 1M 64k"),
        ]),
        Case(name: "compressed-zlib", top: "cz.qcow2", steps: [
            ["create", "-q", "-f", "raw", "src.raw", "4M"],
            io("src.raw", "write -P 0x01 0 1M"), io("src.raw", "write -P 0x9a 1M 512k"), io("src.raw", "write -P 0xfe 3M 333k"),
            ["convert", "-c", "-O", "qcow2", "src.raw", "cz.qcow2"],
        ]),
        Case(name: "compressed-zstd-small-clusters", top: "cs.qcow2", steps: [
            ["create", "-q", "-f", "raw", "src2.raw", "2M"],
            io("src2.raw", "write -P 0x21 0 700k"), io("src2.raw", "write -P 0x42 1M 300k"),
            ["convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd,cluster_size=4k", "src2.raw", "cs.qcow2"],
        ]),
        Case(name: "compressed-under-overlay", top: "ov.qcow2", steps: [
            ["create", "-q", "-f", "raw", "src3.raw", "4M"],
            io("src3.raw", "write -P 0x31 0 4M"),
            ["convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", "src3.raw", "c3.qcow2"],
            ["create", "-q", "-f", "qcow2", "-b", "c3.qcow2", "-F", "qcow2", "ov.qcow2"],
            io("ov.qcow2", "write -P 0x32 100k 200k"),
        ]),
        Case(name: "chain-depth-5", top: "l5.qcow2", steps: [
            ["create", "-q", "-f", "raw", "l0.raw", "6M"],
            io("l0.raw", "write -P 0xa0 0 6M"),
            ["create", "-q", "-f", "qcow2", "-b", "l0.raw", "-F", "raw", "l1.qcow2"], io("l1.qcow2", "write -P 0xa1 1M 1M"),
            ["create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "l1.qcow2", "-F", "qcow2", "l2.qcow2"], io("l2.qcow2", "write -P 0xa2 1536k 100k"),
            ["create", "-q", "-f", "qcow2", "-b", "l2.qcow2", "-F", "qcow2", "l3.qcow2", "8M"], io("l3.qcow2", "write -z 1M 64k"),
            ["create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", "-b", "l3.qcow2", "-F", "qcow2", "l4.qcow2"], io("l4.qcow2", "write -P 0xa4 7M 4k"),
            ["create", "-q", "-f", "qcow2", "-b", "l4.qcow2", "-F", "qcow2", "l5.qcow2"], io("l5.qcow2", "write -P 0xa5 5000 1"),
        ]),
        Case(name: "external-data-file", top: "ed.qcow2", steps: [
            ["create", "-q", "-f", "qcow2", "-o", "data_file=ed.data", "ed.qcow2", "4M"],
            io("ed.qcow2", "write -P 0xd1 64k 200k"),
            io("ed.qcow2", "write -P 0xd2 3M 4k"),
        ]),
    ]

    @Test(arguments: cases)
    func guestBytesAgreeWithQemuImgConvert(_ c: Case) throws {
        let dir = try TempDir("guest")
        let qemuIO = try #require(which("qemu-io"), "qemu-io (qemu-utils) is needed")
        for step in c.steps {
            if step.first == "io" {
                let fmt = step[1].hasSuffix(".raw") ? "raw" : "qcow2"
                let r = try runProgram(qemuIO, ["-f", fmt, "-c", step[2], step[1]], cwd: dir.path)
                #expect(r.status == 0, "qemu-io \(step): \(r.stderr)")
            } else {
                try QemuImg.run(step, cwd: dir.path)
            }
        }
        try QemuImg.run(["convert", "-O", "raw", c.top, "expected.raw"], cwd: dir.path)
        let expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file("expected.raw"))))
        let disk = try GuestDisk.open(dir.file(c.top))
        #expect(disk.size == UInt64(expected.count))
        // The whole disk, in chunks that do not line up with clusters.
        var offset = 0
        while offset < expected.count {
            let n = min(777_777, expected.count - offset)
            let got = try disk.read(at: UInt64(offset), count: n)
            if got != Array(expected[offset..<(offset + n)]) {
                let at = zip(got, expected[offset...]).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
                Issue.record("\(c.name): first difference at guest offset \(offset + at)")
                return
            }
            offset += n
        }
        // Random ranges, many crossing cluster and layer boundaries; and past the end.
        var rng = SplitMix(seed: 42)
        for _ in 0..<300 {
            let start = Int(rng.next() % UInt64(expected.count))
            let n = Int(rng.next() % 200_000)
            let got = try disk.read(at: UInt64(start), count: n)
            var want = Array(expected[start..<min(expected.count, start + n)])
            want += [UInt8](repeating: 0, count: n - want.count)
            #expect(got == want, "\(c.name): range \(start)+\(n)")
        }
    }

    @Test func encryptedImageIsAClearError() throws {
        let dir = try TempDir("guest")
        try LUKSFixtures.copy("luks.qcow2", to: dir.file("e.qcow2"))
        #expect(throws: GuestDisk.Error.encrypted(path: dir.file("e.qcow2"))) { try GuestDisk.open(dir.file("e.qcow2")) }
    }

    @Test func corruptTablesAreErrorsNotTraps() throws {
        let dir = try TempDir("guest")
        let path = dir.file("c.qcow2")
        try QemuImg.run(["create", "-q", "-f", "qcow2", path, "4M"])
        let qemuIO = try #require(which("qemu-io"))
        _ = try runProgram(qemuIO, ["-c", "write -P 1 0 64k", path])
        let info = try ImageInfo.read(path)
        let l1 = try #require(info.qcow2?.l1TableOffset)
        // Point L1 entry 0 at an unaligned, far-away L2 table.
        let h = try #require(FileHandle(forUpdatingAtPath: path))
        try h.seek(toOffset: l1)
        h.write(Data([0x80, 0, 0, 0x7F, 0xFF, 0xFF, 0x12, 0x00]))
        try h.close()
        let disk = try GuestDisk.open(path)
        #expect(throws: GuestDisk.Error.self) { _ = try disk.read(at: 0, count: 4096) }
        #expect(throws: GuestDisk.Error.tooLarge(count: Int.max)) { _ = try disk.read(at: 0, count: Int.max) }
    }
}

/// A small deterministic generator, so a failing range can be replayed.
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
