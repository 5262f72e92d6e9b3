import QCow2
import ArgumentParser
import ImageOps

import Glibc

@main
struct Imgtool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imgtool",
        abstract: "Read qcow2 images and backing chains natively; change them safely through qemu-img.",
        // Makes help, completions and the man page list `--version`; `main` answers it (see ImgtoolVersion.requested).
        version: "imgtool \(ImgtoolVersion.number)",
        subcommands: [Info.self, Chain.self, Space.self, Who.self, Create.self, Overlay.self, FixBacking.self, Rebase.self, Commit.self, Resize.self, Undo.self, Partitions.self, Offset.self, MbrWrap.self, ScanCommand.self, Verify.self, Check.self])

    /// Synchronous on purpose (see Entry.swift): reads run on the main thread, commands that await run through
    /// `awaiting`, which ends the process. Our own errors become `imgtool: error: …` and exit 1; usage errors
    /// `imgtool: error: …` with the usage line and exit 64 (the contract's form); help and `ExitCode` pass through.
    static func main() {
        let argv = prepare(Array(CommandLine.pathArguments.dropFirst()))
        if getenv("IMGTOOL_NO_FAST_PATH") == nil, let request = FastPath.parse(argv) {
            // Reads, live changes and dry runs stay synchronous: awaiting would start the runtime's threads for nothing.
            reporting { if let code = try request.runWithoutAwaiting() { exit(code) } }
            awaiting { exit(try await request.run()) }
        }
        // `--version` (never on the fast path: an unknown option there) names the qemu-img found, which
        // ArgumentParser's fixed version string cannot.
        if let qemuImg = ImgtoolVersion.requested(argv) {
            awaiting { printOut(await ImgtoolVersion.line(qemuImg: qemuImg)) }
        }
        reporting {
            var command: any ParsableCommand
            do { command = try parseAsRoot(argv) } catch { exitForUsage(error) }
            if let async = command as? any AsyncParsableCommand {
                awaiting {
                    var async = async
                    try await async.run()
                }
            }
            try command.run()
        }
        exit(0)
    }

    /// Ends the process for an error ArgumentParser knows: help and versions as it prints them, `ExitCode` as given,
    /// and a usage error in the contract's form (`imgtool: error: …`, then the usage line), exit 64.
    static func exitForUsage(_ error: any Swift.Error) -> Never {
        let code = exitCode(for: error)
        guard code == .validationFailure else { exit(withError: error) }
        var text = fullMessage(for: error)
        if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
        // The message may quote what was typed: each of its lines shown escaped.
        printError("imgtool: error: " + text.split(separator: "\n", omittingEmptySubsequences: false).map { Untrusted.shown(String($0)) }.joined(separator: "\n"))
        exit(code.rawValue)
    }

    /// Rewrites argv so a negative number reaches the command as the value it is, not as an unknown option:
    /// `resize IMAGE -1G`, `create IMAGE -1G` and `offset IMAGE -1` get it as a positional (behind `--`),
    /// `--max-depth -1` becomes `--max-depth=-1` (and `--type -1` `--type=-1`). The command's own check then says what is wrong with it.
    static func prepare(_ argv: [String]) -> [String] {
        func isNegativeNumber(_ a: String) -> Bool { a.count > 1 && a.hasPrefix("-") && a.dropFirst().first?.isNumber == true }
        var out: [String] = []
        var i = 0
        while i < argv.count {
            if argv[i] == "--" { out += argv[i...]; return out }
            if argv[i] == "--max-depth" || argv[i] == "--type", i + 1 < argv.count, isNegativeNumber(argv[i + 1]) {
                out.append(argv[i] + "=" + argv[i + 1])
                i += 2
                continue
            }
            out.append(argv[i])
            i += 1
        }
        guard let first = out.first, first == "resize" || first == "offset" || first == "create" else { return out }
        let negatives = out.filter(isNegativeNumber)
        guard negatives.count == 1 else { return out }
        return out.filter { !isNegativeNumber($0) } + ["--"] + negatives
    }

    /// Ends the process with `code` (ArgumentParser's own `exit` would shadow the C one here).
    static func exit(_ code: Int32) -> Never {
        Glibc.exit(code)
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
