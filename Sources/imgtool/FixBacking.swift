import ArgumentParser
import ImageOps
import QCow2

struct FixBacking: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fix-backing",
        abstract: "Repoint a backing link at PATH without touching guest data (a checked qemu-img rebase -u).",
        discussion: """
            With no IMAGE, repoints every image in the current folder whose backing link is broken and names a \
            file called like PATH: the case of a base that moved.
            """)

    @Argument(help: "The overlays to repoint (default: the broken ones in the current folder).") var images: [String] = []
    @Option(name: .long, help: "The backing file's new path.") var to: String
    @Flag(name: .long, help: "Write the name relative to the image's folder.") var relative = false
    @Flag(name: .long, help: "Write the name as an absolute path.") var absolute = false
    @Flag(name: .long, help: "Accept a format or virtual size that differs from what the image records.") var force = false
    @OptionGroup var change: ChangeOptions

    func validate() throws {
        if relative && absolute { throw ValidationError("--relative and --absolute exclude each other") }
    }

    func run() async throws {
        var targets = images
        if targets.isEmpty {
            targets = Operations.brokenOverlays(in: ".", named: to)
            if targets.isEmpty {
                throw ChangeError.refused(path: ".", reason: "no image here has a broken backing link naming \(BackingPath.fileName(to))",
                                          hint: "imgtool scan . to see every link")
            }
            printOut("found \(targets.count) image\(targets.count == 1 ? "" : "s") with a broken link to \(BackingPath.fileName(to)): \(targets.joined(separator: ", "))")
        }
        let style: Operations.LinkStyle = absolute ? .absolute : relative ? .relative : .keep
        // Check every image before changing any, so a refusal leaves all of them as they were.
        var plans: [Plan] = []
        for image in targets { plans.append(try Operations.fixBacking(image, to: to, style: style, force: force)) }
        for plan in plans { try await change.carryOut(plan) }
        if !change.dryRun && images.isEmpty { printOut("fixed: \(targets.joined(separator: ", "))") }
    }
}
