import QCow2
import ArgumentParser
import ImageOps

struct Partitions: ParsableCommand, RequestCommand {
    static let configuration = CommandConfiguration(
        commandName: "partitions",
        abstract: "Show the partition table the guest sees (raw directly, qcow2 through its chain) and how to mount each.")

    @Argument(help: "The image.") var image: String
    @OptionGroup var options: ReadOptions

    var request: Request { .partitions(image: image, output: options.output.library) }

    func run() throws {
        let code = try request.runWithoutAwaiting() ?? 0
        if code != 0 { throw ExitCode(code) }
    }
}
