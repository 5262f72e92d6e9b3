import ArgumentParser
import ImageOps
import QCow2

struct Check: ParsableCommand, RequestCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Is the image consistent? Read natively, no lock taken; --repair runs qemu-img check -r after saving what it may rewrite (imgtool undo puts it back).")

    /// `--repair leaks|all`.
    enum RepairMode: String, ExpressibleByArgument, CaseIterable { case leaks, all }

    @Argument(help: "The image.") var image: String
    @Option(name: .long, help: "human or json") var output: OutputFormat = .human
    @Option(name: .long, help: "Repair through qemu-img check -r (leaks or all), after saving every byte it may rewrite.")
    var repair: RepairMode?
    @OptionGroup var change: ChangeOptions

    /// The plain check's request (the fast path's too); a repair is not one: `run` does it itself.
    var request: Request { .check(image: image, output: output.library) }

    func validate() throws {
        if change.dryRun && repair == nil { throw ValidationError("--dry-run goes with --repair (a check changes nothing)") }
    }

    /// Synchronous, so a plain check (the command run in loops) never starts the concurrency runtime's threads; only
    /// a repair, which awaits qemu-img, runs through `awaiting` (see Entry.swift), which ends the process.
    func run() throws {
        if let repair, !change.dryRun {
            let (image, mode, output, options) = (image, repair.rawValue, output.library, change.library)
            Imgtool.awaiting {
                let code = try await CheckCommands.repair(image, mode: mode, output: output, options: options)
                if code != 0 { Imgtool.exit(code) }
            }
        }
        let code = try repair.map { try CheckCommands.dryRun(image, mode: $0.rawValue, options: change.library) }
            ?? request.runWithoutAwaiting() ?? 0
        if code != 0 { throw ExitCode(code) }
    }
}

/// `imgtool check`'s work: the native check and its rendering, and the repair through qemu-img.
enum CheckCommands {
    /// Checks `image` natively and prints the result: 0 clean, 2 leaks or corruptions, 1 when the check could not be
    /// completed (qemu-img's check errors) or the image cannot be checked (throws).
    static func check(_ image: String, output: ReadCommands.Output) throws -> Int32 {
        let info = try ImageInfo.read(image, mode: .check)
        let readers = Readers.of(path: image)
        let result = try ImageChecker.check(info)
        print(result, image: image, held: readers.isHeld ? readers.summary : nil, output: output)
        return exitCode(result)
    }

    /// qemu-img's exit, in the contract's codes: check errors 1 (qemu-img: "Check failed"), leaks or corruptions 2.
    static func exitCode(_ result: ImageCheck) -> Int32 {
        if result.checkErrors > 0 || result.stopped != nil { return 1 }
        return result.isClean ? 0 : 2
    }

    static func print(_ result: ImageCheck, image: String, held: String?, output: ReadCommands.Output, prefix: String = "") {
        switch output {
        case .json: result.json(shownAs: image, held: held != nil).printToStandardOutput()
        case .human:
            if let reason = result.stopped {
                // qemu-img prints no counts then: "Check failed: REASON" on its stderr, exit 1.
                printError("imgtool: error: \(Untrusted.shown(image)): Check failed: \(Untrusted.shown(reason))")
            }
            var text = prefix
            if let held {
                text += "note: \(Untrusted.shown(image)) is held by \(Untrusted.shown(held)): it may change while it is read, so this answer may be stale\n"
            }
            printOut(text + result.human(style: .forStandardOutput()))
        }
    }

    /// `check --repair`: the checks, the save, `qemu-img check -r` on the held image, then a native check again.
    /// `check --repair --dry-run`: every check, the save's size and the exact command line; nothing changed.
    static func dryRun(_ image: String, mode: String, options: ChangeCommands.Options) throws -> Int32 {
        try ChangeCommands.describe(try Operations.repair(image, mode: mode).plan, options)
        return 0
    }

