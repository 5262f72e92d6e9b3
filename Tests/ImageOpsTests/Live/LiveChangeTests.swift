import Foundation
import Testing
@testable import ImageOps
import Synchronization
import QCow2
import TestSupport

/// Every live change against a real QEMU, both `-drive` and `-blockdev` styles. Guest data is written through the VM
/// before and during each job; once the VM stops, the chain opens with qemu-img, `check` is clean and the guest
/// sees exactly the expected bytes.
@Suite(.serialized)
struct LiveChangeTests {
    let dir: TempDir
    init() throws { dir = try TempDir("live-change") }

    func f(_ name: String) -> String { dir.file(name) }
    func qemu(_ args: String...) throws {
        if args.first == "io" { try ExpectedDisk.qemuIO(Array(args.dropFirst()), cwd: dir.path) } else { try QemuImg.run(args, cwd: dir.path) }
    }

    /// base.raw ← mid.qcow2 ← top.qcow2, relative names, each layer with its own data.
    func makeChain() throws {
        try qemu("create", "-q", "-f", "raw", "base.raw", "4M")
        try qemu("io", "-f", "raw", "-c", "write -P 0xb0 0 1M", "base.raw")
        try qemu("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "mid.qcow2")
        try qemu("io", "-c", "write -P 0x3d 512k 1M", "mid.qcow2")
        try qemu("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2")
        try qemu("io", "-c", "write -P 0x70 3M 256k", "top.qcow2")
    }

    func info(_ name: String) throws -> [String: Any] { try #require(try QemuImg.info(f(name)) as? [String: Any]) }

    /// After the VM stopped: the chain opens, every layer checks clean, the guest sees `expected`.
    func verifyOffline(_ top: String, _ expected: ExpectedDisk, layers: Int) throws {
        let chain = try #require(try QemuImg.info(f(top), chain: true) as? [[String: Any]])
        #expect(chain.count == layers)
        for layer in chain where layer["format"] as? String == "qcow2" {
            try QemuImg.run(["check", try #require(layer["filename"] as? String)])
        }
        try expected.check(f(top))
    }

    @Test func overlayThenActiveCommitWithDriveStyle() async throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }
        try vm.guestWrite(pattern: 0x11, offset: 0, length: 65536)
        try expected.write(pattern: 0x11, offset: 0, length: 65536)

        let session = try LiveSession.open(f("top.qcow2"), virsh: { $0 })
        defer { session.close() }
        let qemuImg = try ImageOps.QemuImg.locate(nil)
        let made = try await session.overlay(base: f("top.qcow2"), overlay: nil, qemuImg: qemuImg)
        let top = try #require(made.view?.devices.first)
        #expect(top.layers.map(\.filename) == [f("top.cow"), f("top.qcow2"), f("mid.qcow2"), f("base.raw")])
        let overlayInfo = try QemuImg.run(["info", "-U", "--output=json", f("top.cow")])
        #expect(overlayInfo.contains(#""backing-filename": "top.qcow2""#))
        // Writes now land in the overlay.
        try vm.guestWrite(pattern: 0x22, offset: 1 << 20, length: 65536)
        try expected.write(pattern: 0x22, offset: 1 << 20, length: 65536)

        var wroteDuring = false
        let merged = try session.commit(f("top.cow"), base: nil, speed: 4 << 20) { job in
            if !wroteDuring {
                wroteDuring = true
                try? vm.guestWrite(pattern: 0x33, offset: 2 << 20, length: 65536)
            }
            #expect(job.offset <= job.length)
        }
        #expect(wroteDuring)
        try expected.write(pattern: 0x33, offset: 2 << 20, length: 65536)
        let after = try #require(merged.view)
        #expect(after.devices.first?.layers.map(\.filename) == [f("top.qcow2"), f("mid.qcow2"), f("base.raw")])
        #expect(after.strays.isEmpty, "nodes left open: \(after.strays)")
        #expect(merged.deletedNodes == ["imgtool-1", "imgtool-1-file"])
        session.close()
        vm.stop()
        try verifyOffline("top.qcow2", expected, layers: 3)
    }

    @Test func activeCommitIntoADeeperBaseLeavesQemuOnTheBase() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }
        try vm.guestWrite(pattern: 0x5a, offset: 2 << 20, length: 65536)
        try expected.write(pattern: 0x5a, offset: 2 << 20, length: 65536)
        let session = try LiveSession.open(f("top.qcow2"), virsh: { $0 })
        defer { session.close() }
        let out = try session.commit(f("top.qcow2"), base: f("base.raw")) { _ in }
        #expect(out.view?.devices.first?.layers.map(\.filename) == [f("base.raw")])
        #expect(out.view?.devices.first?.layers.first?.readOnly == false)
        #expect(out.view?.strays.isEmpty == true)
        // QEMU writes to the base now.
        try vm.guestWrite(pattern: 0x6b, offset: 0, length: 65536)
        try expected.write(pattern: 0x6b, offset: 0, length: 65536)
        session.close()
        vm.stop()
        try expected.check(f("base.raw"))
    }

