import Foundation
import Testing
@testable import QCow2
import TestSupport

/// The allocation map reader on images qemu-img made and then damaged: every bad table is refused with the layer,
/// the table and the offset named, never a crash, a hang or a huge allocation.
struct SpaceMapTests {
    let dir: TempDir
    init() throws { dir = try TempDir("spacemap") }

    func f(_ name: String) -> String { dir.file(name) }

    /// A 1 GiB qcow2 (64 KiB clusters: header 0, refcount table 64 KiB, refcount block 128 KiB, L1 192 KiB) with
    /// one data cluster (its L2 table at 256 KiB).
    func image(_ name: String = "img.qcow2", options: [String] = []) throws -> String {
        try QemuImg.run(["create", "-q", "-f", "qcow2"] + options + [f(name), "1G"])
        let io = try #require(which("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)")
        #expect(try runProgram(io, ["-c", "write -P 1 0 64k", f(name)]).status == 0)
        return f(name)
    }

    func poke(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try h.seek(toOffset: offset)
        h.write(Data(bytes))
        try h.close()
    }

    func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }

    func refused(_ path: String, _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try SpaceLedger.read(path)
            Issue.record("\(path) was not refused", sourceLocation: sourceLocation)
        } catch {
            for w in words + [path] { #expect(error.description.contains(w), "\(error) lacks \(w)", sourceLocation: sourceLocation) }
        }
    }

    @Test func sparseHugeImageIsCheap() throws {
        try QemuImg.run(["create", "-q", "-f", "qcow2", f("big.qcow2"), "100G"])
        let io = try #require(which("qemu-io"))
        #expect(try runProgram(io, ["-c", "write -P 1 0 64k", "-c", "write -P 2 50G 128k", "-c", "write -z 99G 64k", f("big.qcow2")]).status == 0)
        let ledger = try SpaceLedger.read(f("big.qcow2"))
        let layer = try #require(ledger.layers.first)
        #expect(layer.allocated == 256 << 10)
        #expect(layer.zero == 64 << 10)
        #expect(layer.runs.count == 3)
        #expect(layer.l2Present.count == 3)
        #expect(layer.hostData == 192 << 10)
        #expect(layer.metadata + layer.hostData + layer.unused + layer.snapshots == layer.fileSize)
    }

    /// What a snapshot alone holds is what `qemu-img snapshot -d` gives back (the file's unreferenced space grows by
    /// it); the bitmaps' directory, table and data are counted.
    @Test func snapshotAloneIsWhatDeletingFrees() throws {
        let p = try image()
        let io = try #require(which("qemu-io"))
        #expect(try runProgram(io, ["-c", "write -P 1 0 4M", p]).status == 0)
        try QemuImg.run(["snapshot", "-c", "s1", p])
        #expect(try runProgram(io, ["-c", "write -P 2 0 2M", "-c", "write -P 3 8M 1M", p]).status == 0)
        try QemuImg.run(["snapshot", "-c", "s2", p])
        try QemuImg.run(["bitmap", "--add", p, "b0"])
        #expect(try runProgram(io, ["-c", "write -P 4 16M 1M", p]).status == 0)
        let before = try #require(try SpaceLedger.read(p).layers.first)
        let held = try #require(before.held)
        #expect(held.snapshots.map(\.name) == ["s1", "s2"])
        let s1 = try #require(held.snapshots.first)
        #expect(s1.alone >= 2 << 20)  // the 2 MiB overwritten since
        #expect(held.bitmaps > 2 * 65536)  // table, one data cluster, the directory (its bytes in the file: it may end it)
        try QemuImg.run(["snapshot", "-d", "s1", p])
        let after = try #require(try SpaceLedger.read(p).layers.first)
        // Reopening the image stores the bitmaps again: their directory moves (out of the file's 32-byte tail cluster
        // into a whole free one), which takes what the bitmaps grew by.
        let moved = Int64(after.held?.bitmaps ?? 0) - Int64(held.bitmaps)
        #expect(Int64(after.unused + after.fileSize) - Int64(before.fileSize + before.unused) == Int64(s1.alone) - moved)
    }

    /// 65,535 snapshots that all point at one snapshot's tables: the walk stops at its budget with an error naming
    /// the tables, it does not read the same tables 65,535 times.
    @Test func thousandsOfSnapshotsOnOneTableEnd() throws {
        let p = try image()
        try QemuImg.run(["snapshot", "-c", "s", p])
        let io = try #require(which("qemu-io"))
        #expect(try runProgram(io, ["-c", "write -P 2 0 64k", p]).status == 0)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: p)))
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(bytes[at + $1]) } }
        let table = Int(u64(64))
        let extra = Int(bytes[table + 36]) << 24 | Int(bytes[table + 37]) << 16 | Int(bytes[table + 38]) << 8 | Int(bytes[table + 39])
        let idSize = Int(bytes[table + 12]) << 8 | Int(bytes[table + 13]), nameSize = Int(bytes[table + 14]) << 8 | Int(bytes[table + 15])
        let entry = Array(bytes[table..<(table + (40 + extra + idSize + nameSize + 7) / 8 * 8)])
        while bytes.count % 65536 != 0 { bytes.append(0) }
        let newTable = bytes.count
        for _ in 0..<65535 { bytes += entry }
        bytes.replaceSubrange(60..<64, with: [0, 0, 0xFF, 0xFF])  // nb_snapshots
        bytes.replaceSubrange(64..<72, with: be64(UInt64(newTable)))  // snapshots_offset
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        refused(p, ["snapshot and bitmap tables"])
    }

    @Test func l2PastTheEnd() throws {
        let p = try image()
        try poke(p, at: 196608, be64(1 << 63 | 0x100_0000_0000))
        refused(p, ["L1 entry 0", "past the end"])
    }

    @Test func l2Misaligned() throws {
        let p = try image()
        try poke(p, at: 196608, be64(1 << 63 | 0x40200))
        refused(p, ["L1 entry 0", "not cluster aligned"])
    }

    @Test func l2UsedTwice() throws {
        let p = try image()
        try poke(p, at: 196608 + 8, be64(1 << 63 | 0x40000))
        refused(p, ["L1 entry 1", "also L1 entry 0"])
    }

    @Test func l2OverlapsL1() throws {
        let p = try image()
        try poke(p, at: 196608, be64(1 << 63 | 0x30000))
        refused(p, ["L1 entry 0", "overlaps the L1 table"])
    }

    @Test func refcountBlockPastTheEnd() throws {
        let p = try image()
        try poke(p, at: 65536, be64(0x7000_0000_0000))
        refused(p, ["refcount table entry 0", "past the end"])
    }

    @Test func subclusterBothAllocatedAndZero() throws {
        let p = try image("ext.qcow2", options: ["-o", "extended_l2=on"])
        // The first L2 entry's bitmap (bytes 8...15 of the table at 256 KiB): subcluster 0 allocated and zero.
        try poke(p, at: 262144 + 8, be64(1 << 32 | 1))
        refused(p, ["L2 entry for cluster 0", "both allocated and zero"])
    }

    @Test func backingLoopIsABrokenChain() throws {
        try QemuImg.run(["create", "-q", "-f", "qcow2", f("a.qcow2"), "1M"])
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "-u", f("b.qcow2"), "1M"])
        try QemuImg.run(["rebase", "-q", "-u", "-b", "b.qcow2", "-F", "qcow2", f("a.qcow2")])
        do {
            _ = try SpaceLedger.read(f("b.qcow2"))
            Issue.record("a loop was followed")
        } catch {
            #expect(error.exitCode == 2)
            #expect(error.description.contains("loop"), "\(error)")
        }
    }

    @Test func unusedCountsLeaksAndTail() throws {
        let p = try image()
        // 1 MiB appended past the last cluster nothing references.
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: p))
        try h.truncate(atOffset: try #require(FileIdentity.of(path: p)).size + (1 << 20))
        try h.close()
        let layer = try #require(try SpaceLedger.read(p).layers.first)
        #expect(layer.unused == 1 << 20)
    }
}
