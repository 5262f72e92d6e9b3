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
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let error as any ReportableError {
            printError("imgtool: error: \(error.description)")
            Self.exit(withError: ExitCode(1))
        } catch {
            exit(withError: error)
        }
    }
}

/// `--output human|json`.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case human, json
}

/// Options every reading command shares.
struct ReadOptions: ParsableArguments {
    @Option(name: .long, help: "human or json")
    var output: OutputFormat = .human
}
