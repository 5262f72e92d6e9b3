import Foundation
import Testing
@testable import ImageOps
import TestSupport

/// Every change hands qemu-img a qcow2's external data file by descriptor: run from another folder that holds a
/// decoy file of the data file's (relative) name, the decoy is untouched and the real data file gets the change.
@Suite(.serialized)
struct DataFileTests {
    let dir: TempDir
    let env: [String: String]
    let decoy = [UInt8](repeating: 0xDC, count: 64 << 10)

    init() throws {
        dir = try TempDir("datafile")
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = dir.path + "/state"
        env = e
        _ = try dir.mkdir("vm")
        _ = try dir.mkdir("elsewhere")
        try dir.write("elsewhere/img.data", decoy)
    }

    func f(_ name: String) -> String { dir.file(name) }
    /// imgtool run from elsewhere/, naming the image as ../vm/NAME.
    func imgtool(_ args: String...) throws -> RunResult { try ImgtoolBinary.run(args, cwd: f("elsewhere"), environment: env) }

    /// vm/img.qcow2 with its data in vm/img.data (recorded relative), 0x5a in its first MiB; `backing`: over vm/base.raw.
    func makeImage(raw: Bool = false, backing: Bool = false) throws {
        var args = ["create", "-q", "-f", "qcow2", "-o", "data_file=img.data" + (raw ? ",data_file_raw=on" : "")]
        if backing {
            try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: f("vm"))
            try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 4M", "base.raw"], cwd: f("vm"))
            try QemuImg.run(["create", "-q", "-f", "raw", "other.raw", "4M"], cwd: f("vm"))
            try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 4M", "other.raw"], cwd: f("vm"))
            args += ["-b", "base.raw", "-F", "raw"]
        }
        try QemuImg.run(args + ["img.qcow2", "4M"], cwd: f("vm"))
        try ExpectedDisk.qemuIO(["-c", "write -P 0x5a 0 1M", "img.qcow2"], cwd: f("vm"))
    }

    /// The decoy is byte-identical, the image is clean and still reads 0x5a from its data file.
    func checkAfter() throws {
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: f("elsewhere/img.data")))) == decoy, "the decoy in the working folder was changed")
        try QemuImg.run(["check", "-q", "img.qcow2"], cwd: f("vm"))
        try ExpectedDisk.qemuIO(["-r", "-c", "read -P 0x5a 0 1M", "img.qcow2"], cwd: f("vm"))
    }

    func size(_ name: String) throws -> UInt64 {
        try #require(try FileManager.default.attributesOfItem(atPath: f(name))[.size] as? UInt64)
    }

    @Test func resizeGrowsTheRealDataFileNotTheDecoy() throws {
        try makeImage(raw: true)
        let dry = try imgtool("resize", "../vm/img.qcow2", "8M", "--dry-run")
        #expect(dry.stdout.contains(#""data-file":{"driver":"file","filename":"/proc/"#), "\(dry.stdout)")
        let r = try imgtool("resize", "../vm/img.qcow2", "8M")
        #expect(r.status == 0, "\(r.stderr)")
        try checkAfter()
        #expect(try size("vm/img.data") == 8 << 20)
        #expect(try QemuImg.info(f("vm/img.qcow2")) as? [String: Any] != nil)
    }

    @Test func resizeShrinksTheRealDataFileNotTheDecoy() throws {
        try makeImage(raw: true)
        let r = try imgtool("resize", "../vm/img.qcow2", "2M", "--shrink")
        #expect(r.status == 0, "\(r.stderr)")
        try checkAfter()
        #expect(try size("vm/img.data") == 2 << 20)
    }

    @Test func resizeGrowingOverABackingFileHandsTheDataFileToo() throws {
        try makeImage(backing: true)
        let r = try imgtool("resize", "../vm/img.qcow2", "8M")
        #expect(r.status == 0, "\(r.stderr)")
        try checkAfter()
    }

    @Test func fixBackingAndUnsafeRebaseHandTheDataFile() throws {
        try makeImage(backing: true)
        let fix = try imgtool("fix-backing", "../vm/img.qcow2", "--to", "../vm/other.raw")
        #expect(fix.status == 0, "\(fix.stderr)")
        try checkAfter()
        let rebase = try imgtool("rebase", "../vm/img.qcow2", "--onto", "../vm/base.raw", "--unsafe")
        #expect(rebase.status == 0, "\(rebase.stderr)")
        try checkAfter()
        let info = try #require(try QemuImg.info(f("vm/img.qcow2")) as? [String: Any])
        #expect(info["backing-filename"] as? String == "base.raw")
    }

    @Test func safeRebaseAndFlattenHandTheDataFile() throws {
        try makeImage(backing: true)
        let rebase = try imgtool("rebase", "../vm/img.qcow2", "--onto", "../vm/other.raw")
        #expect(rebase.status == 0, "\(rebase.stderr)")
        try checkAfter()
        let flat = try imgtool("rebase", "../vm/img.qcow2", "--flatten")
        #expect(flat.status == 0, "\(flat.stderr)")
        try checkAfter()
        // The backing file's 0xb0 past the first MiB now lives in the data file.
        try ExpectedDisk.qemuIO(["-r", "-c", "read -P 0xb0 1M 3M", "img.qcow2"], cwd: f("vm"))
    }

    @Test func commitIntoALayerWithADataFileWritesItsDataFile() throws {
        try makeImage()
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "img.qcow2", "-F", "qcow2", "top.qcow2"], cwd: f("vm"))
        try ExpectedDisk.qemuIO(["-c", "write -P 0x77 2M 1M", "top.qcow2"], cwd: f("vm"))
        let r = try imgtool("commit", "../vm/top.qcow2")
        #expect(r.status == 0, "\(r.stderr)")
        try checkAfter()
        try ExpectedDisk.qemuIO(["-r", "-c", "read -P 0x77 2M 1M", "img.qcow2"], cwd: f("vm"))
    }

    @Test func aMissingDataFileIsRefusedWithEveryByteUnchanged() throws {
        try makeImage()
        try FileManager.default.moveItem(atPath: f("vm/img.data"), toPath: f("vm/moved.data"))
        let before = try fileDigest(f("vm/img.qcow2"))
        let r = try imgtool("resize", "../vm/img.qcow2", "8M")
        #expect(r.status == 1 && r.stderr.contains("external data file cannot be opened"), "\(r.stderr)")
        #expect(try fileDigest(f("vm/img.qcow2")) == before)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: f("elsewhere/img.data")))) == decoy)
    }

    @Test func aDataFileThatIsTheBackingFileIsRefused() throws {
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "4M"], cwd: f("vm"))
        try ExpectedDisk.qemuIO(["-f", "raw", "-c", "write -P 0xb0 0 4M", "base.raw"], cwd: f("vm"))
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-o", "data_file=base.raw", "-b", "base.raw", "-F", "raw", "img.qcow2", "4M"], cwd: f("vm"))
        let before = [try fileDigest(f("vm/img.qcow2")), try fileDigest(f("vm/base.raw"))]
        for args in [["resize", "../vm/img.qcow2", "2M", "--shrink"], ["resize", "../vm/img.qcow2", "8M"]] {
            let r = try ImgtoolBinary.run(args, cwd: f("elsewhere"), environment: env)
            #expect(r.status == 1 && r.stderr.contains("of its own backing chain"), "\(r.stderr)")
        }
        #expect([try fileDigest(f("vm/img.qcow2")), try fileDigest(f("vm/base.raw"))] == before)
    }

    @Test func theDataFileGoesInTheQCow2ObjectOfItsLayer() {
        let data = QemuImgCommand.HeldFile(path: "/proc/7/fd/5", onDevice: false)
        #expect(QemuImgCommand.heldQCow2(backing: nil, dataFile: data)
                == #"json:{"driver":"qcow2","file":{"driver":"file","filename":"/proc/self/fd/0"},"data-file":{"driver":"file","filename":"/proc/7/fd/5"},"backing":null}"#)
        #expect(QemuImgCommand.heldImage(format: "qcow2", onDevice: false, dataFile: nil) == QemuImgCommand.heldImage)
        #expect(QemuImgCommand.heldImage(format: "qcow2", onDevice: true, dataFile: .init(path: "/dev/x", onDevice: true))
                == #"json:{"driver":"qcow2","file":{"driver":"host_device","filename":"/proc/self/fd/0"},"data-file":{"driver":"host_device","filename":"/dev/x"}}"#)
        let chain: [QemuImgCommand.HeldLayer] = [.init(format: "qcow2", path: "/proc/self/fd/0", onDevice: false),
                                                 .init(format: "qcow2", path: "/proc/7/fd/4", onDevice: false, dataFile: data)]
        #expect(QemuImgCommand.heldChain(chain[...])
                == #"json:{"driver":"qcow2","file":{"driver":"file","filename":"/proc/self/fd/0"},"backing":{"driver":"qcow2","file":{"driver":"file","filename":"/proc/7/fd/4"},"data-file":{"driver":"file","filename":"/proc/7/fd/5"}}}"#)
    }

    @Test func aDataFileAnotherProcessHoldsIsRefusedUnchanged() throws {
        try makeImage(raw: true)
        let before = [try fileDigest(f("vm/img.qcow2")), try fileDigest(f("vm/img.data"))]
        try withExtendedLifetime(try NBDHolder(f("vm/img.data"), format: "raw", readOnly: false, in: dir)) {
            for args in [["resize", "../vm/img.qcow2", "8M"], ["resize", "../vm/img.qcow2", "2M", "--shrink"]] {
                let r = try ImgtoolBinary.run(args, cwd: f("elsewhere"), environment: env)
                #expect(r.status == 1 && r.stderr.contains("img.data is in use by"), "\(r.stderr)")
            }
        }
        #expect([try fileDigest(f("vm/img.qcow2")), try fileDigest(f("vm/img.data"))] == before)
    }

    @Test func growingOverABaseWithADataFileReadsTheBasesRealDataFile() throws {
        // vm/img.qcow2 (data in vm/img.data) ← vm/top.qcow2, shrunk then grown: qemu-img opens the base's data file
        // only to read, and must read vm/img.data, not the decoy elsewhere/img.data.
        try makeImage(raw: true)
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "img.qcow2", "-F", "qcow2", "top.qcow2"], cwd: f("vm"))
        let baseDigests = [try fileDigest(f("vm/img.qcow2")), try fileDigest(f("vm/img.data"))]
        #expect(try imgtool("resize", "../vm/top.qcow2", "2M", "--shrink").status == 0)
        let r = try imgtool("resize", "../vm/top.qcow2", "4M")
        #expect(r.status == 0, "\(r.stderr)")
        #expect([try fileDigest(f("vm/img.qcow2")), try fileDigest(f("vm/img.data"))] == baseDigests, "the base is only read")
        try checkAfter()
        try QemuImg.run(["check", "-q", "top.qcow2"], cwd: f("vm"))
        try ExpectedDisk.qemuIO(["-r", "-c", "read -P 0x5a 0 1M", "-c", "read -P 0 2M 2M", "top.qcow2"], cwd: f("vm"))
    }
}