    @Test func middleCommitWithBlockdevStyleRepointsTheTopRelatively() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .blockdev([(f("top.qcow2"), "qcow2"), (f("mid.qcow2"), "qcow2"), (f("base.raw"), "raw")]))
        defer { vm.stop() }
        try vm.guestWrite(pattern: 0x44, offset: 0, length: 65536)
        try expected.write(pattern: 0x44, offset: 0, length: 65536)

        let session = try LiveSession.open(f("top.qcow2"), virsh: { $0 })
        defer { session.close() }
        var wroteDuring = false
        let out = try session.commit(f("mid.qcow2"), base: nil, speed: 1 << 20) { _ in
            if !wroteDuring { wroteDuring = true; try? vm.guestWrite(pattern: 0x55, offset: 3 << 20, length: 65536) }
        }
        try expected.write(pattern: 0x55, offset: 3 << 20, length: 65536)
        let after = try #require(out.view?.devices.first)
        #expect(after.layers.map(\.nodeName) == ["n0", "n2"])
        #expect(after.layers.map(\.readOnly) == [false, true], "the base goes back to read-only")
        #expect(out.view?.strays.isEmpty == true, "nodes left open: \(String(describing: out.view?.strays))")
        session.close()
        vm.stop()
        #expect(try info("top.qcow2")["backing-filename"] as? String == "base.raw")
        #expect(try info("top.qcow2")["backing-filename-format"] as? String == "raw")
        try verifyOffline("top.qcow2", expected, layers: 2)
    }

    /// Ctrl-C during a live job: imgtool has QEMU cancel it (forced, so the READY active commit does not pivot),
    /// puts the base back to read-only, and exits 130; the disk goes on running on the chain it had, no job is left
    /// in QEMU, and once the VM stops the chain opens and reads the guest's bytes.
    @Test func sigintDuringAnActiveCommitCancelsTheJob() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .blockdev([(f("top.qcow2"), "qcow2"), (f("mid.qcow2"), "qcow2"), (f("base.raw"), "raw")]))
        defer { vm.stop() }
        let session = try LiveSession.open(f("top.qcow2"), virsh: { $0 })
        defer { session.close() }
        let before = try session.view()
        var signalled = false
        // A SIGINT recorded for this test's task only: a real one, or a store into the guard's own flag, would
        // interrupt the changes of the suites running beside this one.
        let simulated = ChildGuard.Simulated()
        ChildGuard.$simulated.withValue(simulated) {
            #expect {
                // 64 KiB/s: the 320 KiB to merge take five seconds; the interruption comes with the first progress report.
                _ = try session.commit(f("top.qcow2"), base: nil, speed: 64 << 10) { _ in
                    guard !signalled else { return }
                    signalled = true
                    // Recorded as the guard's handler records a SIGINT, not sent: a signal's disposition is shared with
                    // the suites running beside this one, and glibc's system(3), which they use, ignores SIGINT while its
                    // child runs, so a kill() or raise() here was lost now and then and the job completed. The handler
                    // itself is exercised by the CLI tests, in child processes (SafetyTests).
                    simulated.signal.store(SIGINT, ordering: .sequentiallyConsistent)
                }
            } throws: { error in
                guard let e = error as? LiveError, case .interrupted(_, let sig, let detail) = e else { return false }
                return sig == SIGINT && e.exitCode == 130 && detail.contains("cancelled")
            }
        }
        #expect(signalled)
        #expect(try session.currentJob("imgtool-commit-\(getpid())") == nil, "a job is left in QEMU")
        let after = try #require(try session.view().devices.first)
        #expect(after.layers.map(\.nodeName) == before.devices.first?.layers.map(\.nodeName))
        #expect(after.layers.map(\.readOnly) == [false, true, true], "the base goes back to read-only")
        try vm.guestWrite(pattern: 0x5a, offset: 2 << 20, length: 65536)
        try expected.write(pattern: 0x5a, offset: 2 << 20, length: 65536)
        session.close()
        vm.stop()
        try verifyOffline("top.qcow2", expected, layers: 3)
    }

    /// `overlay --live` reserves the new file exclusively and has qemu-img write it through the held descriptor; a
    /// file renamed over the name before QEMU opens it is neither overwritten nor handed to the VM: the change is
    /// refused, the nodes it added are deleted, the disk stays on its top, and the decoy is byte-for-byte intact.
    @Test func overlayRefusesAFileRenamedOverItsNameBeforeQemuOpensIt() async throws {
        try makeChain()
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }
        try qemu("create", "-q", "-f", "qcow2", "decoy.qcow2", "4M")
        try qemu("io", "-c", "write -P 0x77 0 64k", "decoy.qcow2")
        let decoy = try fileDigest(f("decoy.qcow2"))
        // A qemu-img that waits before it runs; meanwhile the decoy is renamed over the reserved name.
        let wrapper = f("slow-qemu-img")
        // It waits for the swap itself (bounded: 60 s), not for a second that a loaded machine may not give the swapper.
        try ("#!/bin/sh\ntouch \(f("started"))\ni=0\nwhile [ ! -e \(f("swapped")) ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n"
            + "exec \(try QemuImg.path()) \"$@\"\n").write(toFile: wrapper, atomically: true, encoding: .utf8)
        #expect(chmod(wrapper, 0o755) == 0)
        let session = try LiveSession.open(f("top.qcow2"), virsh: { $0 })
        defer { session.close() }
        let before = try session.view()
        let swapper = Thread {
            while !FileManager.default.fileExists(atPath: self.f("started")) { usleep(10_000) }
            _ = rename(self.f("decoy.qcow2"), self.f("top.cow"))
            _ = FileManager.default.createFile(atPath: self.f("swapped"), contents: nil)
        }
        swapper.start()
        await #expect(throws: LiveError.self) {
            _ = try await session.overlay(base: f("top.qcow2"), overlay: nil, qemuImg: try ImageOps.QemuImg.locate(wrapper))
        }
        #expect(try fileDigest(f("top.cow")) == decoy, "the file renamed over the name was written")
        let after = try session.view()
        #expect(after.devices.first?.layers.map(\.nodeName) == before.devices.first?.layers.map(\.nodeName))
        #expect(after.strays.isEmpty, "nodes left open: \(after.strays)")
    }

    @Test func flattenWithBlockdevStyleDropsTheBackingNodes() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        let vm = try TestVM(dir: dir.path, .blockdev([(f("top.qcow2"), "qcow2"), (f("mid.qcow2"), "qcow2"), (f("base.raw"), "raw")]))
        defer { vm.stop() }
        let session = try LiveSession.open(f("top.qcow2"), virsh: { $0 })
        defer { session.close() }
        var wroteDuring = false
        let out = try session.flatten(f("top.qcow2"), speed: 2 << 20) { _ in
            if !wroteDuring { wroteDuring = true; try? vm.guestWrite(pattern: 0x66, offset: 3 << 20 + 65536, length: 65536) }
        }
        #expect(wroteDuring)
        try expected.write(pattern: 0x66, offset: 3 << 20 + 65536, length: 65536)
        #expect(out.view?.devices.first?.layers.count == 1)
        #expect(out.view?.strays.isEmpty == true)
        #expect(Set(out.deletedNodes) == ["n1", "f1", "n2", "f2"])
        session.close()
        vm.stop()
        #expect(try info("top.qcow2")["backing-filename"] == nil)
        try verifyOffline("top.qcow2", expected, layers: 1)
    }

    @Test func fixBackingNamesTheMovedFileQemuReadsAndRefusesAnother() throws {
        try makeChain()
        let expected = try ExpectedDisk(from: f("top.qcow2"), at: f("expected.raw"))
        try qemu("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "other.qcow2")
        let vm = try TestVM(dir: dir.path, .drive(f("top.qcow2")))
        defer { vm.stop() }
        // The middle layer moves while the VM runs; QEMU keeps reading it; top's recorded name is broken on disk.
        try FileManager.default.moveItem(atPath: f("mid.qcow2"), toPath: f("mid-renamed.qcow2"))
        let session = try LiveSession.open(f("top.qcow2"), virsh: { $0 })
        defer { session.close() }

        let before = try fileDigest(f("top.qcow2"))
        #expect(throws: LiveError.self) { try session.fixBacking(f("top.qcow2"), to: f("other.qcow2"), style: .keep) }
        #expect(try fileDigest(f("top.qcow2")) == before)

        let state = try TempDir("live-state")
        setenv("IMGTOOL_STATE_DIR", state.path, 1)
        let out = try session.fixBacking(f("top.qcow2"), to: f("mid-renamed.qcow2"), style: .keep)
        unsetenv("IMGTOOL_STATE_DIR")
        #expect(out.savedHeader.map { FileManager.default.fileExists(atPath: $0) } == true)
        #expect(out.view?.devices.first?.layers.count == 3)
        try vm.guestWrite(pattern: 0x77, offset: 65536, length: 65536)
        try expected.write(pattern: 0x77, offset: 65536, length: 65536)
        session.close()
        vm.stop()
        #expect(try info("top.qcow2")["backing-filename"] as? String == "mid-renamed.qcow2")
        #expect(try info("top.qcow2")["backing-filename-format"] as? String == "qcow2")
        try verifyOffline("top.qcow2", expected, layers: 3)
    }
}

