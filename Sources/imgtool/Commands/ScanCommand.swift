import QCow2
import ArgumentParser
import ImageOps

struct ScanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Every image under DIR: the chains as a forest, broken links with candidates, loops, held images.")

    @Argument(help: "The folder to scan.") var dir: String
    @Flag(name: .long, help: "Print the imgtool fix-backing commands for links with exactly one candidate; run nothing.")
    var fixPlan = false
    @OptionGroup var options: ReadOptions

    func run() async throws {
        guard FileIdentity.of(path: dir)?.kind == .directory else { throw ReadError.notAFolder(path: dir) }
        let scan = await Scan.run(dir)
        if fixPlan {
            let plan = scan.fixPlan
            printOut(plan.isEmpty ? "# no broken link has exactly one candidate" : plan.joined(separator: "\n"))
        } else {
            switch options.output {
            case .json: await scan.printJSON()
            case .human: await scan.printHuman(style: .forStandardOutput())
            }
        }
        if scan.hasBrokenLinks { throw ExitCode(2) }
    }
}
