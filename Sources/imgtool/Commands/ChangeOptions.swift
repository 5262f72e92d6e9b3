import ArgumentParser
import ImageOps
import QCow2

/// Options every changing command shares.
struct ChangeOptions: ParsableArguments {
    @Flag(name: .long, help: "Run every check and print the exact qemu-img command line; change nothing.")
    var dryRun = false

    @Option(name: .long, help: "The qemu-img binary (default: IMGTOOL_QEMU_IMG, then qemu-img on PATH).")
    var qemuImg: String?

    /// Prints the plan (dry run) or runs it, then shows the chain of what changed.
    func carryOut(_ plan: Plan) async throws {
        try await ChangeCommands.carryOut(plan, library)
    }

    /// The same options for the library.
    var library: ChangeCommands.Options { ChangeCommands.Options(dryRun: dryRun, qemuImg: qemuImg) }
}
