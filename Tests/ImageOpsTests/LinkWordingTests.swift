import Foundation
import Testing
import TestSupport

/// `chain` and `scan` judge a backing link with one classifier: the same break gets the same kind and the same
/// words in both (they once said "is a directory, not an image" and "is not a regular file" of one folder).
@Suite struct LinkWordingTests {
    @Test func chainAndScanWordEveryBreakAlike() throws {
        let dir = try TempDir("wording")
        try QemuImg.run(["create", "-f", "raw", "base.raw", "1M"], cwd: dir.path)
        try QemuImg.run(["create", "-f", "qcow2", "real.qcow2", "1M"], cwd: dir.path)
        _ = try dir.mkdir("folder.raw")
        try dir.write("junk.qcow2", Array(repeating: 0x41, count: 4096))
        // name → (backing name, recorded format)
        let links: [String: (String, String)] = [
            "missing.cow": ("gone.raw", "raw"),
            "folder.cow": ("folder.raw", "raw"),
            "protocol.cow": ("nbd:localhost:10809", "raw"),
            "mismatch.cow": ("real.qcow2", "raw"),
            "junk.cow": ("junk.qcow2", "qcow2"),
        ]
        for (name, link) in links {
            try QemuImg.run(["create", "-f", "qcow2", "-u", "-b", link.0, "-F", link.1, name, "1M"], cwd: dir.path)
        }
        let scan = try ImgtoolBinary.run(["scan", dir.path, "--output", "json"])
        let scanned = try #require(try JSONSerialization.jsonObject(with: Data(scan.stdout.utf8)) as? [String: Any])
        let scanProblems = try #require(scanned["problems"] as? [[String: Any]])
        for name in links.keys {
            let path = dir.file(name)
            let r = try ImgtoolBinary.run(["chain", path, "--output", "json"])
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            let problem = try #require((json["problems"] as? [[String: Any]])?.first, "\(name): \(r.stdout)")
            let inScan = try #require(scanProblems.first { $0["image"] as? String == path }, "\(name) not in scan: \(scan.stdout)")
            #expect(problem["kind"] as? String == inScan["kind"] as? String, "\(name)")
            #expect(problem["message"] as? String == inScan["message"] as? String, "\(name)")
        }
    }
}
