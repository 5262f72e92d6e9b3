import Foundation
import Testing
@testable import QCow2
import TestSupport

/// Runs `qemu-img check --output=json` and the native checker on one image and says every way they differ.
enum CheckDiff {
    /// qemu-img check's JSON keys, each with the native result's value (nil and 0 are both "not printed").
    static let keys: [(String, @Sendable (ImageCheck) -> UInt64?)] = [
        ("check-errors", { $0.checkErrors }), ("corruptions", { $0.corruptions }), ("leaks", { $0.leaks }),
        ("corruptions-fixed", { $0.corruptionsFixed }), ("leaks-fixed", { $0.leaksFixed }),
        ("image-end-offset", { $0.imageEndOffset }), ("total-clusters", { $0.totalClusters }),
        ("allocated-clusters", { $0.allocatedClusters }), ("fragmented-clusters", { $0.fragmentedClusters }),
        ("compressed-clusters", { $0.compressedClusters }),
    ]

    /// What qemu-img answered.
    enum Theirs {
        case counts([String: Any], status: Int32)
        case unsupported
        /// "Check failed: REASON", no counts.
        case failed(String)
        /// It could not open the image.
        case refused(String)
    }

    static func theirs(_ path: String) throws -> Theirs {
        let r = try runProgram(try QemuImg.path(), ["check", "--output=json", path])
        if r.status == 63 { return .unsupported }
        if let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] {
            return .counts(obj, status: r.status)
        }
        if let range = r.stderr.range(of: "Check failed: ") {
            return .failed(String(r.stderr[range.upperBound...]).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return .refused(r.stderr)
    }

    /// The native answer: a result, or why there is none.
    static func ours(_ path: String) -> Result<ImageCheck, any Error> {
        do {
            let info = try ImageInfo.read(path, mode: .check)
            return .success(try ImageChecker.check(info))
        } catch {
            return .failure(error)
        }
    }

    /// Every disagreement between the two on `path`, as sentences naming `label`; empty when they agree.
    static func differences(_ path: String, _ label: String) throws -> [String] {
        try compared(path, label).differences
    }

    /// qemu-img's answer and every disagreement with imgtool's.
    static func compared(_ path: String, _ label: String) throws -> (theirs: Theirs, differences: [String]) {
        let t = try theirs(path)
        return (t, differences(t, ours(path), label))
    }

    static func differences(_ t: Theirs, _ o: Result<ImageCheck, any Error>, _ label: String) -> [String] {
        switch (t, o) {
        case (.unsupported, .failure(let e)):
            guard case .unsupported = e as? ImageCheck.Error else { return ["\(label): qemu-img has no check for it; imgtool fails otherwise: \(e)"] }
            guard "\(e)".contains("This image format does not support checks") else { return ["\(label): wording \(e)"] }
            return []
        case (.unsupported, .success(let c)):
            return ["\(label): qemu-img has no check for it; imgtool checked it: \(c)"]
        case (.refused, .failure(let e)):
            if case .unsupported = e as? ImageCheck.Error { return ["\(label): qemu-img cannot open it; imgtool says unsupported"] }
            return []
        case (.refused(let why), .success(let c)):
            return ["\(label): qemu-img cannot open it (\(why)); imgtool checked it: \(c.corruptions) corruptions"]
        case (.failed(let why), .success(let c)):
            return c.aborted == why ? [] : ["\(label): qemu-img check failed (\(why)); imgtool's failure: \(c.aborted ?? "none"), \(c.findings.map(\.message))"]
        case (.failed(let why), .failure(let e)):
            return ["\(label): qemu-img check failed (\(why)); imgtool threw \(e)"]
        case (.counts(_, let status), .failure(let e)):
            return ["\(label): qemu-img answered (exit \(status)); imgtool threw \(e)"]
        case (.counts(let obj, let status), .success(let c)):
            var out: [String] = []
            if c.aborted != nil { out.append("\(label): imgtool failed (\(c.aborted ?? "")) where qemu-img answered") }
            for (key, get) in keys {
                let want = (obj[key] as? NSNumber)?.uint64Value ?? 0
                let got = get(c) ?? 0
                if want != got { out.append("\(label): \(key) qemu-img \(want), imgtool \(got); findings \(c.findings.map(\.message))") }
            }
            if obj["format"] as? String != c.format.rawValue { out.append("\(label): format \(obj["format"] ?? "nil") vs \(c.format.rawValue)") }
            let exit: Int32 = c.checkErrors > 0 ? 1 : c.corruptions > 0 ? 2 : c.leaks > 0 ? 3 : 0
            if exit != status { out.append("\(label): qemu-img exit \(status), imgtool's counts mean \(exit)") }
            return out
        }
    }

    /// qemu-img's answer for `path` as JSON, to assert a case is really the corruption it means to be.
    static func counts(_ path: String) throws -> [String: Any] {
        guard case .counts(let obj, _) = try theirs(path) else { return [:] }
        return obj
    }
}

/// Image building for the check tests: qemu-img, qemu-io and byte edits.
enum CheckImages {
    static func create(_ path: String, _ fmt: String, _ size: String, _ opts: [String] = []) throws {
        try QemuImg.run(["create", "-q", "-f", fmt] + opts + [path, size])
    }

    /// Runs qemu-io commands on `path` (opened as `fmt`).
    static func io(_ path: String, _ fmt: String, _ commands: [String]) throws {
        let exe = try #require(which("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)")
        let r = try runProgram(exe, ["-f", fmt] + commands.flatMap { ["-c", $0] } + [path])
        guard r.status == 0, !r.stdout.contains("failed") else { throw ToolError("qemu-io \(commands): \(r.stdout)\(r.stderr)") }
    }

    static func read(_ path: String, at offset: UInt64, _ count: Int) throws -> [UInt8] {
        let h = try #require(FileHandle(forReadingAtPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: offset)
        return [UInt8](try h.read(upToCount: count) ?? Data())
    }

    static func u32(_ path: String, at offset: UInt64) throws -> UInt64 {
        let b = try read(path, at: offset, 4)
        return b.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    static func u64(_ path: String, at offset: UInt64) throws -> UInt64 {
        let b = try read(path, at: offset, 8)
        return b.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    static func putU32(_ path: String, at offset: UInt64, _ v: UInt64) throws {
        try patch(path, at: offset, (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) })
    }

    static func putU64(_ path: String, at offset: UInt64, _ v: UInt64) throws {
        try patch(path, at: offset, (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) })
    }

    static func size(_ path: String) throws -> UInt64 {
        ((try FileManager.default.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.uint64Value ?? 0
    }

    static func truncate(_ path: String, to size: UInt64) throws {
        let h = try #require(FileHandle(forUpdatingAtPath: path))
        try h.truncate(atOffset: size)
        try h.close()
    }

    static func copy(_ from: String, _ to: String) throws {
        try FileManager.default.copyItem(atPath: from, toPath: to)
    }

    /// A copy of `from` as `name.ext` in `dir`, edited by `edit`, added to `cases` under `name`.
    static func variant(_ cases: inout [(String, String)], _ dir: TempDir, _ name: String, _ ext: String, from: String,
                        _ edit: (String) throws -> Void) throws {
        let p = dir.file(name + "." + ext)
        try copy(from, p)
        try edit(p)
        cases.append((name, p))
    }
}
