import Foundation
import Testing
import TestSupport

/// When a GPT counts, as Linux (`is_pmbr_valid`, block/partitions/efi.c) and sfdisk (libfdisk's `valid_pmbr`) decide:
/// only behind a protective MBR (an 0xEE entry starting at LBA 1). Hybrid ISOs made by xorriso and isohybrid carry a
/// GPT behind an MBR that does not protect it: the MBR is the table. And a valid GPT whose entry array is large
/// (sfdisk's `table-length: 16384` makes 2 MiB) is read whole. Every case is made by the real tools and compared
/// with `sfdisk -J`; `offset` agrees with the listing.
@Suite(.serialized)
struct GPTRuleTests {
    static func tool(_ name: String, _ package: String) throws -> String {
        try #require(which(name), "\(name) is needed (apt-get install \(package); scripts/setup --tests)")
    }

    /// `partitions` (JSON) against `sfdisk -J`, the human output, and `offset` for every entry.
    static func expectSfdiskAgrees(_ path: String) throws -> (json: Typed, human: String) {
        let sfdisk = try tool("sfdisk", "fdisk")
        let ours = try ImgtoolBinary.run(["partitions", "--output", "json", path])
        #expect(ours.status == 0, "\(ours.stderr)")
        let json = try typedJSON(ours.stdout)
        try ThirdPartyTests.expectSameTable(json, try runProgram(sfdisk, ["-J", path]), path)
        if case .object(let t) = json, case .array(let parts)? = t["partitions"] {
            for case .object(let p) in parts {
                guard case .int(let n)? = p["number"], case .int(let off)? = p["offset"] else { continue }
                let r = try ImgtoolBinary.run(["offset", path, String(n)])
                #expect(r.status == 0 && r.stdout == "\(off)\n", "offset \(n): \(r.stdout)\(r.stderr)")
            }
        }
        let human = try ImgtoolBinary.run(["partitions", path])
        #expect(human.status == 0, "\(human.stderr)")
        return (json, human.stdout)
    }

    /// A tree for an ISO: isolinux for BIOS, a FAT image for EFI (what a distribution's installer ISO carries).
    static func isoTree(_ dir: TempDir) throws -> String {
        let root = try dir.mkdir("tree")
        try dir.mkdir("tree/isolinux")
        try dir.mkdir("tree/efi")
        let isolinux = "/usr/lib/ISOLINUX/isolinux.bin"
        #expect(FileManager.default.fileExists(atPath: isolinux), "isolinux is needed (apt-get install isolinux)")
        try FileManager.default.copyItem(atPath: isolinux, toPath: root + "/isolinux/isolinux.bin")
        _ = FileManager.default.createFile(atPath: root + "/efi/efiboot.img", contents: Data(repeating: 0, count: 65536))
        return root
    }

    static let eltorito = ["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
                           "-boot-info-table", "-eltorito-alt-boot", "-e", "efi/efiboot.img", "-no-emul-boot"]

