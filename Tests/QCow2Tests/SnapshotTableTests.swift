import Foundation
import Testing
@testable import QCow2
import TestSupport

/// The snapshot table read natively against the real qemu-img: images with real snapshots (`qemu-img snapshot -c`),
/// then hand-corrupted entries. Where `qemu-img info` refuses the image, `imgtool info` refuses it and `verify` is
/// never "safe"; where qemu-img opens it, `imgtool info --output json` lists exactly qemu-img's `snapshots`.
@Suite(.serialized)
struct SnapshotTableTests {
    let dir: TempDir

    init() throws { dir = try TempDir("snaptable") }

    func f(_ name: String) -> String { dir.file(name) }

    /// An image with data and two snapshots ("first", "second tag"), made by qemu-img and qemu-io.
    func makeImage(_ name: String = "snap.qcow2") throws -> String {
        try QemuImg.run(["create", "-q", "-f", "qcow2", name, "8M"], cwd: dir.path)
        try qemuIO(["-c", "write -P 0x5a 0 128k", name])
        try QemuImg.run(["snapshot", "-c", "first", name], cwd: dir.path)
        try qemuIO(["-c", "write -P 0x6b 64k 64k", name])
        try QemuImg.run(["snapshot", "-c", "second tag", name], cwd: dir.path)
        return f(name)
    }

    func qemuIO(_ args: [String]) throws {
        guard let tool = which("qemu-io") else { throw ToolError("qemu-io is not installed (apt-get install qemu-utils)") }
        let r = try runProgram(tool, args, cwd: dir.path)
        guard r.status == 0 else { throw ToolError("qemu-io \(args) failed: \(r.stderr)") }
    }

