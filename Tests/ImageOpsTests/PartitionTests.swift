@testable import QCow2
import Foundation
import Testing
@testable import ImageOps
import QCow2
import TestSupport

/// Partition tables made by the real sfdisk, read raw and through qcow2 (plain, zlib, zstd, as a backing file),
/// compared with `sfdisk -J`.
@Suite(.serialized)
struct PartitionTests {
    static let layouts: [(String, String)] = [
        ("legacy63", "label: dos\nstart=63, size=20000, type=83, bootable\n"),
        ("aligned", "label: dos\nstart=2048, size=40960, type=83\nstart=43008, size=20480, type=82\n"),
        ("extended", "label: dos\nstart=2048, size=20480, type=83, bootable\nstart=22528, size=100352, type=5\nstart=24576, size=8192, type=83\nstart=34816, size=8192, type=82\nstart=45056, size=16384, type=8e\n"),
        ("gpt", "label: gpt\nstart=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system\"\nstart=22528, size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\"\nstart=63488, size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=\"swap\"\n"),
    ]

    static func sfdiskJSON(_ path: String) throws -> [[String: Any]] {
        let sfdisk = try #require(which("sfdisk"), "sfdisk (fdisk) is needed")
        let r = try runProgram(sfdisk, ["-J", path])
        #expect(r.status == 0, "\(r.stderr)")
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        return ((j["partitiontable"] as? [String: Any])?["partitions"] as? [[String: Any]]) ?? []
    }

    static func makeDisk(_ dir: TempDir, _ name: String, _ script: String, size: String = "64M") throws -> String {
        let path = dir.file(name)
        try QemuImg.run(["create", "-q", "-f", "raw", path, size])
        let sfdisk = try #require(which("sfdisk"))
        let r = try runProgram("/bin/sh", ["-c", "printf '%s' \"$1\" | \"$0\" -q \"$2\"", sfdisk, script, path])
        #expect(r.status == 0, "sfdisk: \(r.stderr)")
        return path
    }

    static func compare(_ ours: PartitionTable, _ theirs: [[String: Any]], _ what: String) {
        // sfdisk lists extended containers too, so every entry is compared.
        let mine = ours.partitions
        #expect(mine.count == theirs.count, "\(what): \(mine.count) vs sfdisk \(theirs.count)")
        for (p, t) in zip(mine, theirs) {
            let node = t["node"] as? String ?? ""
            #expect(node.hasSuffix(String(p.number)), "\(what): number \(p.number) vs \(node)")
            #expect(p.startSector == (t["start"] as? UInt64), "\(what) #\(p.number) start")
            #expect(p.sectors == (t["size"] as? UInt64), "\(what) #\(p.number) size")
            let type = t["type"] as? String ?? ""
            if ours.kind == "mbr" {
                #expect(UInt8(p.type, radix: 16) == UInt8(type, radix: 16), "\(what) #\(p.number) type \(p.type) vs \(type)")
                #expect(p.bootable == (t["bootable"] as? Bool ?? false), "\(what) #\(p.number) bootable")
            } else {
                #expect(p.type == type, "\(what) #\(p.number) type")
                #expect(p.uuid == t["uuid"] as? String, "\(what) #\(p.number) uuid")
                #expect((p.name ?? "") == (t["name"] as? String ?? ""), "\(what) #\(p.number) name")  // sfdisk omits an empty name
            }
        }
    }

