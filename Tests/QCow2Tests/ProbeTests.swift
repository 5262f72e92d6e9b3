import Foundation
import Testing
@testable import QCow2
import TestSupport

/// Every format a backing file may be, made by the real qemu-img, must be recognised by its magic, with the
/// virtual size qemu-img reports where the header gives it.
struct ProbeTests {
    @Test(arguments: [
        ("qcow2", [String]()), ("qcow", []), ("qed", []), ("vmdk", []), ("vmdk", ["-o", "subformat=monolithicFlat"]),
        ("vdi", []), ("vhdx", []), ("vpc", []), ("raw", []),
    ])
    func formatIsDetected(format: String, options: [String]) throws {
        let dir = try TempDir("probe")
        let path = dir.file("disk.\(format)")
        try QemuImg.run(["create", "-q", "-f", format] + options + [path, "4M"])
        let info = try ImageInfo.read(path)
        #expect(info.format.rawValue == format)
        let theirs = try #require(try QemuImg.info(path) as? [String: Any])
        #expect(theirs["format"] as? String == format)
        // Every format's size is read (VHD's as QEMU derives it from the CHS geometry); none may be skipped.
        let ours = try #require(info.virtualSize, "imgtool reads no virtual size for \(format)")
        #expect(ours == (theirs["virtual-size"] as? NSNumber)?.uint64Value, "virtual size of \(format)")
        if !options.isEmpty {
            #expect(info.probe.vmdkExtents == ["disk-flat.vmdk"])
        }
    }

    @Test func luksIsDetected() throws {
        let dir = try TempDir("probe")
        let path = dir.file("disk.luks")
        try LUKSFixtures.copy("plain.luks", to: path)
        let info = try ImageInfo.read(path)
        #expect(info.format == .luks)
        let theirs = try #require(try QemuImg.info(path) as? [String: Any])
        #expect(info.virtualSize == (theirs["virtual-size"] as? NSNumber)?.uint64Value)
        #expect(info.isEncrypted)
    }
}
