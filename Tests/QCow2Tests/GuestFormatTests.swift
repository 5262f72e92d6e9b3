import Foundation
import Testing
@testable import QCow2
import TestSupport

/// Guest reads of every format qemu-img creates agree byte for byte with `qemu-img convert -O raw`: a 64 MiB disk with
/// a GPT written by sfdisk and data scattered over it (runs of zeros, random bytes, partial blocks), converted to
/// each format and subformat, and chains of mixed formats written to by qemu-io.
@Suite(.serialized)
struct GuestFormatTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var top: String
        var steps: [[String]]
        var description: String { name }
    }

    static func convert(_ name: String, _ args: [String]) -> Case {
        Case(name: name, top: name, steps: [["convert"] + args + ["src.raw", name]])
    }

    static let conversions: [Case] = [
        convert("d.qcow", ["-O", "qcow"]),
                convert("d.qed", ["-O", "qed"]),
        convert("s.qed", ["-O", "qed", "-o", "cluster_size=4096,table_size=2"]),
        convert("d.vdi", ["-O", "vdi"]),
        convert("s.vdi", ["-O", "vdi", "-o", "static=on"]),
        convert("d.parallels", ["-O", "parallels"]),
        convert("d.vhd", ["-O", "vpc"]),
        convert("s.vhd", ["-O", "vpc", "-o", "force_size=on"]),
        convert("f.vhd", ["-O", "vpc", "-o", "subformat=fixed"]),
        convert("d.vhdx", ["-O", "vhdx"]),
        convert("s.vhdx", ["-O", "vhdx", "-o", "block_size=1M,log_size=1M"]),
        convert("f.vhdx", ["-O", "vhdx", "-o", "subformat=fixed"]),
        convert("d.vmdk", ["-O", "vmdk"]),
        convert("z.vmdk", ["-O", "vmdk", "-o", "zeroed_grain=on"]),
        convert("so.vmdk", ["-O", "vmdk", "-o", "subformat=streamOptimized"]),
        convert("soc.vmdk", ["-c", "-O", "vmdk", "-o", "subformat=streamOptimized"]),
        convert("split.vmdk", ["-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"]),
        convert("flat.vmdk", ["-O", "vmdk", "-o", "subformat=monolithicFlat"]),
        convert("splitflat.vmdk", ["-O", "vmdk", "-o", "subformat=twoGbMaxExtentFlat"]),
    ]

    static func io(_ fmt: String, _ image: String, _ cmd: String) -> [String] { ["io", fmt, image, cmd] }

    static let chains: [Case] = [
        Case(name: "qcow2 on qed on vhd", top: "top.qcow2", steps: [
            ["convert", "-O", "vpc", "src.raw", "base.vhd"],
            ["create", "-q", "-f", "qed", "-b", "base.vhd", "-F", "vpc", "mid.qed"],
            io("qed", "mid.qed", "write -P 0x5a 1M 300k"), io("qed", "mid.qed", "write -z 40M 1M"),
            ["create", "-q", "-f", "qcow2", "-b", "mid.qed", "-F", "qed", "top.qcow2"],
            io("qcow2", "top.qcow2", "write -P 0x6b 1200k 8k"),
        ]),
        Case(name: "qcow v1 on vhdx", top: "top.qcow", steps: [
            ["convert", "-O", "vhdx", "src.raw", "base.vhdx"],
            ["create", "-q", "-f", "qcow", "-b", "base.vhdx", "-F", "vhdx", "top.qcow"],
            io("qcow", "top.qcow", "write -P 0x7c 17k 5k"), io("qcow", "top.qcow", "write -P 0x7d 50M 2M"),
        ]),
        Case(name: "vmdk delta on stream-optimized vmdk, qcow2 on top", top: "top.qcow2", steps: [
            ["convert", "-O", "vmdk", "-o", "subformat=streamOptimized", "src.raw", "base.vmdk"],
            ["create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "delta.vmdk"],
            io("vmdk", "delta.vmdk", "write -P 0x8e 3M 100k"),
            ["create", "-q", "-f", "qcow2", "-b", "delta.vmdk", "-F", "vmdk", "top.qcow2"],
            io("qcow2", "top.qcow2", "write -P 0x9f 63M 1M"),
        ]),
        Case(name: "qed on vdi on parallels source, larger than its base", top: "top.qed", steps: [
            ["convert", "-O", "vdi", "src.raw", "base.vdi"],
            ["create", "-q", "-f", "qed", "-b", "base.vdi", "-F", "vdi", "top.qed", "80M"],
            io("qed", "top.qed", "write -P 0x11 70M 64k"),
        ]),
        // qemu-img 7.2's convert -c -O qcow fails; qemu-io writes compressed clusters.
        Case(name: "compressed qcow v1 clusters", top: "c.qcow", steps: [
            ["create", "-q", "-f", "qcow", "c.qcow", "64M"],
            io("qcow", "c.qcow", "write -c -P 0x21 0 4k"), io("qcow", "c.qcow", "write -c -P 0x22 8k 4k"),
            io("qcow", "c.qcow", "write -c -P 0x23 30M 4k"), io("qcow", "c.qcow", "write -P 0x24 30M 100"),
        ]),
    ]

    /// The source disk: a GPT by sfdisk, then data of every kind, then the GPT again (data may have hit it).
    static func makeSource(_ dir: TempDir) throws {
        let qemuIO = try #require(which("qemu-io"), "qemu-io (qemu-utils) is needed")
        let sfdisk = try #require(which("sfdisk"), "sfdisk (util-linux) is needed")
        try QemuImg.run(["create", "-q", "-f", "raw", dir.file("src.raw"), "64M"])
        var rng = SplitMix(seed: 7)
        for i in 0..<40 {
            let at = rng.next() % (64 << 20), n = 1 + rng.next() % 300_000
            let r = try runProgram(qemuIO, ["-f", "raw", "-c", "write -P \(i * 6 + 1) \(at) \(min(n, (64 << 20) - at))", dir.file("src.raw")])
            #expect(r.status == 0, "qemu-io: \(r.stderr)")
        }
        #expect(shell("printf 'label: gpt\\n,10M,L\\n,20M,L\\n,,L\\n' | \(sfdisk) -q \(shellQuote(dir.file("src.raw")))") == 0)
    }

    func check(_ c: Case) throws {
        let dir = try TempDir("fmt")
        try Self.makeSource(dir)
        let qemuIO = try #require(which("qemu-io"))
        for step in c.steps {
            if step.first == "io" {
                let r = try runProgram(qemuIO, ["-f", step[1], "-c", step[3], step[2]], cwd: dir.path)
                #expect(r.status == 0, "qemu-io \(step): \(r.stderr)")
            } else {
                try QemuImg.run(step, cwd: dir.path)
            }
        }
        try QemuImg.run(["convert", "-O", "raw", c.top, "expected.raw"], cwd: dir.path)
        let expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file("expected.raw"))))
        let disk = try GuestDisk.open(dir.file(c.top))
        #expect(disk.size == UInt64(expected.count), "\(c.name): size")
        var offset = 0
        while offset < expected.count {
            let n = min(3_333_333, expected.count - offset)
            let got = try disk.read(at: UInt64(offset), count: n)
            if got != Array(expected[offset..<(offset + n)]) {
                let at = zip(got, expected[offset...]).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
                Issue.record("\(c.name): first difference at guest offset \(offset + at)")
                return
            }
            offset += n
        }
        var rng = SplitMix(seed: 99)
        for _ in 0..<200 {
            let start = Int(rng.next() % UInt64(expected.count)), n = Int(rng.next() % 150_000)
            var want = Array(expected[start..<min(expected.count, start + n)])
            want += [UInt8](repeating: 0, count: n - want.count)
            #expect(try disk.read(at: UInt64(start), count: n) == want, "\(c.name): range \(start)+\(n)")
        }
    }

    @Test(arguments: conversions) func convertedImagesReadAsQemuReadsThem(_ c: Case) throws { try check(c) }
    @Test(arguments: chains) func mixedChainsReadAsQemuReadsThem(_ c: Case) throws { try check(c) }
}
