import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// `resize --shrink` of a disk whose filesystem has no partition table (or outgrows its partition): the
/// filesystem's own superblock says how far it reaches. Below that: refused, every byte unchanged; at it: done,
/// and the filesystem's checker is clean.
@Suite(.serialized)
struct FilesystemShrinkTests {
    let dir: TempDir
    let env: [String: String]

    init() throws {
        dir = try TempDir("fsshrink")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
    }

    func f(_ name: String) -> String { dir.file(name) }
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: dir.path, environment: env) }

    /// Runs a tool that must be installed (the test fails without it).
    func tool(_ name: String, _ args: [String]) throws {
        guard let path = which(name) else { throw ToolError("\(name) is not installed (scripts/setup --tests)") }
        let r = try runProgram(path, args, cwd: dir.path)
        guard r.status == 0 else { throw ToolError("\(name) \(args) failed: \(r.stdout)\(r.stderr)") }
    }

    /// An empty sparse raw disk of `size` bytes.
    func disk(_ name: String, _ size: String) throws {
        try QemuImg.run(["create", "-q", "-f", "raw", name, size], cwd: dir.path)
    }

    /// Refused at `below` (one sector short of the filesystem, naming `fs`), unchanged; accepted at `fsSize`.
    func refusesBelowAndAcceptsAt(_ image: String, fs: String, below: UInt64, fsSize: UInt64, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try fileDigest(f(image))
        let r = try imgtool("resize", image, String(below), "--shrink")
        #expect(r.status == 1 && r.stderr.contains(fs), "\(r.stdout)\(r.stderr)", sourceLocation: sourceLocation)
        #expect(try fileDigest(f(image)) == before, "a refusal changes nothing", sourceLocation: sourceLocation)
        let ok = try imgtool("resize", image, String(fsSize), "--shrink")
        #expect(ok.status == 0, "\(ok.stderr)", sourceLocation: sourceLocation)
        let info = try #require(try QemuImg.info(f(image)) as? [String: Any])
        #expect(info["virtual-size"] as? Int == Int(fsSize), sourceLocation: sourceLocation)
        if image.hasSuffix(".qcow2") { try QemuImg.run(["check", "-q", f(image)]) }
    }

    @Test func ext4OnTheWholeDisk() throws {
        try disk("disk.raw", "64M")
        try tool("mkfs.ext4", ["-q", "-F", "disk.raw", "32M"])
        try refusesBelowAndAcceptsAt("disk.raw", fs: "ext4 filesystem of 32 MiB", below: (32 << 20) - 512, fsSize: 32 << 20)
        try tool("e2fsck", ["-fn", "disk.raw"])
    }

    @Test func ext4ThroughAQCow2Chain() throws {
        try disk("disk.raw", "64M")
        try tool("mkfs.ext4", ["-q", "-F", "disk.raw", "32M"])
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "disk.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        try refusesBelowAndAcceptsAt("top.qcow2", fs: "ext4", below: (32 << 20) - 512, fsSize: 32 << 20)
        try QemuImg.run(["convert", "-O", "raw", f("top.qcow2"), f("guest.raw")])
        try tool("e2fsck", ["-fn", "guest.raw"])
    }

    @Test func ext4PastItsPartitionsEnd() throws {
        // Partition 1 spans 1 MiB to 17 MiB, but its filesystem (made before the partition was shrunk) 32 MiB.
        try disk("disk.raw", "64M")
        try tool("mkfs.ext4", ["-q", "-F", "-E", "offset=1048576", "disk.raw", "32M"])
        guard let sfdisk = which("sfdisk") else { throw ToolError("sfdisk is not installed") }
        let r = try runProgram("/bin/sh", ["-c", "echo 'start=2048, size=32768, type=83' | \(sfdisk) -q disk.raw"], cwd: dir.path)
        #expect(r.status == 0, "\(r.stderr)")
        try refusesBelowAndAcceptsAt("disk.raw", fs: "partition 1 holds a ext4", below: (33 << 20) - 512, fsSize: 33 << 20)
    }

    @Test func xfs() throws {
        try disk("disk.raw", "1G")
        try tool("mkfs.xfs", ["-q", "-f", "-d", "size=512m", "disk.raw"])
        try refusesBelowAndAcceptsAt("disk.raw", fs: "xfs filesystem of 512 MiB", below: (512 << 20) - 512, fsSize: 512 << 20)
        try tool("xfs_repair", ["-n", "-f", "disk.raw"])
    }

    @Test func btrfs() throws {
        try disk("disk.raw", "512M")
        try tool("mkfs.btrfs", ["-q", "-f", "-b", "256m", "disk.raw"])
        try refusesBelowAndAcceptsAt("disk.raw", fs: "btrfs filesystem of 256 MiB", below: (256 << 20) - 512, fsSize: 256 << 20)
        try tool("btrfs", ["check", "--readonly", "disk.raw"])
    }

    @Test func fat() throws {
        try disk("disk.raw", "64M")
        try tool("mkfs.fat", ["disk.raw", "32768"])
        try refusesBelowAndAcceptsAt("disk.raw", fs: "vfat filesystem of 32 MiB", below: (32 << 20) - 512, fsSize: 32 << 20)
        try tool("fsck.fat", ["-n", "disk.raw"])
    }

    @Test func ntfs() throws {
        try disk("disk.raw", "64M")
        try tool("mkntfs", ["-q", "-F", "-Q", "-s", "512", "disk.raw", "65536"])
        try refusesBelowAndAcceptsAt("disk.raw", fs: "ntfs filesystem of 32 MiB", below: (32 << 20) - 512, fsSize: 32 << 20)
        try tool("ntfsfix", ["-n", "disk.raw"])
    }

    @Test func swap() throws {
        try disk("disk.raw", "64M")
        try tool("mkswap", ["-q", "disk.raw", "32768"])
        try refusesBelowAndAcceptsAt("disk.raw", fs: "swap filesystem of 32 MiB", below: (32 << 20) - 512, fsSize: 32 << 20)
    }

    @Test func lvm2PhysicalVolume() throws {
        try disk("disk.raw", "64M")
        // pvcreate takes block devices only: the file goes through a loop device, detached before imgtool runs.
        guard let losetup = which("losetup") else { throw ToolError("losetup is not installed") }
        let attach = try runProgram(losetup, ["-f", "--show", f("disk.raw")])
        let loop = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(attach.status == 0 && loop.hasPrefix("/dev/loop"), "\(attach.stderr)")
        do {
            defer { _ = try? runProgram(losetup, ["-d", loop]) }
            try tool("pvcreate", ["-q", "-y", "--setphysicalvolumesize", "32m", loop])
        }
        try refusesBelowAndAcceptsAt("disk.raw", fs: "LVM2_member filesystem of 32 MiB", below: (32 << 20) - 512, fsSize: 32 << 20)
    }

    /// Any cut of a LUKS container is refused: its encrypted data runs to the end of the disk, whatever the
    /// header's size (found by the hostile review: a shrink to just past the header was accepted and cut 32 MiB of
    /// ciphertext). `--force` cuts anyway.
    func refusesEveryCut(_ image: String, size: UInt64, header: UInt64, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try fileDigest(f(image))
        for target in [size - 512, size / 2, header] {
            let r = try imgtool("resize", image, String(target), "--shrink")
            #expect(r.status == 1 && r.stderr.contains("crypto_LUKS") && r.stderr.contains("encrypted data runs to the end"),
                    "\(r.stdout)\(r.stderr)", sourceLocation: sourceLocation)
            #expect(try fileDigest(f(image)) == before, "a refusal changes nothing", sourceLocation: sourceLocation)
        }
        let forced = try imgtool("resize", image, String(size / 2), "--shrink", "--force")
        #expect(forced.status == 0, "\(forced.stderr)", sourceLocation: sourceLocation)
    }

    @Test func luks2IsNeverCut() throws {
        try disk("disk.raw", "64M")
        try dir.write("key", Array("imgtool-test-key".utf8))
        try tool("cryptsetup", ["luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                                "--key-file", "key", "disk.raw"])
        // cryptsetup's default LUKS2 data offset is 16 MiB.
        try refusesEveryCut("disk.raw", size: 64 << 20, header: 16 << 20)
        try tool("cryptsetup", ["luksDump", "disk.raw"])
    }

    @Test func luks1IsNeverCut() throws {
        try disk("disk.raw", "64M")
        try dir.write("key", Array("imgtool-test-key".utf8))
        try tool("cryptsetup", ["luksFormat", "-q", "--type", "luks1", "--iter-time", "1", "--key-file", "key", "disk.raw"])
        // A bare LUKS1 file is QEMU's luks format, which resize does not take: the guest's disk is a qcow2's.
        try QemuImg.run(["convert", "-f", "raw", "-O", "qcow2", "disk.raw", "disk.qcow2"], cwd: dir.path)
        // cryptsetup aligns LUKS1 payload at 2 MiB (4096 sectors).
        try refusesEveryCut("disk.qcow2", size: 64 << 20, header: 2 << 20)
        try QemuImg.run(["check", "-q", f("disk.qcow2")])
    }

    @Test func forceCutsAnyway() throws {
        try disk("disk.raw", "64M")
        try tool("mkfs.ext4", ["-q", "-F", "disk.raw", "32M"])
        let r = try imgtool("resize", "disk.raw", "16M", "--shrink", "--force")
        #expect(r.status == 0, "\(r.stderr)")
    }
}
