import Foundation
import Testing
@testable import ImageOps
import QCow2

import Glibc

/// The in-use check's first question to the kernel (`InUse.openedByNoOneElse`, a write lease taken and dropped): it
/// may only ever answer "nobody" when nobody else can read or write the file, and the walk of `/proc` must still
/// name every holder when someone does. Real processes hold the file; they run as us, so the lease is ours to take.
@Suite(.serialized)
struct InUseLeaseTests {
    /// A fresh regular file in a folder of its own.
    static func file() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imgtool-lease-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/img.raw"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(count: 65536)))
        return path
    }

    /// A `sleep` holding `path` open as its standard input (`writing`: as its standard output, write-only); our
    /// own descriptor on it is closed once the child has it.
    static func holder(_ path: String, writing: Bool = false) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sleep")
        p.arguments = ["30"]
        let handle = try #require(writing ? FileHandle(forWritingAtPath: path) : FileHandle(forReadingAtPath: path))
        if writing { p.standardOutput = handle } else { p.standardInput = handle }
        try p.run()
        // The walk names a holder by its command line: wait until the child is `sleep` (right after the spawn it may
        // still be mid-exec, and /proc shows no command line yet; a loaded machine made that a flaky "?").
        for _ in 0..<1000 {
            let line = (try? String(contentsOfFile: "/proc/\(p.processIdentifier)/cmdline", encoding: .utf8)) ?? ""
            if line.hasPrefix("/bin/sleep") { break }
            usleep(10_000)
        }
        try handle.close()
        return p
    }

    @Test func nobodyElseMeansTheLeaseIsGrantedAndNoWalkIsNeeded() throws {
        let path = try Self.file()
        let file = try ImageFile.open(path)
        #expect(InUse.openedByNoOneElse(file.rawDescriptor))
        // Granted and dropped: asking again gets it again, and the file is not left leased (another open works).
        #expect(InUse.openedByNoOneElse(file.rawDescriptor))
        let other = open(path, O_RDONLY | O_NONBLOCK)
        #expect(other >= 0)
        close(other)
        #expect(Readers.of(file, quick: true).isHeld == false)
    }

    @Test(arguments: [false, true])
    func anotherProcessHoldingItIsStillNamed(writing: Bool) throws {
        let path = try Self.file()
        let p = try Self.holder(path, writing: writing)
        // SIGKILL: `terminate()`'s SIGTERM left the test waiting for the whole sleep.
        defer { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        let file = try ImageFile.open(path)
        #expect(!InUse.openedByNoOneElse(file.rawDescriptor))
        let quick = Readers.of(file, quick: true)
        #expect(quick.use.holders.map(\.pid) == [p.processIdentifier])
        #expect(quick == Readers.of(file))
        #expect(Readers.of(path: path, quick: true).use.holders.map(\.pid) == [p.processIdentifier])
    }

    /// A second descriptor of our own is counted too: the kernel cannot tell it from someone else's, so the walk runs
    /// (and, skipping us, finds nobody), as before.
    @Test func ourOwnSecondDescriptorFallsBackToTheWalk() throws {
        let path = try Self.file()
        let file = try ImageFile.open(path)
        let second = open(path, O_RDONLY)
        #expect(second >= 0)
        defer { close(second) }
        #expect(!InUse.openedByNoOneElse(file.rawDescriptor))
        #expect(Readers.of(file, quick: true).use.holders.isEmpty)
    }
}
