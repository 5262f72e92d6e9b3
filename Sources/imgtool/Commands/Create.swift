import QCow2
import ArgumentParser
import ImageOps

struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a new image; never overwrites.")

    @Argument(help: "The new image file.") var image: String
    @Argument(help: "Virtual size: bytes, or a number with K, M, G, T (powers of 1024).") var size: String
    @Option(name: .long, help: "qcow2 or raw.") var format: String = "qcow2"
    @OptionGroup var change: ChangeOptions

    func validate() throws {
        guard Sizes.parse(size) != nil else { throw ValidationError("size '\(size)' is not a size (try 10G)") }
        guard format == "qcow2" || format == "raw" else { throw ValidationError("--format must be qcow2 or raw") }
    }

    func run() async throws {
        let plan = try Operations.create(image, size: Sizes.parse(size) ?? 0, format: format, dryRun: change.dryRun)
        try await change.carryOut(plan)
    }
}
