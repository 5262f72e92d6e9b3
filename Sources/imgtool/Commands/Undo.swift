import QCow2
import ArgumentParser
import ImageOps

struct Undo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "undo",
        abstract: "Put back the header saved by the last fix-backing or rebase --unsafe, if the image has not changed since.")

    @Argument(help: "The image.") var image: String
    @Flag(name: .long, help: "Check only; change nothing.") var dryRun = false

    func run() throws {
        let use = InUse.check(image)
        if use.isHeld { throw ChangeError.inUse(path: image, holders: use.summary) }
        let saveFile = try HeaderBackup.restore(image, dryRun: dryRun)
        if dryRun {
            printOut("would put back the header saved in \(Untrusted.shown(saveFile))\ndry run: nothing was changed")
        } else {
            printOut("put back the header saved in \(Untrusted.shown(saveFile))")
        }
    }
}
