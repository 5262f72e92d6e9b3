import ArgumentParser
import ImageOps
import QCow2

#if canImport(Glibc)
import Glibc
#endif

struct Commit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Merge IMAGE's data into its backing file (or a deeper LAYER) through qemu-img commit.",
        discussion: """
            Afterwards the chain reads LAYER ← IMAGE and the guest sees the same bytes. Refused while a process holds \
            a layer, and (unless --force) while another image in the layers' folders or under --store is backed by a \
            layer that would change, or while IMAGE or a layer between has internal snapshots (they would change). With --live, the running QEMU that holds IMAGE does the merge.
            """)

    @Argument(help: "The overlay whose data is merged down.") var image: String
    @Option(name: .long, help: "The layer to merge into (default: IMAGE's backing file).") var base: String?
    @Option(name: .long, help: "Also look under DIR for other images backed by a layer that changes.") var store: String?
    @Flag(name: .long, help: "Commit even when other images are backed by a layer that changes (their data is corrupted) or a layer that changes its view has internal snapshots (they change too).") var force = false
    @Flag(name: .long, help: "Have the running QEMU that holds IMAGE do it (QMP block-commit).") var live = false
    @OptionGroup var change: ChangeOptions

    func run() async throws {
        if live { return try LiveCommands.commit(image, base: base, store: store, force: force, options: change.library) }
        let checked = try Operations.commit(image, base: base, store: store, force: force, progress: isatty(1) == 1 && !change.dryRun)
        try await change.carryOut(checked.plan)
        if !change.dryRun, let moved = checked.renamedLayers() {
            throw ChangeError.pathMoved(path: image, detail: moved)
        }
        if !change.dryRun {
            printOut("committed \(Untrusted.shown(image)) into \(Untrusted.shown(checked.base))")
            if !checked.endangered.isEmpty {
                printError("imgtool: warning: --force: \(checked.endangered.map(Untrusted.shown).joined(separator: ", ")) \(checked.endangered.count == 1 ? "was" : "were") backed by a layer that changed; \(checked.endangered.count == 1 ? "its" : "their") guest data is no longer what it was")
            }
        }
    }
}
