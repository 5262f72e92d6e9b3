import ArgumentParser
import ImageOps
import QCow2

struct Chain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the backing chain, top first, as far as it can be followed, and how to fix a break.")

    @Argument(help: "The top image.")
    var image: String

    @Option(name: .long, help: "Stop following after this many layers.")
    var maxDepth: Int = BackingChain.defaultMaxDepth

    @OptionGroup var options: ReadOptions

    func validate() throws {
        guard maxDepth >= 1 else { throw ValidationError("--max-depth must be at least 1") }
    }

    func run() throws {
        let chain = try BackingChain.follow(image, maxDepth: maxDepth)
        let report = ChainReport(image: image, chain: chain)
        switch options.output {
        case .json: print(report.json.rendered())
        case .human: print(report.human(style: .forStandardOutput()))
        }
        if !chain.isHealthy { throw ExitCode(2) }
    }
}
