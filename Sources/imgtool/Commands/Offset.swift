import ArgumentParser
import ImageOps
import QCow2

struct Offset: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offset",
        abstract: "Print partition N's byte offset, for mount -o loop,offset=$(imgtool offset disk.raw 1).")

    @Argument(help: "The image.") var image: String
    @Argument(help: "The partition number (logical partitions from 5).") var number: Int

    func run() throws {
        let code = try ReadCommands.offset(image, number: number)
        if code != 0 { throw ExitCode(code) }
    }
}
