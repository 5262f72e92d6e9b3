import Foundation
import Testing
@testable import ImageOps
import QCow2
import TestSupport

/// The kernel's holders: an image attached to a loop device (mounted, at an offset, partitioned) is held by no
/// process, yet `who` must name the device and its mount and every change must refuse. Real losetup, mkfs.ext4 and
/// mount; needs root and /dev/loop-control (fails without them). The kernel here has no nbd and no device-mapper
/// module, so dm, md and nbd stacking is tested on a made-up sysfs tree (`DeviceStackTests`).
@Suite(.serialized)
struct LoopHolderTests {
    /// A raw disk with one partition at 1 MiB, an overlay on it, and a mount point.
    struct Disk {
        let f: SafetyFixture
        let mnt: String
        init() throws {
            f = try SafetyFixture()
            try f.qemu("create", "-q", "-f", "raw", "disk.raw", "64M")
            _ = try #require(which("sfdisk"), "sfdisk (fdisk) is needed")
            let r = try runProgram("/bin/sh", ["-c", "echo 'start=2048, type=83' | sfdisk -q \(shellQuote(f.path("disk.raw")))"])
            #expect(r.status == 0, "\(r.stderr)")
            try f.qemu("create", "-q", "-f", "qcow2", "-b", "disk.raw", "-F", "raw", "vm.cow")
            // An overlay whose base is gone: repointing it at disk.raw is what fix-backing would be asked.
            try f.qemu("create", "-q", "-f", "raw", "gone.raw", "64M")
            try f.qemu("create", "-q", "-f", "qcow2", "-b", "gone.raw", "-F", "raw", "stray.cow")
            try FileManager.default.removeItem(atPath: f.path("gone.raw"))
            mnt = try f.root.mkdir("mnt")
        }
        func digests() throws -> [String] { [try f.digest("disk.raw"), try f.digest("vm.cow"), try f.digest("stray.cow")] }
    }

    static func requireLoopSupport() throws {
        #expect(getuid() == 0, "loop tests need root")
        #expect(FileManager.default.fileExists(atPath: "/dev/loop-control"), "loop tests need /dev/loop-control")
        _ = try #require(which("losetup"), "losetup (util-linux) is needed")
        _ = try #require(which("mkfs.ext4"), "mkfs.ext4 (e2fsprogs) is needed")
    }

