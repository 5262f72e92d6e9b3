import ArgumentParser
import ImageOps
import QCow2

struct FixBacking: AsyncParsableCommand, RequestCommand {
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
    @Flag(name: .long, help: "The running QEMU holding IMAGE rewrites the name; PATH must be the file it reads.") var live = false
    @OptionGroup var change: ChangeOptions

    func validate() throws {
        if relative && absolute { throw ValidationError("--relative and --absolute exclude each other") }
    }

    var request: Request {
        let style: Operations.LinkStyle = absolute ? .absolute : relative ? .relative : .keep
        return .fixBacking(.init(images: images, to: to, style: style, force: force, options: change.library, live: live))
    }

    func run() async throws {
        _ = try await request.run()
    }
}
