import Foundation
import Testing
import TestSupport

/// A folder of images for the fault tests, a save store beside them, and a `--qemu-img` wrapper that marks when it
/// starts, sleeps (so a test can kill imgtool or swap the file mid-change), runs the real qemu-img and marks its end.
struct SafetyFixture {
    let root: TempDir
    let store: String
    let state: String
    let wrapper: String

    init() throws {
        root = try TempDir("safety")
        store = try root.mkdir("store")
        state = root.path + "/state"
        wrapper = root.file("slow-qemu-img")
        let real = try QemuImg.path()
        // Markers appear whole (written, then renamed): a test that sees "started" can read the PID in it.
        let script = """
            #!/bin/sh
            echo $$ > \(shellQuote(root.file("started.tmp"))) && mv \(shellQuote(root.file("started.tmp"))) \(shellQuote(root.file("started")))
            sleep "${SLOW_QEMU_IMG_SECONDS:-1}" </dev/null
            \(shellQuote(real)) "$@"
            status=$?; echo $status > \(shellQuote(root.file("done.tmp"))) && mv \(shellQuote(root.file("done.tmp"))) \(shellQuote(root.file("done")))
            """
        try Data(script.utf8).write(to: URL(fileURLWithPath: wrapper))
        chmod(wrapper, 0o755)
    }

    func path(_ name: String) -> String { store + "/" + name }
    func qemu(_ args: String...) throws { try QemuImg.run(args, cwd: store) }
    func digest(_ name: String) throws -> String { try fileDigest(path(name)) }
    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }

    var environment: [String: String] {
        var e = ProcessInfo.processInfo.environment
        e["IMGTOOL_STATE_DIR"] = state
        return e
    }

    /// imgtool run in the store.
    func imgtool(_ args: [String], environment: [String: String]? = nil) throws -> RunResult {
        try ImgtoolBinary.run(args, cwd: store, environment: environment ?? self.environment)
    }

    /// The files in the save store (hidden ones too), sorted.
    func saves() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: state)) ?? []).sorted() }

    /// `qemu-img check` passes on `name`.
    func checks(_ name: String) throws -> Bool {
        try runProgram(try QemuImg.path(), ["check", "-q", path(name)]).status == 0
    }

    /// The backing name qemu-img reads from `name`.
    func backing(_ name: String) throws -> String? {
        let info = try #require(try QemuImg.info(path(name)) as? [String: Any])
        return info["backing-filename"] as? String
    }

    /// Starts imgtool through the slow wrapper and returns once the wrapper runs (qemu-img is about to start).
    /// `ignoring` (signal names, as `trap` takes them): imgtool starts with those ignored, as under `nohup`.
    func startSlow(_ args: [String], ignoring: String? = nil) throws -> Process {
        try? FileManager.default.removeItem(atPath: root.file("started"))
        try? FileManager.default.removeItem(atPath: root.file("done"))
        let p = Process()
        // Started with SIGINT, SIGTERM and SIGHUP at their defaults whatever this process inherited (`swift test` may
        // run us with SIGINT ignored, and imgtool keeps a signal it was started ignoring ignored, as nohup needs).
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["--default-signal=INT,TERM,HUP", try ImgtoolBinary.path()] + args + ["--qemu-img", wrapper]
        if let ignoring {
            p.arguments = ["-c", "trap '' \(ignoring); exec \"$0\" \"$@\"", try ImgtoolBinary.path()] + args + ["--qemu-img", wrapper]
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
        }
        p.currentDirectoryURL = URL(fileURLWithPath: store)
        p.environment = environment
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        try waitFor("started")
        return p
    }

    /// Waits (up to 20 s) for the wrapper's marker file.
    func waitFor(_ marker: String) throws {
        for _ in 0..<2000 {
            if FileManager.default.fileExists(atPath: root.file(marker)) { return }
            usleep(10_000)
        }
        throw ToolError("the qemu-img wrapper never wrote \(marker)")
    }

    /// Mounts a tmpfs of `size` at a new folder `name` under the root; unmount with `unmount`. Mode 0700: a tmpfs
    /// root is 1777 by default, which imgtool refuses as a save folder (any user could plant a save there).
    func tmpfs(_ name: String, size: String) throws -> String {
        let dir = try root.mkdir(name)
        guard shell("mount -t tmpfs -o size=\(size),mode=0700 tmpfs \(shellQuote(dir))") == 0 else {
            throw ToolError("mount -t tmpfs failed: these tests need root (they run as root here)")
        }
        return dir
    }

    func unmount(_ dir: String) { _ = shell("umount \(shellQuote(dir)) 2>/dev/null || umount -l \(shellQuote(dir))") }
}

/// A qemu-nbd serving `image`, read-only or read-write, stopped by PID when the value goes away.
final class NBDHolder {
    let pid: Int32

    init(_ image: String, format: String, readOnly: Bool, in root: TempDir) throws {
        let nbd = try #require(which("qemu-nbd"), "qemu-nbd (qemu-utils) is needed")
        let pidFile = root.file("nbd-\(UUID().uuidString.prefix(6)).pid")
        var args = [nbd, "--fork", "--pid-file", pidFile, "-k", root.file("nbd-\(UUID().uuidString.prefix(6)).sock"), "-f", format]
        if readOnly { args.append("-r") }
        args.append(image)
        guard shell(args.map(shellQuote).joined(separator: " ") + " >/dev/null 2>&1") == 0 else { throw ToolError("qemu-nbd did not start") }
        let text = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        pid = try #require(Int32(text))
    }

    deinit {
        kill(pid, SIGTERM)
        for _ in 0..<200 where kill(pid, 0) == 0 { usleep(10_000) }
    }
}
