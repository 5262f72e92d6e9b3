import Foundation
import Testing
import TestSupport

/// Damaged qcow2 images for the check and repair tests, built with qemu-img and qemu-io, then one small Python edit
/// of the bytes each (the classes QEMU's iotests 060 and 138 corrupt).
enum DamagedImage: String, CaseIterable, Sendable {
    /// The only L2 entry zeroed: its data cluster is held by the refcounts but referenced by nothing (1 leak).
    case leak
    /// The data cluster's refcount set to 0 while the L2 entry references it (1 corruption).
    case refcountTooLow = "low"
    /// OFLAG_COPIED cleared in an L2 entry whose cluster has refcount 1 (1 corruption).
    case copiedWrong = "copied"

    /// Byte edits, by case: header fields are big-endian (cluster_bits at 20, L1 offset at 40, refcount table at 48).
    static let script = """
        import struct, sys
        path, case = sys.argv[1], sys.argv[2]
        f = open(path, 'r+b'); h = f.read(104)
        cs = 1 << struct.unpack('>I', h[20:24])[0]
        l1 = struct.unpack('>Q', h[40:48])[0]; rt = struct.unpack('>Q', h[48:56])[0]
        f.seek(l1); l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2 + 8); e = struct.unpack('>Q', f.read(8))[0]; data = e & 0x00fffffffffffe00
        assert l2 and data
        if case == 'leak':
            f.seek(l2 + 8); f.write(struct.pack('>Q', 0))
        elif case == 'low':
            f.seek(rt); rb = struct.unpack('>Q', f.read(8))[0]
            f.seek(rb + 2 * (data // cs)); f.write(struct.pack('>H', 0))
        elif case == 'copied':
            f.seek(l2 + 8); f.write(struct.pack('>Q', e & ~(1 << 63)))
        f.close()
        """

    /// Makes `name` in `dir`: a 64 MiB qcow2 with guest data in its first three clusters, then this damage done to the
    /// second's entry.
    func make(_ name: String, in dir: String) throws {
        try QemuImg.run(["create", "-q", "-f", "qcow2", name, "64M"], cwd: dir)
        try writeData(name, in: dir)
        let py = try #require(which("python3"), "python3 is needed to damage the images")
        let r = try runProgram(py, ["-c", Self.script, dir + "/" + name, rawValue])
        guard r.status == 0 else { throw ToolError("damaging \(name) failed: \(r.stderr)") }
    }

    /// Writes three clusters of data at the start of the guest disk.
    func writeData(_ name: String, in dir: String) throws {
        let io = try #require(which("qemu-io"), "qemu-io (qemu-utils) is needed")
        let r = try runProgram(io, ["-f", "qcow2", "-c", "write -P 0x5a 0 192k", dir + "/" + name])
        guard r.status == 0 else { throw ToolError("qemu-io failed: \(r.stderr)") }
    }
}

/// `qemu-img check --output=json` of `path`, parsed, and its exit status.
func qemuImgCheck(_ path: String) throws -> (status: Int32, json: [String: Any]) {
    let r = try runProgram(try QemuImg.path(), ["check", "--output=json", path])
    let object = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
    return (r.status, object)
}

/// Another process holding `path` open (a shell with it on fd 3, then sleeping), stopped by PID.
final class FDHolder {
    let process = Process()

    init(_ path: String) throws {
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec 3<\"$0\" && echo ready && exec sleep 600", path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        // "ready" once fd 3 is open: the holder is in place before the test goes on.
        _ = out.fileHandleForReading.availableData
    }

    deinit {
        // SIGKILL: the test runner may start us with SIGTERM ignored, and the sleeping shell would inherit that.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
