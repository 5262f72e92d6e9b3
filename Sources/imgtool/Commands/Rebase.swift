import QCow2
import ArgumentParser
import ImageOps

#if canImport(Glibc)
import Glibc
#endif

struct Rebase: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebase",
        abstract: "Put IMAGE on a new backing file (guest data kept), or flatten it; --unsafe rewrites the header only.")

    @Argument(help: "The image.") var image: String
    @Option(name: .long, help: "The new backing file.") var onto: String?
    @Flag(name: .long, help: "Copy the whole chain into IMAGE and drop its backing link.") var flatten = false
    @Flag(name: .long, help: "Rewrite the header only (qemu-img rebase -u); the header is saved for undo.") var unsafe = false
    @Flag(name: .long, help: "Go on although IMAGE has internal snapshots: they read what the change alters and will change too.") var force = false
    @Flag(name: .long, help: "With --flatten: the running QEMU holding IMAGE streams the data in.") var live = false
    @OptionGroup var change: ChangeOptions

    func validate() throws {
        guard (onto != nil) != flatten else { throw ValidationError("give exactly one of --onto PATH and --flatten") }
        if live && !flatten { throw ValidationError("--live works with --flatten (QEMU cannot rebase onto another file live)") }
    }

    func run() async throws {
        if live { return try LiveCommands.flatten(image, force: force, options: change.library) }
        let plan = try Operations.rebase(image, onto: onto, flatten: flatten, unsafe: unsafe, force: force, progress: isatty(1) == 1)
        try await change.carryOut(plan)
    }
}
