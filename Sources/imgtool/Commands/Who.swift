import QCow2
import ArgumentParser
import ImageOps

struct Who: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "who", abstract: "Show the processes that hold IMAGE open (exit 2 when any).")

    @Argument(help: "The image.") var image: String
    @OptionGroup var options: ReadOptions

    func run() throws {
        let code = try ReadCommands.who(image, output: options.output.library)
        if code != 0 { throw ExitCode(code) }
    }
}
