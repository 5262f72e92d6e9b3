import Foundation
@testable import ImageOps
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A real QEMU (TCG, paused with -S, no guest) on a test's images, with a QMP and an HMP monitor in its folder.
/// Stopped by the PID in its pidfile when the test calls `stop()` (from a `defer`) and again on deinit.
final class TestVM: @unchecked Sendable {
    let dir: String
    let qmp: String
    let hmp: String
    let pid: Int32
    /// The monitor `hmpCommand` talks to.
    let hmpAddress: MonitorAddress

    /// How the disk is attached.
    enum Style {
        /// `-drive file=TOP,if=none,id=d0` + virtio-blk: QEMU opens the chain from the headers (`#block` nodes).
        case drive(String)
        /// libvirt's way: every layer a named `-blockdev`, backing layers `read-only=on`. Paths top first, formats beside.
        case blockdev([(path: String, format: String)])
    }

    /// `libvirtDomain` starts QEMU the way libvirt does: the QMP socket bound beforehand and handed over as `fd=N`
    /// (`-chardev socket,fd=N` + `-mon mode=control`), the domain named by `-name guest=`.
    /// `qmp: false` leaves only the human monitor. `name` tells apart the files of two VMs in one folder.
    /// `monitors` replaces the default monitors (a unix HMP and a unix QMP) with these arguments, qemu-init style;
    /// `hmpAddress` is then the monitor the test's own HMP commands use. `cwd` starts QEMU in that folder (so
    /// relative `-drive file=` names are relative to it). `launchPWD` puts that value in QEMU's `PWD`, as a launcher
    /// that changed folder without updating it leaves the shell's folder there.
    init(dir: String, _ style: Style, extra: [String] = [], libvirtDomain: String? = nil, qmp withQMP: Bool = true, name: String = "qemu",
         monitors: [String]? = nil, hmpAddress: MonitorAddress? = nil, cwd: String? = nil, launchPWD: String? = nil) throws {
        guard let qemu = which("qemu-system-x86_64") else {
            throw ToolError("qemu-system-x86_64 is not installed (scripts/setup, or apt-get install qemu-system-x86); this test needs a real QEMU")
        }
        self.dir = dir
        qmp = dir + "/\(name)-qmp.sock"
        hmp = dir + "/\(name)-hmp.sock"
        let pidfile = dir + "/\(name).pid"
        self.hmpAddress = hmpAddress ?? .unix(hmp)
        var args = [qemu, "-machine", "pc", "-m", "16", "-nodefaults", "-display", "none", "-S", "-daemonize", "-pidfile", pidfile]
        args += monitors ?? ["-monitor", "unix:\(hmp),server=on,wait=off"]
        if let libvirtDomain {
            guard let python = which("python3") else { throw ToolError("python3 is needed to hand QEMU a bound socket") }
            let launcher = "import socket,os,sys\ns=socket.socket(socket.AF_UNIX);s.bind(sys.argv[1]);s.listen(1);os.set_inheritable(s.fileno(),True)\n"
                + "a=[x.replace('@FD@',str(s.fileno())) for x in sys.argv[2:]];os.execv(a[0],a)"
            args = [python, "-c", launcher, qmp] + args + ["-name", "guest=\(libvirtDomain),debug-threads=on",
                    "-chardev", "socket,id=charmonitor,fd=@FD@,server=on,wait=off", "-mon", "chardev=charmonitor,id=monitor,mode=control"]
        } else if withQMP && monitors == nil {
            args += ["-qmp", "unix:\(qmp),server=on,wait=off"]
        }
        switch style {
        case .drive(let top):
            args += ["-drive", "file=\(top),if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,id=vd0"]
        case .blockdev(let layers):
            for (n, layer) in layers.enumerated().reversed() {
                let ro = n == 0 ? "" : ",read-only=on"
                args += ["-blockdev", "driver=file,node-name=f\(n),filename=\(layer.path)\(ro)"]
                var fmt = "driver=\(layer.format),node-name=n\(n),file=f\(n)\(ro)"
                if n + 1 < layers.count { fmt += ",backing=n\(n + 1)" } else if layer.format != "raw" { fmt += ",backing=null" }
                args += ["-blockdev", fmt]
            }
            args += ["-device", "virtio-blk-pci,drive=n0,id=vd0"]
        }
        args += extra
        let status = shell((cwd.map { "cd " + shellQuote($0) + " && " } ?? "") + (launchPWD.map { "PWD=" + shellQuote($0) + " " } ?? "") + args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ") + " 2>" + dir + "/\(name).err")
        let err = (try? String(contentsOfFile: dir + "/\(name).err", encoding: .utf8)) ?? ""
        guard status == 0, let text = try? String(contentsOfFile: pidfile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ToolError("QEMU did not start (\(status)): \(err)")
        }
        self.pid = pid
    }

    deinit { stop() }

    /// Waits until QEMU has closed every client connection of the monitor socket at `path`: /proc/net/unix then
    /// lists the path once, for the listener alone (a connection QEMU accepted carries the path too). A client that
    /// closed is not gone for QEMU until its main loop sees the hang-up; a next client before that gets silence.
    func waitUntilMonitorIdle(_ path: String) throws {
        let until = Date().addingTimeInterval(60)
        while Date() < until {
            let table = (try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8)) ?? ""
            let entries = table.split(separator: "\n").filter { $0.hasSuffix(" " + path) }
            if entries.count <= 1 { return }
            usleep(5_000)
        }
        throw ToolError("QEMU kept a client connection on \(path) for a minute")
    }

