import Foundation

/// The result of running a program.
public struct RunResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Why a helper could not run.
public struct ToolError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Runs `executable` with `arguments` in `cwd`, collecting both streams.
public func runProgram(_ executable: String, _ arguments: [String], cwd: String? = nil, environment: [String: String]? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    // Read both pipes concurrently so a chatty child cannot fill one and block.
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// Finds a program on PATH.
public func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    for dir in ["/usr/sbin", "/sbin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
        return "\(dir)/\(name)"
    }
    return nil
}

/// The real qemu-img. Tests that need it fail (never skip) when it is missing: install qemu-utils.
public enum QemuImg {
    public static func path() throws -> String {
        guard let p = which("qemu-img") else { throw ToolError("qemu-img is not installed (apt-get install qemu-utils); this test needs the real tool") }
        return p
    }

    /// Runs qemu-img and throws with its stderr when it fails.
    @discardableResult
    public static func run(_ args: [String], cwd: String? = nil) throws -> String {
        var r = try runProgram(try path(), args, cwd: cwd)
        // LUKS key setup times PBKDF2 on CPU time; on a loaded machine qemu-img can fail that measurement
        // ("Unable to get accurate CPU usage"). It is a property of the machine, not of the image: try again.
        var tries = 1
        while r.status != 0 && r.stderr.contains("Unable to get accurate CPU usage") && tries < 5 {
            r = try runProgram(try path(), args, cwd: cwd)
            tries += 1
        }
        guard r.status == 0 else { throw ToolError("qemu-img \(args.joined(separator: " ")) failed (\(r.status)): \(r.stderr)") }
        return r.stdout
    }

    /// `qemu-img info --output=json [--backing-chain]` parsed.
    public static func info(_ path: String, chain: Bool = false, cwd: String? = nil) throws -> Any {
        var args = ["info", "--output=json"]
        if chain { args.append("--backing-chain") }
        args.append(path)
        let text = try run(args, cwd: cwd)
        return try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    /// `qemu-img info --output=json [--backing-chain]` with its types kept.
    public static func infoValue(_ path: String, chain: Bool = false, cwd: String? = nil) throws -> JSONValue {
        var args = ["info", "--output=json"]
        if chain { args.append("--backing-chain") }
        args.append(path)
        return try JSONValue.parse(try run(args, cwd: cwd))
    }
}

/// The imgtool binary built beside the test runner.
public enum ImgtoolBinary {
    public static func path() throws -> String {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // The runner may sit inside a bundle folder; walk up until the binary is beside us.
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("imgtool").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        throw ToolError("imgtool binary not found near \(exe); run swift build first")
    }

    /// Runs imgtool with `args` in `cwd`.
    public static func run(_ args: [String], cwd: String? = nil, environment: [String: String]? = nil) throws -> RunResult {
        try runProgram(try path(), args, cwd: cwd, environment: environment)
    }
}

/// A fresh folder under the system temp folder, removed when the value goes away.
public final class TempDir: @unchecked Sendable {
    public let path: String
    public init(_ label: String = "imgtool") throws {
        let base = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = (base as NSString).resolvingSymlinksInPath
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// `name` inside this folder.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Makes a subfolder.
    @discardableResult
    public func mkdir(_ name: String) throws -> String {
        try FileManager.default.createDirectory(atPath: file(name), withIntermediateDirectories: true)
        return file(name)
    }

    /// Writes bytes to `name`.
    public func write(_ name: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: file(name)))
    }
}

/// SHA-256-free checksum for "unchanged" assertions: the bytes themselves compared via a stable digest.
public func fileDigest(_ path: String) throws -> String {
    let r = try runProgram(which("sha256sum") ?? "/usr/bin/sha256sum", [path])
    guard r.status == 0 else { throw ToolError("sha256sum \(path) failed: \(r.stderr)") }
    return String(r.stdout.prefix(64))
}

/// Where the committed fixtures live.
public func fixturesDirectory(file: String = #filePath) -> String {
    URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/images").path
}

/// Runs a shell command line with system(3) and returns its exit status. For starting daemons (`--fork`) whose
/// grandchildren must not be tied to pipes or to Foundation's child monitoring.
public func shell(_ line: String) -> Int32 {
    let status = system(line)
    return status >= 0 ? (status >> 8) & 0xFF : status
}

/// Single-quotes `s` for a shell line.
public func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
