import ImageOps
import QCow2

/// What a command line asks for, whichever parser read it. ArgumentParser's commands and the fast path both end in
/// one of these, and only this runs the work, so both paths print the same bytes and exit the same way; the
/// generated-argv test compares the two parsers by comparing these values.
enum Request: Sendable, Equatable {
    case info(image: String, output: ReadCommands.Output)
    case chain(image: String, maxDepth: Int, output: ReadCommands.Output)
    /// `chain IMAGE --live`: the running QEMU's chain beside the one on disk.
    case liveChain(image: String, output: ReadCommands.Output)
    case partitions(image: String, output: ReadCommands.Output)
    case offset(image: String, number: Int)
    case who(image: String, output: ReadCommands.Output)
    /// `space IMAGE [--store DIR]`: where the chain's bytes are.
    case space(image: String, store: String?, output: ReadCommands.Output)
    case fixBacking(ChangeCommands.FixBackingRequest)
    /// `check IMAGE` without `--repair` (a repair is `Check.run`'s own): the native consistency check.
    case check(image: String, output: ReadCommands.Output)

    /// Does the work; returns the exit code (0 done or healthy, 2 found problems). For ArgumentParser's commands,
    /// which are async; every request runs on the calling thread (`runWithoutAwaiting`).
    func run() async throws -> Int32 {
        try runWithoutAwaiting() ?? 0
    }

    /// The work, on the calling thread, with no concurrency runtime (starting its threads would cost more than
    /// these commands): every read, a live change (QMP is synchronous), a dry run, and `fix-backing`'s change
    /// (qemu-img run by `QemuImg.runBlocking`). Nil for none today.
    func runWithoutAwaiting() throws -> Int32? {
        switch self {
        case .info(let image, let output): return try ReadCommands.info(image, output: output)
        case .chain(let image, let maxDepth, let output): return try ReadCommands.chain(image, maxDepth: maxDepth, output: output)
        case .liveChain(let image, let output): return try LiveCommands.chain(image, output: output)
        case .partitions(let image, let output): return try ReadCommands.partitions(image, output: output)
        case .offset(let image, let number): return try ReadCommands.offset(image, number: number)
        case .who(let image, let output): return try ReadCommands.who(image, output: output)
        case .space(let image, let store, let output): return try ReadCommands.space(image, store: store, output: output)
        case .check(let image, let output): return try CheckCommands.check(image, output: output)
        case .fixBacking(let request):
            if request.live {
                try LiveCommands.fixBacking(request.images, to: request.to, style: request.style, options: request.options)
                return 0
            }
            guard request.options.dryRun else {
                try ChangeCommands.execute(try ChangeCommands.plans(for: request), for: request)
                return 0
            }
            for plan in try ChangeCommands.plans(for: request) { try ChangeCommands.describe(plan, request.options) }
            return 0
        }
    }
}

/// A parsed ArgumentParser command that ends in a `Request`.
protocol RequestCommand {
    /// What it asks for.
    var request: Request { get }
}
