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
    @Flag(name: .long, help: "Add each chain's space totals and what the store could reclaim.")
    var space = false
    @Flag(name: .long, help: "Check every image (as imgtool check), in one process; exit 2 when any has leaks or corruptions.")
    var check = false
    @OptionGroup var options: ReadOptions

    func run() async throws {
        guard FileIdentity.of(path: dir)?.kind == .directory else { throw ReadError.notAFolder(path: dir) }
        let scan = await Scan.run(dir, space: space && !fixPlan)
        if fixPlan {
            let plan = scan.fixPlan
            printOut(plan.isEmpty ? "# no broken link has exactly one candidate" : plan.joined(separator: "\n"))
        } else {
            let totals = space ? StoreSpace.compute(scan) : nil
            let checked = check ? await StoreCheck.run(scan) : nil
            let extra = (totals.map { [("space", $0.json)] } ?? []) + (checked.map { [("check", $0.json)] } ?? [])
            switch options.output {
            case .json: await scan.printJSON(extra: extra)
            case .human:
                await scan.printHuman(style: .forStandardOutput())
                if let totals { printOut(totals.human) }
                if let checked { printOut(checked.human(style: .forStandardOutput())) }
            }
            if checked?.hasProblems == true { throw ExitCode(2) }
        }
        if scan.hasBrokenLinks { throw ExitCode(2) }
    }
}
