import ArgumentParser
import ImageOps
import QCow2

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show one image: format, sizes, qcow2 header, backing link.")

    @Argument(help: "The image file.")
    var image: String

    @OptionGroup var options: ReadOptions

    func run() throws {
        let code = try ReadCommands.info(image, output: options.output.library)
        if code != 0 { throw ExitCode(code) }
    }
}