    static func u32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(b[o + $1]) } }
    static func u64(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(b[o + $1]) } }

    /// Where the snapshot table starts, from the header.
    func tableOffset(_ path: String) throws -> UInt64 {
        let h = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)).prefix(72))
        return Self.u64(h, 64)
    }

    func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: offset)
        h.write(Data(bytes))
    }

    static func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32($0))) } }
    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) } }

    /// qemu-img info and imgtool info and verify on one image: refused by both or opened by both with the same
    /// snapshots; a refused image is never verified safe. Returns whether qemu-img opened it.
    @discardableResult
    func agree(_ path: String, _ what: String) throws -> Bool {
        let theirs = try runProgram(try QemuImg.path(), ["info", "--output=json", path])
        let ours = try ImgtoolBinary.run(["info", "--output", "json", path])
        let verify = try ImgtoolBinary.run(["verify", path])
        if theirs.status != 0 {
            #expect(ours.status == 1, "\(what): qemu-img refuses (\(theirs.stderr)) but imgtool info opened it: \(ours.stdout)")
            #expect(verify.status == 2, "\(what): qemu-img refuses (\(theirs.stderr)) but verify says: \(verify.stdout)")
            return false
        }
        #expect(ours.status == 0, "\(what): qemu-img opens it but imgtool info says \(ours.stderr)")
        guard ours.status == 0 else { return true }
        let a = try JSONValue.parse(ours.stdout)["snapshots"]
        let b = try JSONValue.parse(theirs.stdout)["snapshots"]
        #expect(a == b, "\(what): imgtool \(a?.description ?? "nil") vs qemu-img \(b?.description ?? "nil")")
        return true
    }

    @Test func realSnapshotsAreListedAsQemuImgListsThem() throws {
        let image = try makeImage()
        #expect(try agree(image, "two snapshots"))
        let info = try ImageInfo.read(image)
        #expect(info.snapshots.map(\.name) == ["first", "second tag"])
        #expect(info.snapshots.map(\.id) == ["1", "2"])
        #expect(info.snapshots.allSatisfy { $0.l1TableOffset % 65536 == 0 && $0.l1Size == 1 && $0.diskSize == 8 << 20 })
        let v = try ImgtoolBinary.run(["verify", image])
        #expect(v.status == 0, "\(v.stdout)")
        // A chain lists each layer's snapshots, as qemu-img info --backing-chain does.
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "snap.qcow2", "-F", "qcow2", "top.qcow2"], cwd: dir.path)
        try QemuImg.run(["snapshot", "-c", "on top", "top.qcow2"], cwd: dir.path)
        let theirs = try QemuImg.infoValue(f("top.qcow2"), chain: true).elements
        let ours = try ImgtoolBinary.run(["chain", "--output", "json", f("top.qcow2")])
        let layers = try JSONValue.parse(ours.stdout)["layers"]?.elements ?? []
        #expect(layers.count == 2 && theirs.count == 2)
        for (a, b) in zip(layers, theirs) { #expect(a["snapshots"] == b["snapshots"], "\(a["snapshots"]?.description ?? "nil") vs \(b["snapshots"]?.description ?? "nil")") }
        let human = try ImgtoolBinary.run(["chain", f("top.qcow2")])
        #expect(human.stdout.contains("1 internal snapshot: 1 \"on top\"") && human.stdout.contains("2 internal snapshots: 1 \"first\""), "\(human.stdout)")
    }

    @Test func tooMuchExtraDataIsRefusedWhereQemuRefusesIt() throws {
        let image = try makeImage()
        let table = try tableOffset(image)
        try patch(image, at: table + 36, Self.be32(1025))
        #expect(try !agree(image, "extra_data_size 1025"))
        let r = try ImgtoolBinary.run(["verify", image])
        #expect(r.stdout.contains("extra_data_size") && r.stdout.contains("entry 0"), "\(r.stdout)")
        do {
            _ = try ImageInfo.read(image)
            Issue.record("read an image qemu-img refuses")
        } catch {
            #expect(error == .snapshots(.tooMuchExtraData(path: image, entry: 0, offset: table, size: 1025)))
        }
    }

    @Test func extraDataUpToTheLimitIsReadAsQemuReadsIt() throws {
        // 1024 bytes of extra data: accepted; the ID and name are then read from further on, as QEMU reads them.
        let image = try makeImage()
        let table = try tableOffset(image)
        try patch(image, at: table + 36, Self.be32(1024))
        #expect(try agree(image, "extra_data_size 1024"))
        // 16 bytes: no icount, and the ID starts where the icount was (zeros: an empty ID).
        let other = try makeImage("sixteen.qcow2")
        try patch(other, at: try tableOffset(other) + 36, Self.be32(16))
        #expect(try agree(other, "extra_data_size 16"))
        #expect(try ImageInfo.read(other).snapshots.first?.icount == nil)
    }

    @Test func aNameLongerThanTheTableReadsOnAsQemuReads() throws {
        let image = try makeImage()
        let table = try tableOffset(image)
        try patch(image, at: table + 14, Self.be16(65535))
        #expect(try agree(image, "name_size 65535"))
        // The table now runs past the end of the file: qemu-img reads zeros there, verify does not trust it.
        let v = try ImgtoolBinary.run(["verify", image])
        #expect(v.status == 2, "\(v.stdout)")
    }

    @Test func snapshotL1TablesAreCheckedAsQemuImgCheckChecksThem() throws {
        for (name, field, value) in [("unaligned", 0, Self.be64(0x10200)), ("past-end", 0, Self.be64(1 << 40)), ("too-large", 8, Self.be32(5_000_000))] {
            let image = try makeImage(name + ".qcow2")
            try patch(image, at: try tableOffset(image) + UInt64(field), value)
            // qemu-img info opens these (it reads the L1 table only to load the snapshot), and so does imgtool info.
            try agree(image, name)
            // qemu-img check calls such an entry corrupt; verify calls the image unsafe and names the field.
            let check = try runProgram(try QemuImg.path(), ["check", image])
            let v = try ImgtoolBinary.run(["verify", image])
            #expect(v.status == 2 && v.stdout.contains("snapshot 0"), "\(name): \(v.stdout)")
            if name != "past-end" { #expect(check.status != 0, "\(name): qemu-img check \(check.stdout)") }
        }
    }

    @Test func snapshotCountsBeyondTheTableAndTheLimit() throws {
        // One more entry than the table holds: QEMU reads on into what follows (zeros past the end of the file).
        let image = try makeImage()
        try patch(image, at: 60, Self.be32(3))
        try agree(image, "nb_snapshots 3")
        // Over QEMU's 65536: refused before the table is read.
        let over = try makeImage("over.qcow2")
        try patch(over, at: 60, Self.be32(65537))
        #expect(try !agree(over, "nb_snapshots 65537"))
    }

    /// The header may put the table anywhere below 2^63 (`qcow2_validate_table`), but QEMU reads each piece of it with
    /// `bdrv_pread`, which fails (EIO) for a request ending past `BDRV_MAX_LENGTH` (0x7FFF_FFFF_C000_0000): qemu-img
    /// info refuses the image ("Failed to read snapshot table: Input/output error") and qemu-img check fails with
    /// "Check failed: Input/output error". A table ending at or below the limit, past the end of the file, reads as
    /// zeros and opens. imgtool must draw the line at the same byte.
    @Test func aTableEndingPastWhatQemuCanReadIsRefused() throws {
        let limit: UInt64 = 0x7FFF_FFFF_C000_0000
        let cases: [(String, UInt64, UInt32, Bool)] = [
            ("one entry below the limit", limit - 65536, 1, true),
            ("1638 entries ending 16 bytes below the limit", limit - 65536, 1638, true),
            ("1639 entries ending past the limit", limit - 65536, 1639, false),
            ("one entry at the limit", limit, 1, false),
            ("one entry at the last aligned offset below 2^63", (UInt64(Int64.max) / 65536) * 65536 - 65536, 1, false),
        ]
        for (label, offset, count, opens) in cases {
            let image = try makeImage("limit-\(count)-\(offset).qcow2")
            try patch(image, at: 60, Self.be32(count) + Self.be64(offset))
            #expect(try agree(image, label) == opens, "\(label)")
            if offset == limit {
                #expect(throws: ImageInfo.Error.snapshots(.beyondReadLimit(path: image, entry: 0, offset: limit))) { try ImageInfo.read(image) }
            }
            let ours = try ImgtoolBinary.run(["check", image])
            let theirs = try runProgram(try QemuImg.path(), ["check", image])
            if opens {
                #expect(ours.status != 1 && theirs.status != 1, "\(label): imgtool \(ours.stdout) \(ours.stderr); qemu-img \(theirs.stderr)")
            } else {
                #expect(theirs.stderr.contains("Check failed: Input/output error"), "\(label): qemu-img \(theirs.stderr)")
                #expect(ours.status == 1 && ours.stderr.contains("Check failed: Input/output error"), "\(label): imgtool check \(ours.status) \(ours.stdout) \(ours.stderr)")
            }
        }
    }

    @Test func aTableOverSixtyFourMebibytesIsRefused() throws {
        // 520 entries of 40 + 2 × 65535 bytes (IDs and names of zeros: a sparse file): over QEMU's 64 MiB.
        let image = try makeImage()
        let table = try tableOffset(image)
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: image))
        var offset = table
        for _ in 0..<520 {
            offset = (offset + 7) & ~7
            try h.seek(toOffset: offset)
            h.write(Data(Self.be64(0) + Self.be32(0) + Self.be16(65535) + Self.be16(65535) + [UInt8](repeating: 0, count: 24)))
            offset += 40 + 2 * 65535
        }
        try h.truncate(atOffset: offset + 65536)
        try h.close()
        try patch(image, at: 60, Self.be32(520))
        #expect(try !agree(image, "a 68 MB table"))
        do {
            _ = try ImageInfo.read(image)
            Issue.record("read an image qemu-img refuses")
        } catch {
            guard case .snapshots(.tableTooBig(_, let entry, _, let length)) = error else { Issue.record("\(error)"); return }
            #expect(entry == 511 && length > QCow2Snapshot.maxTableSize)
        }
    }

    /// `refcount_table_clusters = 0`: qemu-img info refuses the image ("Image does not contain a reference count
    /// table"), so imgtool's reader does; opened for a check (as qemu-img check opens it) it is read.
    @Test func noRefcountTableIsRefusedExceptForACheck() throws {
        let path = try makeImage("norefs.qcow2")
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try h.seek(toOffset: 56)
        h.write(Data([0, 0, 0, 0]))
        try h.close()
        let qemu = try runProgram(try QemuImg.path(), ["info", path])
        #expect(qemu.status != 0 && qemu.stderr.contains("reference count table"), "\(qemu.stderr)")
        #expect(throws: ImageInfo.Error.self) { try ImageInfo.read(path) }
        #expect((try? ImageInfo.read(path, mode: .check)) != nil)
    }
}
