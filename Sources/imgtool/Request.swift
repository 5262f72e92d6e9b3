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
    case fixBacking(ChangeCommands.FixBackingRequest)

    /// Does the work; returns the exit code (0 done or healthy, 2 found problems).
    func run() async throws -> Int32 {
        switch self {
        case .fixBacking(let request):
            // The checks and a dry run stay synchronous: awaiting would start the runtime's threads for nothing.
            let plans = try ChangeCommands.plans(for: request)
            if request.options.dryRun {
                for plan in plans { try ChangeCommands.describe(plan, request.options) }
            } else {
                try await ChangeCommands.execute(plans, for: request)
            }
            return 0
        default:
            return try runReading()
        }
    }

    /// The reading requests, synchronously (no concurrency runtime needed).
    func runReading() throws -> Int32 {
        switch self {
        case .info(let image, let output): return try ReadCommands.info(image, output: output)
        case .chain(let image, let maxDepth, let output): return try ReadCommands.chain(image, maxDepth: maxDepth, output: output)
        case .liveChain(let image, let output): return try LiveCommands.chain(image, output: output)
        case .partitions(let image, let output): return try ReadCommands.partitions(image, output: output)
        case .offset(let image, let number): return try ReadCommands.offset(image, number: number)
        case .who(let image, let output): return try ReadCommands.who(image, output: output)
        case .fixBacking: return 0  // not a read: main sends it through run(), never here
        }
    }

    /// True for the requests that never change a file (they need no concurrency runtime).
    var isReading: Bool {
        if case .fixBacking = self { return false }
        return true
    }
}

/// A parsed ArgumentParser command that ends in a `Request`.
protocol RequestCommand {
    /// What it asks for.
    var request: Request { get }
}
