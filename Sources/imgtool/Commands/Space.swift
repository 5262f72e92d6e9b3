import ArgumentParser
import ImageOps
import QCow2

struct Space: ParsableCommand, RequestCommand {
    static let configuration = CommandConfiguration(
        commandName: "space",
        abstract: "Where the chain's bytes are, layer by layer, and what a commit or a flatten would do.")

    @Argument(help: "The top image.")
    var image: String

    @Option(name: .long, help: "Also look under DIR (to any depth) for images backed by a layer.")
    var store: String?

    @OptionGroup var options: ReadOptions

    var request: Request { .space(image: image, store: store, output: options.output.library) }

    func run() throws {
        let code = try request.runWithoutAwaiting() ?? 0
        if code != 0 { throw ExitCode(code) }
    }
}

extension ReadCommands {
    /// `imgtool space`: prints the chain's ledger (exit 2 when a link has a warning, as `chain`); throws when a layer
    /// cannot be read or the chain is broken.
    public static func space(_ image: String, store: String?, output: Output) throws(LayerSpace.Error) -> Int32 {
        let report = try SpaceReport.read(image, store: store)
        switch output {
        case .json: report.json.printToStandardOutput()
        case .human: printOut(report.human(style: .forStandardOutput()))
        }
        return report.ledger.healthy ? 0 : 2
    }
}
