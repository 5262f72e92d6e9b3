import QCow2
import ArgumentParser
import ImageOps

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@main
struct Imgtool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imgtool",
        abstract: "Read qcow2 images and backing chains natively; change them safely through qemu-img.",
        subcommands: [Info.self, Chain.self, Who.self, Create.self, Overlay.self, FixBacking.self, Rebase.self, Commit.self, Resize.self, Undo.self, Partitions.self, Offset.self, MbrWrap.self, ScanCommand.self, Verify.self])

    /// Our own errors become `imgtool: error: …` and exit 1; everything else keeps ArgumentParser's handling
    /// (usage errors exit 64, ExitCode passes through).
    static func main() async {
        let argv = Array(CommandLine.arguments.dropFirst())
        let parsed = negativeSizesLast(argv)
        if getenv("IMGTOOL_NO_FAST_PATH") == nil, let fast = ReadCommands.fastPath(argv) {
            do {
                exit(try fast())
            } catch let error as any ReportableError {
                printError("imgtool: error: \(error.description)")
                exit(1)
            } catch {
                exit(withError: error)
            }
        }
        if getenv("IMGTOOL_NO_FAST_PATH") == nil, let request = ChangeCommands.fastPath(argv) {
            do {
                // The checks and a dry run stay synchronous: awaiting would start the runtime's threads for nothing.
                let plans = try ChangeCommands.plans(for: request)
                if request.options.dryRun {
                    for plan in plans { try ChangeCommands.describe(plan, request.options) }
                } else {
                    try await ChangeCommands.execute(plans, for: request)
                }
                exit(0)
            } catch let error as any ReportableError {
                printError("imgtool: error: \(error.description)")
                exit(1)
            } catch {
                exit(withError: error)
            }
        }
        do {
            var command = try parseAsRoot(parsed)
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let error as any ReportableError {
            printError("imgtool: error: \(error.description)")
            exit(1)
        } catch {
            exit(withError: error)
        }
    }

    /// `resize IMAGE -1G`: a size like `-1G` is no option, but ArgumentParser would read it as one. Move it to the
    /// end behind `--` so it parses as the positional it is (qemu-img makes users type the `--` themselves).
    static func negativeSizesLast(_ argv: [String]) -> [String] {
        guard argv.first == "resize", !argv.contains("--") else { return argv }
        func isNegativeSize(_ a: String) -> Bool { a.count > 1 && a.hasPrefix("-") && a.dropFirst().first?.isNumber == true }
        let negatives = argv.filter(isNegativeSize)
        guard negatives.count == 1 else { return argv }
        return argv.filter { !isNegativeSize($0) } + ["--"] + negatives
    }

    /// Ends the process with `code` (ArgumentParser's own `exit` would shadow the C one here).
    static func exit(_ code: Int32) -> Never {
        #if canImport(Glibc)
        Glibc.exit(code)
        #else
        Musl.exit(code)
        #endif
    }
}

/// `--output human|json`.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case human, json

    var library: ReadCommands.Output { self == .json ? .json : .human }
}

/// Options every reading command shares.
struct ReadOptions: ParsableArguments {
    @Option(name: .long, help: "human or json")
    var output: OutputFormat = .human
}