    /// xorriso's hybrid ISO with `-isohybrid-gpt-basdat`: an MBR with a type-0 entry at sector 0 and an EFI entry,
    /// and a valid GPT listing the same areas as "ISOHybrid". sfdisk reads the MBR; so does imgtool, and it says
    /// the GPT is there.
    @Test func xorrisoHybridISOReadsTheMBRAndNamesTheGPT() throws {
        let xorriso = try Self.tool("xorriso", "xorriso")
        let dir = try TempDir("gptrule")
        let tree = try Self.isoTree(dir)
        let mbr = "/usr/lib/ISOLINUX/isohdpfx.bin"
        let iso = dir.file("hybrid.iso")
        let r = try runProgram(xorriso, ["-as", "mkisofs", "-quiet", "-o", iso, "-isohybrid-mbr", mbr] + Self.eltorito + ["-isohybrid-gpt-basdat", tree])
        #expect(r.status == 0, "\(r.stderr)")
        let sector1 = try #require(FileHandle(forReadingAtPath: iso)).readData(ofLength: 520).suffix(8)
        #expect(Array(sector1) == Array("EFI PART".utf8), "xorriso wrote no GPT: the case is not made")
        let (json, human) = try Self.expectSfdiskAgrees(iso)
        if case .object(let t) = json { #expect(t["table"] == .string("mbr")) }
        #expect(human.contains("a GPT is present too"), "\(human)")
        // The GPT is not the table, but its backup header is still in the last sector: a shrink is refused for it.
        let before = try fileDigest(iso)
        let shrink = try ImgtoolBinary.run(["resize", iso, "512K", "--shrink"])
        #expect(shrink.status == 1 && shrink.stderr.contains("GPT behind its MBR"), "\(shrink.stderr)")
        #expect(try fileDigest(iso) == before)
    }

    /// isohybrid --uefi (syslinux-utils) on a plain El Torito ISO: the same shape, made by the other tool.
    @Test func isohybridUEFIReadsTheMBRAndNamesTheGPT() throws {
        let xorriso = try Self.tool("xorriso", "xorriso")
        let isohybrid = try Self.tool("isohybrid", "syslinux-utils")
        let dir = try TempDir("gptrule")
        let tree = try Self.isoTree(dir)
        let iso = dir.file("plain.iso")
        let made = try runProgram(xorriso, ["-as", "mkisofs", "-quiet", "-o", iso] + Self.eltorito + [tree])
        #expect(made.status == 0, "\(made.stderr)")
        let r = try runProgram(isohybrid, ["-u", iso])
        #expect(r.status == 0, "\(r.stderr)")
        let (json, human) = try Self.expectSfdiskAgrees(iso)
        if case .object(let t) = json { #expect(t["table"] == .string("mbr")) }
        #expect(human.contains("a GPT is present too"), "\(human)")
    }

    /// sgdisk's hybrid MBR (0xEE at LBA 1 beside real entries) is still a GPT to both: nothing changed there.
    @Test func aHybridMBRWithItsProtectiveEntryIsStillAGPT() throws {
        let sgdisk = try Self.tool("sgdisk", "gdisk")
        let dir = try TempDir("gptrule")
        let disk = dir.file("hybrid.raw")
        try QemuImg.run(["create", "-q", "-f", "raw", disk, "8M"])
        #expect(try runProgram(sgdisk, ["-n", "1:2048:6143", "-t", "1:0700", "-c", "1:data", disk]).status == 0)
        #expect(try runProgram(sgdisk, ["-h", "1", disk]).status == 0)
        let (json, human) = try Self.expectSfdiskAgrees(disk)
        if case .object(let t) = json { #expect(t["table"] == .string("gpt")) }
        #expect(!human.contains("a GPT is present too"), "\(human)")
    }

    /// sfdisk's `table-length: 16384`: a 2 MiB entry array (more than the 1 MiB imgtool refused), valid by the UEFI
    /// spec and Linux. Partition 1 is listed and has an offset, on the raw disk and through a qcow2.
    @Test(arguments: [128, 16384])
    func aLargeEntryArrayIsReadWhole(tableLength: Int) throws {
        let sfdisk = try Self.tool("sfdisk", "fdisk")
        let dir = try TempDir("gptrule")
        let disk = dir.file("big.raw")
        try QemuImg.run(["create", "-q", "-f", "raw", disk, "16M"])
        let script = "label: gpt\ntable-length: \(tableLength)\nstart=8192, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"data\"\n"
        #expect(shell("printf %s \(shellQuote(script)) | \(shellQuote(sfdisk)) -q \(shellQuote(disk))") == 0)
        let (json, _) = try Self.expectSfdiskAgrees(disk)
        guard case .object(let t) = json, case .array(let parts)? = t["partitions"] else { Issue.record("no partitions"); return }
        #expect(parts.count == 1)
        let r = try ImgtoolBinary.run(["offset", disk, "1"])
        #expect(r.stdout == "\(8192 * 512)\n", "\(r.stdout)\(r.stderr)")
        try QemuImg.run(["convert", "-O", "qcow2", disk, dir.file("big.qcow2")])
        let through = try ImgtoolBinary.run(["partitions", "--output", "json", dir.file("big.qcow2")])
        #expect(try typedJSON(through.stdout) == json, "through qcow2: \(through.stdout)")
    }

    /// `table-length: 100000`: a 12.5 MiB entry array (over Linux's 4 MiB kmalloc bound, within the UEFI spec and
    /// read by sfdisk), read 1 MiB at a time. (sfdisk makes it: sgdisk's --resize-table takes minutes at this size.)
    @Test func aHundredThousandEntriesAreRead() throws {
        let sfdisk = try Self.tool("sfdisk", "fdisk")
        let dir = try TempDir("gptrule")
        let disk = dir.file("wide.raw")
        try QemuImg.run(["create", "-q", "-f", "raw", disk, "64M"])
        let script = "label: gpt\ntable-length: 100000\nstart=26624, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"data\"\n"
        #expect(shell("printf %s \(shellQuote(script)) | \(shellQuote(sfdisk)) -q \(shellQuote(disk))") == 0)
        let (json, _) = try Self.expectSfdiskAgrees(disk)
        guard case .object(let t) = json, case .array(let parts)? = t["partitions"] else { Issue.record("no partitions"); return }
        #expect(parts.count == 1)
        if case .array(let w)? = t["warnings"] { #expect(w.isEmpty, "\(w)") }
    }
}
