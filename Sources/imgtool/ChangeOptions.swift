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
        let tool = try QemuImg.locate(qemuImg)
        if dryRun {
            printOut(Executor.describe(plan, qemuImg: tool))
            printOut("dry run: nothing was changed")
            return
        }
        let outcome = try await Executor.execute(plan, qemuImg: tool)
        for saved in outcome.saved { printOut("saved the old header to \(saved) (imgtool undo puts it back)") }
        for image in plan.show {
            let chain = try BackingChain.follow(image)
            printOut(ChainReport(image: image, chain: chain).human(style: .forStandardOutput()))
        }
    }
}
