import ArgumentParser
import ImageOps
import QCow2

struct Space: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "space",
        abstract: "Where the chain's bytes are, layer by layer, and what a commit or a flatten would do.")

    @Argument(help: "The top image.")
    var image: String

    @Option(name: .long, help: "Also look under DIR (to any depth) for images backed by a layer.")
    var store: String?

    @OptionGroup var options: ReadOptions

    func run() throws {
        let report = try SpaceReport.read(image, store: store)
        switch options.output {
        case .json: report.json.printToStandardOutput()
        case .human: printOut(report.human(style: .forStandardOutput()))
        }
    }
}