    static func repair(_ image: String, mode: String, output: ReadCommands.Output, options: ChangeCommands.Options) async throws -> Int32 {
        let (plan, saved, regions) = try Operations.repair(image, mode: mode)
        let tool = try QemuImg.locate(options.qemuImg)
        // What was wrong before, to say so when qemu-img repaired on open (dirty bit) and counts nothing as fixed.
        let before = try? ImageChecker.check(try ImageInfo.read(image, mode: .check))
        let outcome = try await Executor.execute(plan, qemuImg: tool)
        let answer = QemuImgCheckAnswer(outcome.output.first ?? "")
        // With --output json, standard output is the JSON document alone.
        let say: (String) -> Void = output == .json ? { printError($0) } : { printOut($0) }
        for file in outcome.saved {
            say("saved \(saved) bytes of \(Untrusted.shown(image)) (\(regions) stretches with its holes) to \(Untrusted.shown(file)) (imgtool undo puts the damaged image back)")
        }
        for line in outcome.noUndo { say("note: " + Untrusted.shown(line)) }
        // The image as the repair left it, read natively; qemu-img's own answer when imgtool cannot check the format.
        var after: ImageCheck
        do { after = try ImageChecker.check(try ImageInfo.read(image, mode: .check)) } catch {
            after = answer.result(filename: image)
            say("note: \(Untrusted.shown(image)): imgtool could not check it again (\(Untrusted.shown("\(error)"))); qemu-img's answer is shown")
        }
        after.corruptionsFixed = answer.corruptionsFixed
        after.leaksFixed = answer.leaksFixed
        var prefix = ""
        if answer.corruptionsFixed == 0 && answer.leaksFixed == 0, let before, !before.isClean {
            say("note: \(Untrusted.shown(image)) had \(before.corruptions) errors and \(before.leaks) leaked clusters; qemu-img counts none as fixed: it repaired them when it opened the image (a dirty image's refcounts are rebuilt on open)")
        }
        if answer.corruptionsFixed > 0 || answer.leaksFixed > 0 {
            prefix = "The following inconsistencies were found and repaired:\n\n    \(answer.leaksFixed) leaked clusters\n    \(answer.corruptionsFixed) corruptions\n\nDouble checking the fixed image now...\n"
        }
        print(after, image: image, held: nil, output: output, prefix: prefix)
        return exitCode(after)
    }
}

extension ImageCheck {
    /// Why the check stopped where qemu-img's stops ("Check failed: …", exit 1), or nil.
    var stopped: String? { aborted }
}

/// The numbers of `qemu-img check --output=json`'s answer, read without a JSON library (its keys are fixed and its
/// values plain numbers).
struct QemuImgCheckAnswer {
    var checkErrors: UInt64 = 0, corruptions: UInt64 = 0, leaks: UInt64 = 0
    var corruptionsFixed: UInt64 = 0, leaksFixed: UInt64 = 0
    var format = "qcow2"

    init(_ text: String) {
        checkErrors = Self.number("check-errors", in: text)
        corruptions = Self.number("corruptions", in: text)
        leaks = Self.number("leaks", in: text)
        corruptionsFixed = Self.number("corruptions-fixed", in: text)
        leaksFixed = Self.number("leaks-fixed", in: text)
    }

    /// The number after `"key":`, or 0 when the key is absent (qemu-img leaves zero counts out).
    static func number(_ key: String, in text: String) -> UInt64 {
        guard let r = text.firstRange(of: "\"\(key)\":") else { return 0 }
        let digits = text[r.upperBound...].drop { $0 == " " }.prefix { $0.isASCII && $0.isNumber }
        return UInt64(digits) ?? 0
    }

    /// As a check result (no findings: qemu-img prints its own to its stderr).
    func result(filename: String) -> ImageCheck {
        var r = ImageCheck(filename: filename, format: .qcow2)
        r.checkErrors = checkErrors
        r.corruptions = corruptions
        r.leaks = leaks
        return r
    }
}
