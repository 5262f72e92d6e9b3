import QCow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Runs a checked plan: saves headers, runs qemu-img, records the result for `undo`, and cleans up after a failure.
public enum Executor {
    /// Everything a run did, for the report.
    public struct Outcome: Sendable {
        /// Files the headers were saved to.
        public var saved: [String] = []
    }

    /// Runs the plan's commands through `qemuImg`. A failure removes a file we reserved (it is ours and empty or
    /// half written) and leaves every other file as qemu-img left it.
    public static func execute(_ plan: Plan, qemuImg: QemuImg) async throws -> Outcome {
        var outcome = Outcome()
        var backups: [HeaderBackup] = []
        for image in plan.saveHeaders {
            let b = try HeaderBackup.save(image)
            backups.append(b)
            if let id = FileIdentity.of(path: image) { outcome.saved.append(HeaderBackup.saveFile(for: id)) }
        }
        do {
            for command in plan.commands {
                try await qemuImg.run(command, passThroughOutput: plan.progress)
            }
        } catch {
            if let reserved = plan.reserved { unlink(reserved) }
            throw error
        }
        for var b in backups { try b.recordAfter() }
        return outcome
    }

    /// The dry-run text: the checks and the exact command lines.
    public static func describe(_ plan: Plan, qemuImg: QemuImg) -> String {
        var lines = plan.checks.map { "checked: " + $0 }
        for image in plan.saveHeaders { lines.append("would save the header of \(image) to \(HeaderBackup.directory())") }
        lines += plan.commands.map { qemuImg.commandLine($0) }
        // The checks name files: each line is shown escaped, so none can hold a raw escape or forge a line.
        return lines.map(Untrusted.shown).joined(separator: "\n")
    }
}
