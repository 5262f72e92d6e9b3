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
        subcommands: [Info.self, Chain.self])

    /// Our own errors become `imgtool: error: …` and exit 1; everything else keeps ArgumentParser's handling
    /// (usage errors exit 64, ExitCode passes through).
    static func main() async {
        let argv = Array(CommandLine.arguments.dropFirst())
        if getenv("IMGTOOL_NO_FAST_PATH") == nil, let fast = ReadCommands.fastPath(argv) {
            do {
                let code = try fast()
                exit(code)
            } catch {
                printError("imgtool: error: \(error.description)")
                exit(1)
            }
        }
        do {
            var command = try parseAsRoot()
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
