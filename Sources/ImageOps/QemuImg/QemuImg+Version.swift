import QCow2
import Subprocess
import SystemPackage

/// What `imgtool --version` reports about the qemu-img it would run.
extension QemuImg {
    /// What `qemu-img --version` said.
    public enum VersionOutcome: Sendable, Equatable {
        /// The version word its first line names (`qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u16)` → `7.2.22`).
        case version(String)
        /// It ran but did not say a version we recognise: why, in a few words (`exit 3`, `no version in its output`).
        case unknown(String)
    }

    /// Runs `qemu-img --version` and reads its first line. Never throws: `--version` is what a bug report quotes, so a
    /// qemu-img that fails or prints something else is described, not an error.
    public func version() async -> VersionOutcome {
        let status: TerminationStatus
        let output: String
        do {
            let r = try await Subprocess.run(
                .path(FilePath(pathString: path)), arguments: ["--version"], input: .none,
                output: .bytes(limit: 64 << 10), error: .discarded)
            (status, output) = (r.terminationStatus, String(pathBytes: r.standardOutput))
        } catch {
            return .unknown("could not run it: \(error)")
        }
        switch status {
        case .exited(0): break
        case .exited(let code): return .unknown("exit \(code)")
        case .signaled(let sig): return .unknown("killed by signal \(sig)")
        }
        return Self.parseVersion(output).map(VersionOutcome.version) ?? .unknown("no version in its output")
    }

    /// The version word of `qemu-img --version`'s first line (`qemu-img version A.B.C …`), nil when the line is not
    /// that. The word is checked to be a plain version (digits, letters, `.+~-`, at most 64 characters): it comes from
    /// whatever program the path named and ends up on a terminal.
    public static func parseVersion(_ output: String) -> String? {
        guard let line = output.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first else { return nil }
        let words = line.split(separator: " ")
        guard words.count >= 3, words[0] == "qemu-img", words[1] == "version" else { return nil }
        let word = words[2]
        let allowed = word.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || ".+~-".unicodeScalars.contains($0)) }
        guard !word.isEmpty, word.count <= 64, allowed, word.first?.isNumber == true else { return nil }
        return String(word)
    }
}
