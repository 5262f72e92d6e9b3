import ArgumentParser
import ImageOps
import QCow2

struct Chain: ParsableCommand, RequestCommand {
    static let configuration = CommandConfiguration(
        commandName: "chain",
        abstract: "Show the backing chain, top first, as far as it can be followed, and how to fix a break.")

    @Argument(help: "The top image.")
    var image: String

    @Option(name: .long, help: "Stop following after this many backing links.")
    var maxDepth: Int = BackingChain.defaultMaxDepth

    @Flag(name: .long, help: "Show the chain the running QEMU holding IMAGE has open beside the one on disk.")
    var live = false

    @OptionGroup var options: ReadOptions

    func validate() throws {
        guard maxDepth >= 1 else { throw ValidationError("--max-depth must be at least 1") }
    }

    var request: Request {
        live ? .liveChain(image: image, output: options.output.library) : .chain(image: image, maxDepth: maxDepth, output: options.output.library)
    }

    func run() throws {
        let code = try request.runWithoutAwaiting() ?? 0
        if code != 0 { throw ExitCode(code) }
    }
}
