import QCow2
import ArgumentParser
import ImageOps

struct Undo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "undo",
        abstract: "Put back the header saved by the last fix-backing or rebase --unsafe, if the image holds the header imgtool wrote (or still the saved one).")

    @Argument(help: "The image.") var image: String
    @Flag(name: .long, help: "Check only; change nothing.") var dryRun = false

    func run() throws {
        let result = try HeaderBackup.undo(image, dryRun: dryRun)
        let found = "\(Untrusted.shown(image)): \(result.found.words)"
        let save = Untrusted.shown(result.saveFile)
        switch (result.found, dryRun) {
        case (.neverLanded, true):
            printOut("\(found)\nwould drop the save \(save); nothing to put back\ndry run: nothing was changed")
        case (.neverLanded, false):
            printOut("\(found)\nnothing to put back; dropped the save \(save)")
        case (_, true):
            printOut("\(found)\nwould put back the header saved in \(save)\ndry run: nothing was changed")
        case (_, false):
            printOut("\(found)\nput back the header saved in \(save)")
        }
    }
}
