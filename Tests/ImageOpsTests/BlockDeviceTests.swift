import Foundation
import Testing
import TestSupport

/// Images on block devices (a qcow2 on an LVM volume, a raw disk) read as qemu-img reads them: a device's `st_size`
/// is 0, so the size comes from the device itself. Before, such a qcow2 was probed as an empty raw disk, and `chain`
/// of an overlay on it offered a fix-backing with `-F raw` that would have shown the guest qcow2 metadata as its disk.
@Suite(.serialized)
struct BlockDeviceTests {
    @Test func aQcow2OnALoopDeviceIsReadAsQemuImgReadsIt() throws {
        let losetup = try #require(which("losetup"), "losetup (util-linux) is needed")
        let dir = try TempDir("blockdev")
        var devices: [String] = []
        defer { for d in devices { _ = try? runProgram(losetup, ["-d", d]) } }
        func attach(_ name: String, _ size: String) throws -> String {
            try QemuImg.run(["create", "-q", "-f", "raw", dir.file(name), size])
            let r = try runProgram(losetup, ["-f", "--show", dir.file(name)])
            let device = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            try #require(r.status == 0 && device.hasPrefix("/dev/loop"), "losetup: \(r.stderr)")
            devices.append(device)
            return device
        }
        let qcowDevice = try attach("lv.img", "8M")
        try QemuImg.run(["create", "-q", "-f", "qcow2", qcowDevice, "4M"])
        let rawDevice = try attach("raw.img", "6M")

        for device in [qcowDevice, rawDevice] {
            let theirs = try #require(try QemuImg.info(device) as? [String: Any])
            let ours = try ImgtoolBinary.run(["info", "--output", "json", device])
            #expect(ours.status == 0, "\(ours.stderr)")
            let mine = try #require(try JSONSerialization.jsonObject(with: Data(ours.stdout.utf8)) as? [String: Any])
            #expect(mine["format"] as? String == theirs["format"] as? String, "\(device)")
            #expect(mine["virtual-size"] as? Int == theirs["virtual-size"] as? Int, "\(device)")
        }
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", qcowDevice, "-F", "qcow2", dir.file("top.qcow2")])
        let chain = try ImgtoolBinary.run(["chain", dir.file("top.qcow2")])
        #expect(chain.status == 0, "the chain is healthy: \(chain.stdout) \(chain.stderr)")
    }
}
