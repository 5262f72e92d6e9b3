import Foundation
import Testing
@testable import QCow2
import TestSupport
import ImageOps

/// Hostile images of the issue's items 8, 10 and 11: a backing name on procfs or sysfs, a GPT header at byte 4096,
/// and partitions, offset and the shrink guard on every format qemu-img creates.
@Suite(.serialized)
struct HostileFormatTests {
    @Test(arguments: ["/proc/kmsg", "/proc/self/environ", "/sys/kernel/mm/transparent_hugepage/enabled"])
    func kernelFilesAreRefusedBeforeOpening(_ kernelFile: String) throws {
        let dir = try TempDir("hostile")
        let top = dir.file("top.qcow2")
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-u", "-b", kernelFile, "-F", "raw", top, "1M"])
        let chain = try ImgtoolBinary.run(["chain", top, "--output", "json"])
        #expect(chain.status == 2)
        let json = try JSONSerialization.jsonObject(with: Data(chain.stdout.utf8)) as? [String: Any]
        let problem = (json?["problems"] as? [[String: Any]])?.first
        #expect(problem?["kind"] as? String == "not-an-image", "\(chain.stdout)")
        #expect((problem?["message"] as? String)?.contains(kernelFile.hasPrefix("/proc") ? "procfs" : "sysfs") == true)
        let info = try ImgtoolBinary.run(["info", kernelFile])
        #expect(info.status == 1 && info.stderr.contains("not an image"), "\(info.stderr)")
        #expect(throws: ImageFile.Error.self) { try ImageFile.open(kernelFile) }
        #expect(try ImgtoolBinary.run(["verify", top]).status == 2)
        #expect(try ImgtoolBinary.run(["partitions", top]).status == 1)
    }

    @Test func gptHeaderAt4096IsAPolyglot() throws {
        let dir = try TempDir("hostile")
        let f = dir.file("p.qcow2")
        try QemuImg.run(["create", "-q", "-f", "qcow2", f, "1M"])
        let clean = try ImgtoolBinary.run(["verify", f])
        #expect(clean.status == 0, "\(clean.stdout)")
        try patch(f, at: 4096, Array("EFI PART".utf8))
        #expect((try QemuImg.info(f) as? [String: Any])?["format"] as? String == "qcow2")
        let v = try ImgtoolBinary.run(["verify", f, "--output", "json"])
        #expect(v.status == 2)
        #expect(v.stdout.contains("GPT header at byte 4096"), "\(v.stdout)")
    }

    @Test(arguments: ["qcow", "qed", "vdi", "parallels", "vpc", "vhdx", "vmdk"])
    func partitionsOffsetAndShrinkGuardOnEveryFormat(_ fmt: String) throws {
        let dir = try TempDir("hostile")
        let sfdisk = try #require(which("sfdisk"), "sfdisk (util-linux) is needed")
        let raw = dir.file("d.raw")
        try QemuImg.run(["create", "-q", "-f", "raw", raw, "64M"])
        #expect(shell("printf 'label: gpt\\n,10M,L\\n,20M,L\\n,,L\\n' | \(sfdisk) -q \(shellQuote(raw))") == 0)
        let img = dir.file("d." + fmt)
        try QemuImg.run(["convert", "-O", fmt, raw, img])
        let want = try runProgram(sfdisk, ["-J", raw])
        let table = try JSONSerialization.jsonObject(with: Data(want.stdout.utf8)) as? [String: Any]
        let parts = ((table?["partitiontable"] as? [String: Any])?["partitions"] as? [[String: Any]]) ?? []
        #expect(parts.count == 3)
        let r = try ImgtoolBinary.run(["partitions", img, "--output", "json"])
        #expect(r.status == 0, "\(fmt): \(r.stderr)")
        let ours = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["partitions"] as? [[String: Any]]
        #expect(ours?.map { $0["start-sector"] as? Int } == parts.map { $0["start"] as? Int }, "\(fmt)")
        #expect(ours?.map { $0["sectors"] as? Int } == parts.map { $0["size"] as? Int }, "\(fmt)")
        let offset = try ImgtoolBinary.run(["offset", img, "2"])
        #expect(offset.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == String((parts[1]["start"] as? Int ?? 0) * 512), "\(fmt)")
        // The guard `resize` asks (which itself changes only qcow2 and raw) reads the table of every format.
        let guardSays = PartitionGuard.check(try ImageInfo.read(img), newSize: 32 << 20)
        #expect(guardSays?.contains("GPT") == true, "\(fmt): \(guardSays ?? "nil")")
    }
}
