import QCow2
import ArgumentParser
import ImageOps

struct Undo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "undo",
        abstract: "Put back the header saved by the last fix-backing or rebase --unsafe (or the image as it was before check --repair), if the image is as imgtool left it (or still as saved).")

    @Argument(help: "The image.") var image: String
    @Flag(name: .long, help: "Check only; change nothing.") var dryRun = false

    func run() throws {
        let result = try HeaderBackup.undo(image, dryRun: dryRun)
        var words = result.found.words
        if result.repairBytes != nil {
            switch result.found {
            case .changed: words = "it is as the repair left it"
            case .changedUnrecorded: words = "imgtool was stopped during the repair (qemu-img writes only what the save holds, and past the old end)"
            case .neverLanded: words = "it is as it was before the repair: the repair never landed"
            }
        }
        let found = "\(Untrusted.shown(image)): \(words)"
        let save = Untrusted.shown(result.saveFile)
        // A repair's save holds every byte the repair may rewrite, not a header.
        let what = result.repairBytes.map { "the \($0) bytes saved before the repair" } ?? "the header saved"
        switch (result.found, dryRun) {
        case (.neverLanded, true):
            printOut("\(found)\nwould drop the save \(save); nothing to put back\ndry run: nothing was changed")
        case (.neverLanded, false):
            printOut("\(found)\nnothing to put back; dropped the save \(save)")
        case (_, true):
            printOut("\(found)\nwould put back \(what) in \(save)\ndry run: nothing was changed")
        case (_, false):
            printOut("\(found)\nput back \(what) in \(save)")
        }
    }
}