    static func run(_ args: [String]) throws -> String {
        let r = try runProgram(try #require(which(args[0])), Array(args.dropFirst()))
        guard r.status == 0 else { throw ToolError("\(args.joined(separator: " ")) failed: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Every change is refused with the device named, and nothing changes.
    func expectRefused(_ d: Disk, device: String, _ before: [String]) throws {
        let commit = try d.f.imgtool(["commit", "vm.cow"])
        #expect(commit.status == 1, "\(commit.stdout)\(commit.stderr)")
        #expect(commit.stderr.contains("in use by") && commit.stderr.contains(device), "\(commit.stderr)")
        let shrink = try d.f.imgtool(["resize", "disk.raw", "32M", "--shrink", "--force"])
        #expect(shrink.status == 1, "\(shrink.stdout)\(shrink.stderr)")
        #expect(shrink.stderr.contains(device), "\(shrink.stderr)")
        // The base is written through the device: no new overlay on it either.
        let overlay = try d.f.imgtool(["overlay", "disk.raw", "new.cow"])
        #expect(overlay.status == 1, "\(overlay.stdout)\(overlay.stderr)")
        #expect(overlay.stderr.contains(device), "\(overlay.stderr)")
        #expect(!d.f.exists("new.cow"))
        // Nor is an overlay repointed at it: its guest would read a disk that changes under it.
        let fix = try d.f.imgtool(["fix-backing", "stray.cow", "--to", "disk.raw"])
        #expect(fix.status == 1, "\(fix.stdout)\(fix.stderr)")
        #expect(fix.stderr.contains(device), "\(fix.stderr)")
        #expect(try d.digests() == before)
    }

    /// `mount -o loop,offset=…` as `partitions` prints it: the kernel's own loop device, no process.
    @Test func mountedAtOffsetIsHeld() throws {
        try Self.requireLoopSupport()
        let d = try Disk()
        let image = d.f.path("disk.raw")
        // mkfs on the partition through a loop device of our own, detached before mounting.
        let mk = try Self.run(["losetup", "-f", "--show", "-o", "1048576", image])
        defer { _ = try? Self.run(["losetup", "-d", mk]) }
        _ = try Self.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", mk])
        _ = try Self.run(["losetup", "-d", mk])
        _ = try Self.run(["mount", "-o", "loop,offset=1048576", image, d.mnt])
        defer { _ = try? Self.run(["umount", d.mnt]) }
        // Mounting writes the superblock: the digests are taken once the kernel has written what it had to.
        _ = try Self.run(["sync", "-f", d.mnt])
        let before = try d.digests()

        let who = try d.f.imgtool(["who", "disk.raw"])
        #expect(who.status == 2, "\(who.stdout)\(who.stderr)")
        #expect(who.stdout.contains("loop device /dev/loop"), "\(who.stdout)")
        #expect(who.stdout.contains("at offset 1048576"), "\(who.stdout)")
        #expect(who.stdout.contains("mounted on \(d.mnt)"), "\(who.stdout)")
        let json = try JSONValue.parse(try d.f.imgtool(["who", "disk.raw", "--output", "json"]).stdout)
        #expect(json["held"] == .bool(true))
        let dev = try #require(json["devices"]?.elements.first)
        #expect(dev["kind"] == .string("loop"))
        #expect(dev["offset"] == .int(1048576))
        #expect(dev["mount-points"] == .array([.string(d.mnt)]))
        guard case .string(let node)? = dev["device"] else { Issue.record("no device in \(json)"); return }
        try expectRefused(d, device: node, before)
    }

    /// `losetup -P` (as `mbr-wrap` prints): held while attached, even unmounted; where this kernel makes partition
    /// devices (this sandbox's does not), the filesystem on partition 1 is mounted and found through the partition
    /// (the made-up tree in `DeviceStackTests` covers the partition path everywhere). Then the image is renamed:
    /// sysfs's backing_file goes stale, the kernel's device and inode do not.
    @Test func partitionedLoopAndRenamedImageAreHeld() throws {
        try Self.requireLoopSupport()
        let d = try Disk()
        let loop = try Self.run(["losetup", "-f", "--show", "-P", d.f.path("disk.raw")])
        defer { _ = try? Self.run(["losetup", "-d", loop]) }
        let name = URL(fileURLWithPath: loop).lastPathComponent
        var mounted = false
        if let dev = try? String(contentsOfFile: "/sys/block/\(name)/\(name)p1/dev", encoding: .utf8) {
            // No udev here: the partition's node is made from what sysfs says.
            let parts = dev.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":")
            let node = d.f.root.file("p1")
            _ = try Self.run(["mknod", node, "b", String(parts[0]), String(parts[1])])
            _ = try Self.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", node])
            _ = try Self.run(["mount", node, d.mnt])
            _ = try Self.run(["sync", "-f", d.mnt])
            mounted = true
        }
        defer { if mounted { _ = try? Self.run(["umount", d.mnt]) } }
        let before = try d.digests()

        let who = try d.f.imgtool(["who", "disk.raw"])
        #expect(who.status == 2, "\(who.stdout)\(who.stderr)")
        #expect(who.stdout.contains("loop device \(loop)"), "\(who.stdout)")
        if mounted { #expect(who.stdout.contains("mounted on \(d.mnt)"), "\(who.stdout)") }
        try expectRefused(d, device: loop, before)

        // Renamed: the new name is held just the same, and the old name is free (another file may come there).
        try FileManager.default.moveItem(atPath: d.f.path("disk.raw"), toPath: d.f.path("renamed.raw"))
        let moved = try d.f.imgtool(["who", "renamed.raw"])
        #expect(moved.status == 2, "\(moved.stdout)")
        #expect(moved.stdout.contains(loop), "\(moved.stdout)")
        try d.f.qemu("create", "-q", "-f", "raw", "disk.raw", "1M")
        let other = try d.f.imgtool(["who", "disk.raw"])
        #expect(other.status == 0, "\(other.stdout)")
        #expect(try d.f.digest("renamed.raw") == before[0])
    }

    /// A read-only loop device, not mounted: still held (no change), but nobody writes the base, so an overlay on it
    /// is fine; after `losetup -d` the image is free again.
    @Test func readOnlyLoopAllowsOverlayOnly() throws {
        try Self.requireLoopSupport()
        let d = try Disk()
        let before = try d.digests()
        let loop = try Self.run(["losetup", "-f", "--show", "-r", d.f.path("disk.raw")])
        var attached = true
        defer { if attached { _ = try? Self.run(["losetup", "-d", loop]) } }
        let json = try JSONValue.parse(try d.f.imgtool(["who", "disk.raw", "--output", "json"]).stdout)
        #expect(json["devices"]?.elements.first?["read-only"] == .bool(true), "\(json)")
        let shrink = try d.f.imgtool(["resize", "disk.raw", "32M", "--shrink", "--force"])
        #expect(shrink.status == 1 && shrink.stderr.contains(loop), "\(shrink.stderr)")
        #expect(try d.digests() == before)
        let overlay = try d.f.imgtool(["overlay", "disk.raw", "new.cow"])
        #expect(overlay.status == 0, "\(overlay.stderr)")
        _ = try Self.run(["losetup", "-d", loop])
        attached = false
        let who = try d.f.imgtool(["who", "disk.raw"])
        #expect(who.status == 0, "\(who.stdout)")
    }

    /// An image that is itself a block device, mounted: held by its mount, and no base for a new overlay.
    @Test func mountedBlockDeviceImageIsHeld() throws {
        try Self.requireLoopSupport()
        let d = try Disk()
        let loop = try Self.run(["losetup", "-f", "--show", d.f.path("disk.raw")])
        defer { _ = try? Self.run(["losetup", "-d", loop]) }
        _ = try Self.run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop])
        let free = try d.f.imgtool(["who", loop])
        #expect(free.status == 0, "a block device nobody mounted is free: \(free.stdout)")
        _ = try Self.run(["mount", loop, d.mnt])
        defer { _ = try? Self.run(["umount", d.mnt]) }
        let who = try d.f.imgtool(["who", loop])
        #expect(who.status == 2, "\(who.stdout)\(who.stderr)")
        #expect(who.stdout.contains("block device \(loop)") && who.stdout.contains("mounted on \(d.mnt)"), "\(who.stdout)")
        let overlay = try d.f.imgtool(["overlay", loop, "new.cow"])
        #expect(overlay.status == 1, "\(overlay.stdout)\(overlay.stderr)")
        #expect(!d.f.exists("new.cow"))
    }

    /// qemu-nbd's `--connect` device, from its command line (the kernel here has no nbd to connect).
    @Test func nbdDeviceFromCommandLine() {
        #expect(Readers.nbdDevices(commandLine: ["/usr/bin/qemu-nbd", "-c", "/dev/nbd0", "disk.raw"]) == ["/dev/nbd0"])
        #expect(Readers.nbdDevices(commandLine: ["qemu-nbd", "--connect=/dev/nbd3", "-r", "disk.raw"]) == ["/dev/nbd3"])
        #expect(Readers.nbdDevices(commandLine: ["qemu-nbd", "-c/dev/nbd1", "disk.raw"]) == ["/dev/nbd1"])
        #expect(Readers.nbdDevices(commandLine: ["qemu-nbd", "--connect", "/dev/nbd2/../sda", "x"]).isEmpty)
        #expect(Readers.nbdDevices(commandLine: ["sh", "-c", "/dev/nbd0"]).isEmpty)
    }
}

/// The stacking over a loop device (dm tables, md arrays, partitions, mounts, an nbd device's server PID) on a
/// made-up sysfs tree: this kernel has neither device-mapper nor nbd nor md, so `dmsetup create` cannot run here.
struct DeviceStackTests {
    @Test func dmAndMdOverLoopAreFoundWithTheirMounts() throws {
        let t = try TempDir("sysfs")
        let image = t.file("disk.raw")
        try t.write("disk.raw", [UInt8](repeating: 0, count: 4096))
        func put(_ path: String, _ text: String) throws {
            try FileManager.default.createDirectory(atPath: (t.file(path) as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: URL(fileURLWithPath: t.file(path)))
        }
        // loop9 serves the image (no /dev node: the backing_file name is checked by device and inode), partition
        // loop9p1 carries dm-0 ("vg-root", mounted), dm-0 carries dm-1, loop9 itself carries md0 (mounted twice).
        try put("sys/block/loop9/loop/backing_file", image + "\n")
        try put("sys/block/loop9/loop/offset", "16384\n")
        try put("sys/block/loop9/ro", "0\n")
        try put("sys/block/loop9/loop9p1/partition", "1\n")
        try put("sys/class/block/loop9/dev", "7:9\n")
        try put("sys/class/block/loop9p1/dev", "259:3\n")
        try put("sys/class/block/loop9p1/holders/dm-0/x", "")
        try put("sys/class/block/dm-0/dev", "253:0\n")
        try put("sys/class/block/dm-0/dm/name", "vg-root\n")
        try put("sys/class/block/dm-0/holders/dm-1/x", "")
        try put("sys/class/block/dm-1/dev", "253:1\n")
        try put("sys/class/block/loop9/holders/md0/x", "")
        try put("sys/class/block/md0/dev", "9:0\n")
        // A loop device serving another file, and one with nothing attached.
        try put("sys/block/loop8/loop/backing_file", "/nonexistent\n")
        try put("sys/block/loop7/ro", "0\n")
        // nbd0 is served by PID 4242.
        try put("sys/block/nbd0/pid", "4242\n")
        try put("sys/class/block/nbd0/dev", "43:0\n")
        try put("mountinfo", """
            30 1 253:0 / /mnt/root\\040dir rw - ext4 /dev/mapper/vg-root rw
            31 1 9:0 / /mnt/raid rw - ext4 /dev/md0 rw
            32 1 9:0 /sub /mnt/raid2 rw - ext4 /dev/md0 rw
            33 1 43:0 / /mnt/nbd rw - ext4 /dev/nbd0 rw
            """)
        var kernel = Readers.Kernel()
        kernel.sys = t.file("sys"); kernel.dev = t.file("dev"); kernel.mountinfo = t.file("mountinfo")
        let id = try #require(FileIdentity.of(path: image))
        let found = Readers.devices(over: FileKey(id), pids: [], kernel: kernel)
        let dev = t.file("dev")
        #expect(found.map(\.device) == ["\(dev)/loop9", "\(dev)/md0", "\(dev)/mapper/vg-root", "\(dev)/dm-1"], "\(found)")
        #expect(found.first?.offset == 16384)
        #expect(found.first(where: { $0.kind == .dm })?.mountPoints == ["/mnt/root dir"])
        #expect(found.first(where: { $0.kind == .dm })?.over == ["\(dev)/loop9p1"])
        #expect(found.first(where: { $0.kind == .md })?.mountPoints == ["/mnt/raid", "/mnt/raid2"])
        // The nbd device counts only when its server holds the file.
        let withNbd = Readers.devices(over: FileKey(id), pids: [4242], kernel: kernel)
        #expect(withNbd.contains { $0.kind == .nbd && $0.device == "\(dev)/nbd0" && $0.mountPoints == ["/mnt/nbd"] }, "\(withNbd)")
        let readers = Readers(use: InUse(holders: [], lock: .none), devices: found)
        #expect(readers.isHeld && readers.isWritten)
        #expect(readers.summary.contains("mounted on /mnt/root dir"))
    }
}
