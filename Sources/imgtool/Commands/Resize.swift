import QCow2
import ArgumentParser
import ImageOps

struct Resize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resize",
        abstract: "Grow an image, or shrink it with --shrink (refused when it would cut a partition, a filesystem or a GPT).")

    @Argument(help: "The image.") var image: String
    @Argument(help: "New size, or +SIZE / -SIZE.") var size: String
    @Flag(name: .long, help: "Allow the image to get smaller.") var shrink = false
    @Flag(name: .long, help: "Shrink even when a partition, a filesystem or the GPT would be cut.") var force = false
    @OptionGroup var change: ChangeOptions

    func validate() throws {
        guard Operations.SizeChange(size) != nil else { throw ValidationError("size '\(size)' is not a size (try 20G, +1G or -512M)") }
    }

    func run() async throws {
        guard let change_ = Operations.SizeChange(size) else { throw ValidationError("bad size") }
        let plan = try Operations.resize(image, size: change_, shrink: shrink, force: force)
        try await change.carryOut(plan)
    }
}
