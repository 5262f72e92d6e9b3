import ArgumentParser
import ImageOps
import QCow2

struct Offset: ParsableCommand, RequestCommand {
    static let configuration = CommandConfiguration(
        commandName: "offset",
        abstract: "Print partition N's byte offset, for mount -o loop,offset=$(imgtool offset disk.raw 1).")

    @Argument(help: "The image.") var image: String
    @Argument(help: "The partition number (logical partitions from 5).") var number: Int

    func validate() throws {
        guard number >= 1 else { throw ValidationError("partition numbers start at 1 (logical partitions at 5), not \(number)") }
    }

    var request: Request { .offset(image: image, number: number) }

    func run() throws {
        let code = try request.runWithoutAwaiting() ?? 0
        if code != 0 { throw ExitCode(code) }
    }
}
