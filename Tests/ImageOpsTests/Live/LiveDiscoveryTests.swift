import Foundation
import Testing
@testable import ImageOps
import QCow2
import TestSupport

/// Finding QEMU's monitors from /proc and telling free from busy, against a real QEMU; command-line parsing alone.
@Suite(.serialized)
struct LiveDiscoveryTests {
    @Test func commandLineMonitorsAreParsedInEveryForm() {
        let args = ["qemu-system-x86_64", "-qmp", "unix:/run/a.sock,server=on,wait=off", "--monitor", "tcp:127.0.0.1:30320,server,nowait",
                    "-chardev", "socket,id=m1,path=/tmp/x,,y.sock,server=on", "-mon", "chardev=m1,mode=control",
                    "-chardev", "socket,id=m2,fd=23,server=on", "-mon", "chardev=m2",
                    "-qmp=tcp:[::1]:4444,server=on", "-drive", "file=unix:/not/a/monitor"]
        let specs = MonitorSpec.parse(args)
        #expect(specs == [
            MonitorSpec(kind: .qmp, endpoint: .unix("/run/a.sock")),
            MonitorSpec(kind: .hmp, endpoint: .tcp(host: "127.0.0.1", port: 30320)),
            MonitorSpec(kind: .qmp, endpoint: .tcp(host: "::1", port: 4444)),
            MonitorSpec(kind: .qmp, endpoint: .unix("/tmp/x,y.sock")),
            MonitorSpec(kind: .hmp, endpoint: .fd(23)),
        ])
        #expect(QemuProcess.isQemu(["/usr/bin/qemu-system-x86_64"]))
        #expect(!QemuProcess.isQemu(["/usr/bin/qemu-img"]))
    }

    @Test func monitorsAreFoundFreeThenBusyAndTheFirstClientKeepsWorking() throws {
        let dir = try TempDir("live-who")
        try QemuImg.run(["create", "-q", "-f", "qcow2", dir.file("top.qcow2"), "4M"])
        // A TCP QMP monitor too, on a port unlikely to be taken (another run's would make QEMU fail to start).
        let port = 40_000 + Int(getpid() % 20_000)
        let vm = try TestVM(dir: dir.path, .drive(dir.file("top.qcow2")), extra: ["-qmp", "tcp:127.0.0.1:\(port),server=on,wait=off"])
        defer { vm.stop() }

        let found = try #require(QemuProcess.inspect(pid: vm.pid))
        #expect(found.libvirtDomain == nil)
        #expect(found.monitors == [QemuMonitor(kind: .hmp, address: .unix(vm.hmp), state: .free),
                                   QemuMonitor(kind: .qmp, address: .unix(vm.qmp), state: .free),
                                   QemuMonitor(kind: .qmp, address: .tcp(host: "127.0.0.1", port: port), state: .free)])
        let overTCP = try QMPClient.connect(.tcp(host: "127.0.0.1", port: port))
        #expect((try overTCP.execute("query-status"))["status"]?.string == "prelaunch")
        overTCP.close()
        do {
            _ = try QMPClient.connect(.unix(vm.hmp))
            Issue.record("the HMP monitor was taken for QMP")
        } catch {
            guard case .notQMP(let a, let greeting) = error else { Issue.record("\(error)"); return }
            #expect(a == .unix(vm.hmp) && greeting.hasPrefix("QEMU"))
        }

        let first = try QMPClient.connect(.unix(vm.qmp))
        defer { first.close() }
        #expect(first.version.hasPrefix("7.") || first.version.hasPrefix("8.") || first.version.hasPrefix("9."))
        let start = Date()
        let busy = try #require(QemuProcess.inspect(pid: vm.pid))
        #expect(busy.monitors.first { $0.address == .unix(vm.qmp) }?.state == .busy)
        // Told by the probe's 300 ms of silence, never by an answer's deadline (30 s); the bound allows for load.
        #expect(Date().timeIntervalSince(start) < 15)
        #expect(throws: QMPClient.Error.busy(.unix(vm.qmp))) { try QMPClient.connect(.unix(vm.qmp)) }
        // With the unix monitor busy, a session takes the free TCP one.
        let session = try LiveSession.open(dir.file("top.qcow2"), virsh: { $0 })
        #expect(session.client.address == .tcp(host: "127.0.0.1", port: port))
        session.close()
        // The probes left nothing queued: the first client still gets answers.
        let status = try #require(try first.execute("query-status").object)
        #expect(status["status"]?.string == "prelaunch")
        first.close()
        // QEMU accepts (and drops) the probes' closed connections one by one before it greets anyone again.
        var state = QemuMonitor.State.busy
        for _ in 0..<10 where state == .busy {
            state = QemuProcess.inspect(pid: vm.pid, probeTimeoutMS: 100)?.monitors.first { $0.address == .unix(vm.qmp) }?.state ?? .busy
        }
        #expect(state == .free)
    }

    @Test func aLiveViewMatchesFilesByDeviceAndInodeAndSeesAMovedLayer() throws {
        let dir = try TempDir("live-view")
        try QemuImg.run(["create", "-q", "-f", "raw", dir.file("base.raw"), "4M"])
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", dir.file("mid.qcow2")])
        try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir.file("top.qcow2")])
        let vm = try TestVM(dir: dir.path, .drive(dir.file("top.qcow2")))
        defer { vm.stop() }

        let session = try LiveSession.open(dir.file("top.qcow2"), virsh: { $0 })
        defer { session.close() }
        var view = try session.view()
        let disk = try #require(view.devices.first)
        #expect(disk.device == "d0")
        #expect(disk.layers.map(\.driver) == ["qcow2", "qcow2", "raw"])
        #expect(disk.layers.map(\.readOnly) == [false, true, true])
        #expect(disk.layers.allSatisfy { $0.pathCurrent })
        #expect(disk.layers[1].backingFilename == "base.raw")
        #expect(view.strays.isEmpty)
        // Another name of the same file finds the same layer.
        try FileManager.default.createSymbolicLink(atPath: dir.file("alias.qcow2"), withDestinationPath: dir.file("mid.qcow2"))
        let alias = try session.locate(dir.file("alias.qcow2"), in: view)
        #expect(alias.index == 1)
        // Moved away: QEMU still reads the old inode; its recorded path now leads nowhere.
        try FileManager.default.moveItem(atPath: dir.file("mid.qcow2"), toPath: dir.file("moved.qcow2"))
        view = try session.view()
        #expect(view.devices.first?.layers.map(\.pathCurrent) == [true, false, true])
        let moved = try session.locate(dir.file("moved.qcow2"), in: view)
        #expect(moved.index == 1)
    }

    @Test func aQemuWithOnlyAHumanMonitorIsRefusedNamingIt() throws {
        let dir = try TempDir("live-hmp")
        try QemuImg.run(["create", "-q", "-f", "qcow2", dir.file("top.qcow2"), "1M"])
        let vm = try TestVM(dir: dir.path, .drive(dir.file("top.qcow2")), qmp: false)
        defer { vm.stop() }
        #expect(throws: LiveError.noMonitor(path: dir.file("top.qcow2"), pid: vm.pid, hmp: vm.hmp)) {
            try LiveSession.open(dir.file("top.qcow2"), virsh: { $0 })
        }
    }

    @Test func twoVMsOnOneBaseAreSeveralHolders() throws {
        let dir = try TempDir("live-two")
        try QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "1M"], cwd: dir.path)
        for top in ["a.qcow2", "b.qcow2"] { try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top], cwd: dir.path) }
        let a = try TestVM(dir: dir.path, .drive(dir.file("a.qcow2")), name: "a")
        defer { a.stop() }
        let b = try TestVM(dir: dir.path, .drive(dir.file("b.qcow2")), name: "b")
        defer { b.stop() }
        #expect(throws: LiveError.severalHolders(path: dir.file("base.raw"), holders: ["PID \(min(a.pid, b.pid))", "PID \(max(a.pid, b.pid))"])) {
            try LiveSession.open(dir.file("base.raw"), virsh: { $0 })
        }
        // Each top has one holder: its own VM.
        let session = try LiveSession.open(dir.file("a.qcow2"), virsh: { $0 })
        #expect(session.process.pid == a.pid)
        session.close()
    }

    @Test func anImageNobodyHoldsIsNotLive() throws {
        let dir = try TempDir("live-none")
        try QemuImg.run(["create", "-q", "-f", "qcow2", dir.file("idle.qcow2"), "1M"])
        #expect(throws: LiveError.notRunning(path: dir.file("idle.qcow2"))) {
            try LiveSession.open(dir.file("idle.qcow2"), virsh: { $0 })
        }
    }
}
