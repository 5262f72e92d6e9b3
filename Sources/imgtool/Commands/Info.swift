import ArgumentParser
import ImageOps
import QCow2

struct Info: ParsableCommand, RequestCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show one image: format, sizes, qcow2 header, backing link.")

    @Argument(help: "The image file.")
    var image: String

    @OptionGroup var options: ReadOptions

    var request: Request { .info(image: image, output: options.output.library) }

    func run() throws {
        let code = try request.runWithoutAwaiting() ?? 0
        if code != 0 { throw ExitCode(code) }
    }
}