    /// Stops QEMU by its PID and waits until it is gone (it releases its locks on exit).
    func stop() {
        guard running else { return }
        kill(pid, SIGTERM)
        for _ in 0..<200 where running { usleep(5_000) }
        if running { kill(pid, SIGKILL); usleep(50_000) }
    }

    /// Alive and not a zombie (a daemonized QEMU's parent here may never reap it).
    var running: Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
        return state != "Z" && state != "X"
    }

    /// Runs an HMP command on the second monitor and returns its output (HMP errors are text too).
    @discardableResult
    func hmpCommand(_ line: String) throws -> String {
        let s = try MonitorSocket.connect(hmpAddress, timeoutMS: 2000)
        defer { s.close() }
        _ = try readUntilPrompt(s)
        try s.send(Array((line + "\n").utf8), timeoutMS: 2000)
        let out = try readUntilPrompt(s)
        return out
    }

    /// Writes `pattern` over `length` bytes at `offset` through the guest's disk (qemu-io on the device).
    func guestWrite(pattern: UInt8, offset: Int, length: Int) throws {
        // The BlockBackend belongs to the virtio-blk device inside the PCI proxy that has the id.
        let out = try hmpCommand("qemu-io -d /machine/peripheral/vd0/virtio-backend \"write -P \(pattern) \(offset) \(length)\"")
        // qemu-io prints its "wrote" line to QEMU's own stdout (here /dev/null); the monitor shows only errors.
        guard !out.contains("Error"), !out.contains("error") else {
            throw ToolError("guest write failed: \(out.split(separator: "\n").suffix(2).joined(separator: " "))")
        }
    }

    private func readUntilPrompt(_ s: MonitorSocket) throws -> String {
        var text = ""
        // A bound against a hang, not a timing assumption: a loaded machine can take seconds to schedule QEMU.
        let deadline = Date().addingTimeInterval(60)
        while !text.hasSuffix("(qemu) ") {
            guard Date() < deadline else { throw ToolError("HMP: no prompt; got \(text)") }
            // A telnet monitor opens with IAC negotiation (0xFF …), which is no text.
            text += String(decoding: try s.readSome(timeoutMS: 1000).filter { $0 < 0x80 }, as: UTF8.self)
        }
        return text
    }
}

/// Expected guest bytes, kept in a raw file beside the images: every guest write is applied to it too.
struct ExpectedDisk {
    let path: String

    /// Starts from the guest view of `image` (its whole chain), converted to raw by qemu-img.
    init(from image: String, at path: String) throws {
        self.path = path
        try QemuImg.run(["convert", "-O", "raw", image, path])
    }

    /// Runs qemu-io (qemu-utils) on an image that no VM holds.
    static func qemuIO(_ args: [String], cwd: String? = nil) throws {
        guard let tool = which("qemu-io") else { throw ToolError("qemu-io is not installed (apt-get install qemu-utils)") }
        let r = try runProgram(tool, args, cwd: cwd)
        guard r.status == 0, !r.stdout.contains("error") else { throw ToolError("qemu-io \(args) failed: \(r.stdout)\(r.stderr)") }
    }

    /// The same write as the guest's.
    func write(pattern: UInt8, offset: Int, length: Int) throws {
        try Self.qemuIO(["-f", "raw", "-c", "write -P \(pattern) \(offset) \(length)", path])
    }

    /// Throws unless `image` (with its chain) shows the guest the same bytes.
    func check(_ image: String) throws {
        let r = try runProgram(try QemuImg.path(), ["compare", "-f", "raw", path, image])
        guard r.status == 0 else { throw ToolError("guest data differs: \(r.stdout)\(r.stderr)") }
    }
}
