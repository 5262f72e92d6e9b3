import QCow2
import ArgumentParser
import ImageOps

struct Overlay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlay",
        abstract: "Create a qcow2 overlay on BASE, recording BASE's format; never overwrites.")

    @Argument(help: "The base image.") var base: String
    @Argument(help: "The overlay (default: BASE with its extension replaced by .cow, beside BASE).") var overlay: String?
    @Flag(name: .long, help: "Write the backing name as an absolute path.") var absolute = false
    @Flag(name: .long, help: "BASE is the active layer of a running QEMU: it switches to the overlay (live snapshot).") var live = false
    @OptionGroup var change: ChangeOptions

    func run() async throws {
        if live { return try await LiveCommands.overlay(base: base, overlay: overlay, absolute: absolute, options: change.library) }
        let plan = try Operations.overlay(base: base, overlay: overlay, absolute: absolute, dryRun: change.dryRun)
        try await change.carryOut(plan)
    }
}