    @Test(arguments: layouts.map(\.0))
    func rawAndQCow2AgreeWithSfdisk(layout: String) throws {
        let dir = try TempDir("parts")
        let script = try #require(Self.layouts.first { $0.0 == layout }?.1)
        let raw = try Self.makeDisk(dir, "disk.raw", script)
        let theirs = try Self.sfdiskJSON(raw)
        #expect(!theirs.isEmpty)
        try QemuImg.run(["convert", "-O", "qcow2", raw, dir.file("plain.qcow2")])
        try QemuImg.run(["convert", "-c", "-O", "qcow2", raw, dir.file("zlib.qcow2")])
        try QemuImg.run(["convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", raw, dir.file("zstd.qcow2")])
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "zlib.qcow2", "-F", "qcow2", "overlay.qcow2"], cwd: dir.path)
        for image in ["disk.raw", "plain.qcow2", "zlib.qcow2", "zstd.qcow2", "overlay.qcow2"] {
            let report = try PartitionReport.read(dir.file(image))
            #expect(report.table.kind == (layout == "gpt" ? "gpt" : "mbr"))
            #expect(report.table.warnings.isEmpty, "\(report.table.warnings)")
            Self.compare(report.table, theirs, "\(layout)/\(image)")
        }
        // offset prints start × 512 for the first partition, as mount wants it.
        let first = try #require(theirs.first?["start"] as? Int)
        let r = try ImgtoolBinary.run(["offset", dir.file("zstd.qcow2"), "1"])
        #expect(r.stdout == "\(first * 512)\n")
        #expect(try ImgtoolBinary.run(["offset", dir.file("disk.raw"), "42"]).status == 1)
    }

    @Test func legacyOffsetIs32256() throws {
        let dir = try TempDir("parts")
        let raw = try Self.makeDisk(dir, "old.raw", Self.layouts[0].1)
        let r = try ImgtoolBinary.run(["offset", raw, "1"])
        #expect(r.stdout == "32256\n")
        let human = try ImgtoolBinary.run(["partitions", raw])
        #expect(human.stdout.contains("mount -o loop,offset=32256,sizelimit=10240000"))
    }

    @Test func damagedPrimaryGPTFallsBackToBackup() throws {
        let dir = try TempDir("parts")
        let raw = try Self.makeDisk(dir, "gpt.raw", Self.layouts[3].1)
        let theirs = try Self.sfdiskJSON(raw)
        // Break the primary header's CRC-covered bytes (the disk GUID).
        let h = try #require(FileHandle(forUpdatingAtPath: raw))
        try h.seek(toOffset: 512 + 56)
        h.write(Data([0xDE, 0xAD, 0xBE, 0xEF]))
        try h.close()
        let report = try PartitionReport.read(raw)
        #expect(report.table.kind == "gpt")
        #expect(report.table.warnings.contains { $0.contains("backup") }, "\(report.table.warnings)")
        Self.compare(report.table, theirs, "backup GPT")
    }

    /// GPT on 4096-byte sectors. Debian's sfdisk cannot be told a file's sector size, so make-images.sh wrote this
    /// table through a loop device with 4 KiB blocks and kept sfdisk's reading of that device beside it.
    @Test func gpt4KiBSectorsAgreeWithSfdisk() throws {
        let fixture = fixturesDirectory() + "/gpt4k.raw"
        let reference = try Data(contentsOf: URL(fileURLWithPath: fixturesDirectory() + "/gpt4k.sfdisk.json"))
        let table = try #require(try JSONSerialization.jsonObject(with: reference) as? [String: Any])["partitiontable"] as? [String: Any]
        #expect(table?["sectorsize"] as? Int == 4096)
        let theirs = try #require(table?["partitions"] as? [[String: Any]])
        #expect(theirs.count == 2)
        let dir = try TempDir("parts4k")
        try QemuImg.run(["convert", "-O", "qcow2", "-o", "cluster_size=4096", fixture, dir.file("disk.qcow2")])
        try QemuImg.run(["convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", fixture, dir.file("zstd.qcow2")])
        for image in [fixture, dir.file("disk.qcow2"), dir.file("zstd.qcow2")] {
            let report = try PartitionReport.read(image)
            #expect(report.table.kind == "gpt")
            #expect(report.table.sectorSize == 4096, "\(image)")
            #expect(report.table.warnings.isEmpty, "\(report.table.warnings)")
            Self.compare(report.table, theirs, "4k/\(image)")
        }
        let first = try #require(theirs.first?["start"] as? Int)
        #expect(try ImgtoolBinary.run(["offset", fixture, "1"]).stdout == "\(first * 4096)\n")

        // The primary header gone: the backup at the last 4 KiB LBA is used (not a 512-byte reading of nothing).
        let copy = dir.file("damaged.raw")
        try FileManager.default.copyItem(atPath: fixture, toPath: copy)
        let h = try #require(FileHandle(forUpdatingAtPath: copy))
        try h.seek(toOffset: 4096)
        h.write(Data(repeating: 0, count: 4096))
        try h.close()
        let damaged = try PartitionReport.read(copy)
        #expect(damaged.table.sectorSize == 4096)
        #expect(damaged.table.warnings.contains { $0.contains("backup") }, "\(damaged.table.warnings)")
        Self.compare(damaged.table, theirs, "4k backup")
    }

    /// Where loop devices with 4 KiB blocks can be made (root), a fresh table is compared with sfdisk live too.
    @Test(.enabled(if: getuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control") && which("losetup") != nil))
    func gpt4KiBSectorsLive() throws {
        let losetup = try #require(which("losetup"))
        let dir = try TempDir("parts4klive")
        let raw = dir.file("disk.raw")
        try QemuImg.run(["create", "-q", "-f", "raw", raw, "8M"])
        let attach = try runProgram(losetup, ["-f", "--show", "--sector-size", "4096", raw])
        let device = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard attach.status == 0, device.hasPrefix("/dev/loop") else {
            // The module or permission is missing on this machine: the committed fixture above still covers 4 KiB.
            print("no 4 KiB loop device here (\(attach.stderr)); live comparison not run")
            return
        }
        defer { _ = try? runProgram(losetup, ["-d", device]) }
        let sfdisk = try #require(which("sfdisk"))
        let script = "label: gpt\nstart=256, size=300, name=\"a b\"\nstart=600, size=1000, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\nstart=1700, size=200, name=\"last\"\n"
        let w = try runProgram("/bin/sh", ["-c", "printf '%s' \"$1\" | \"$0\" -q --no-reread \"$2\"", sfdisk, script, device])
        #expect(w.status == 0, "\(w.stderr)")
        let theirs = try Self.sfdiskJSON(device)
        #expect(theirs.count == 3)
        let report = try PartitionReport.read(raw)
        #expect(report.table.sectorSize == 4096)
        Self.compare(report.table, theirs, "4k live")
    }

    @Test func mbrWrapMakesADiskSfdiskReads() throws {
        let dir = try TempDir("wrap")
        let part = dir.file("root.ext")
        try QemuImg.run(["create", "-q", "-f", "raw", part, "3M"])
        var r = try ImgtoolBinary.run(["mbr-wrap", part])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("mdadm --build"))
        let mbr = part + ".mbr"
        #expect((try FileManager.default.attributesOfItem(atPath: mbr)[.size] as? Int) == 16384)
        let disk = dir.file("disk.raw")
        #expect(shell("cat \(shellQuote(mbr)) \(shellQuote(part)) > \(shellQuote(disk))") == 0)
        let parts = try Self.sfdiskJSON(disk)
        #expect(parts.count == 1)
        #expect(parts.first?["start"] as? Int == 32)
        #expect(parts.first?["size"] as? Int == 3 * 2048)
        // Refuses to overwrite.
        let before = try fileDigest(mbr)
        r = try ImgtoolBinary.run(["mbr-wrap", part])
        #expect(r.status == 1)
        #expect(try fileDigest(mbr) == before)
    }

    @Test func shrinkGuard() throws {
        let dir = try TempDir("shrink")
        var env = ProcessInfo.processInfo.environment
        env["IMGTOOL_STATE_DIR"] = dir.file("state")
        let raw = try Self.makeDisk(dir, "d.raw", Self.layouts[1].1)  // partitions end at sector 63488 (31 MiB)
        try QemuImg.run(["convert", "-O", "qcow2", raw, dir.file("d.qcow2")])
        let before = try fileDigest(dir.file("d.qcow2"))
        var r = try ImgtoolBinary.run(["resize", dir.file("d.qcow2"), "16M", "--shrink"], environment: env)
        #expect(r.status == 1)
        #expect(r.stderr.contains("the shrink would cut it"), "\(r.stderr)")
        #expect(try fileDigest(dir.file("d.qcow2")) == before)
        r = try ImgtoolBinary.run(["resize", dir.file("d.qcow2"), "48M", "--shrink"], environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        let gpt = try Self.makeDisk(dir, "g.raw", Self.layouts[3].1)
        let g0 = try fileDigest(gpt)
        r = try ImgtoolBinary.run(["resize", gpt, "-1M", "--shrink"], environment: env)
        #expect(r.status == 1)
        #expect(r.stderr.contains("GPT"))
        #expect(try fileDigest(gpt) == g0)
        r = try ImgtoolBinary.run(["resize", gpt, "-1M", "--shrink", "--force"], environment: env)
        #expect(r.status == 0, "\(r.stderr)")
    }

    // MARK: hostile tables

    static func mbrSector(_ entries: [(UInt8, UInt32, UInt32)]) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 512)
        for (i, (type, start, count)) in entries.enumerated() {
            let o = 446 + 16 * i
            b[o + 4] = type
            for k in 0..<4 { b[o + 8 + k] = UInt8(truncatingIfNeeded: start >> (8 * UInt32(k))) }
            for k in 0..<4 { b[o + 12 + k] = UInt8(truncatingIfNeeded: count >> (8 * UInt32(k))) }
        }
        b[510] = 0x55; b[511] = 0xAA
        return b
    }

    static func table(_ disk: [UInt8]) throws -> PartitionTable {
        try PartitionTable.read(diskSize: UInt64(disk.count)) { (o, n) throws(GuestDisk.Error) in
            let start = Int(min(o, UInt64(disk.count)))
            var out = Array(disk[start..<min(disk.count, start + n)])
            out += [UInt8](repeating: 0, count: n - out.count)
            return out
        }
    }

    @Test func ebrLoopEnds() throws {
        var disk = [UInt8](repeating: 0, count: 1 << 20)
        disk.replaceSubrange(0..<512, with: Self.mbrSector([(0x05, 100, 1000)]))
        // The EBR at 100 names a logical and points at itself as the next EBR.
        disk.replaceSubrange(51200..<51712, with: Self.mbrSector([(0x83, 10, 10), (0x05, 0, 500)]))
        let t = try Self.table(disk)
        #expect(t.warnings.contains { $0.contains("loops") })
        #expect(t.partitions.filter(\.logical).count == 1)
    }

    /// Inputs the fuzzer found that once trapped; each must now read without a crash.
    @Test(arguments: ["gpt-extent-overflow.bin"])
    func fuzzRegression(name: String) throws {
        let path = fixturesDirectory().replacingOccurrences(of: "/images", with: "/fuzz-regressions/") + name
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for size in [bytes.count, bytes.count * 8 + 4096] {
            var disk = bytes
            disk += [UInt8](repeating: 0, count: size - bytes.count)
            let t = try Self.table(disk)
            #expect(t.partitions.allSatisfy { $0.end(t.sectorSize) >= $0.offset(t.sectorSize) })
        }
    }

    @Test func entriesBeyondDiskAreWarned() throws {
        var disk = [UInt8](repeating: 0, count: 1 << 20)
        disk.replaceSubrange(0..<512, with: Self.mbrSector([(0x83, 2048, 0xFFFF_FFFF)]))
        let t = try Self.table(disk)
        #expect(t.warnings.contains { $0.contains("beyond") })
    }

    @Test func absurdGPTEntryCountIsRefusedBeforeAllocating() throws {
        var disk = [UInt8](repeating: 0, count: 1 << 20)
        disk.replaceSubrange(0..<512, with: Self.mbrSector([(0xEE, 1, 2047)]))
        var h = [UInt8](repeating: 0, count: 92)
        h.replaceSubrange(0..<8, with: Array("EFI PART".utf8))
        h[12] = 92
        h[72] = 2  // entries at LBA 2
        for (k, v) in [(80, UInt32.max), (84, UInt32(128))] { for i in 0..<4 { h[k + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        let crc = crc32Of(h)
        for i in 0..<4 { h[16 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
        disk.replaceSubrange(512..<604, with: h)
        let t = try Self.table(disk)
        #expect(t.kind == "gpt")
        #expect(t.partitions.isEmpty)
        #expect(t.warnings.contains { $0.contains("refused") }, "\(t.warnings)")
    }

    @Test func hybridMBRIsWarnedAndGPTShown() throws {
        let dir = try TempDir("parts")
        let raw = try Self.makeDisk(dir, "hybrid.raw", Self.layouts[3].1)
        let theirs = try Self.sfdiskJSON(raw)
        // Add a second MBR entry (type 83 over GPT partition 2) beside the protective one, as gptsync does.
        let h = try #require(FileHandle(forUpdatingAtPath: raw))
        try h.seek(toOffset: 446 + 16 + 4)
        h.write(Data([0x83, 0, 0, 0, 0x00, 0x58, 0, 0, 0x00, 0xA0, 0, 0]))
        try h.close()
        let t = try PartitionReport.read(raw).table
        #expect(t.kind == "gpt")
        #expect(t.warnings.contains { $0.contains("hybrid") }, "\(t.warnings)")
        Self.compare(t, theirs, "hybrid")
    }

    @Test func gptEntriesCRCMismatchIsWarned() throws {
        let dir = try TempDir("parts")
        let raw = try Self.makeDisk(dir, "gpt.raw", Self.layouts[3].1)
        let h = try #require(FileHandle(forUpdatingAtPath: raw))
        try h.seek(toOffset: 1024 + 56 + 2)  // a byte of entry 1's name
        h.write(Data([0x41]))
        try h.close()
        let t = try PartitionReport.read(raw).table
        #expect(t.warnings.contains { $0.contains("CRC") })
    }
}
