import QCow2
import ArgumentParser
import ImageOps

struct Who: ParsableCommand, RequestCommand {
    static let configuration = CommandConfiguration(commandName: "who", abstract: "Show the processes that hold IMAGE open (exit 2 when any).")

    @Argument(help: "The image.") var image: String
    @OptionGroup var options: ReadOptions

    var request: Request { .who(image: image, output: options.output.library) }

    func run() throws {
        let code = try request.runWithoutAwaiting() ?? 0
        if code != 0 { throw ExitCode(code) }
    }
}
