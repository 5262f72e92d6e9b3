import QCow2
import ArgumentParser
import ImageOps

struct Partitions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partitions",
        abstract: "Show the partition table the guest sees (raw directly, qcow2 through its chain) and how to mount each.")

    @Argument(help: "The image.") var image: String
    @OptionGroup var options: ReadOptions

    func run() throws {
        let code = try ReadCommands.partitions(image, output: options.output.library)
        if code != 0 { throw ExitCode(code) }
    }
}
