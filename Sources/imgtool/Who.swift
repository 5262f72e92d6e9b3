import ArgumentParser
import ImageOps
import QCow2

struct Who: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the processes that hold IMAGE open (exit 2 when any).")

    @Argument(help: "The image.") var image: String
    @OptionGroup var options: ReadOptions

    func run() throws {
        guard FileIdentity.of(path: image) != nil else { throw ImageFile.Error.missing(path: image) }
        let use = InUse.check(image)
        switch options.output {
        case .json:
            JSON.object([
                ("image", .string(image)),
                ("held", .bool(use.isHeld)),
                ("write-locked", .bool(use.writeLocked)),
                ("locked", .bool(use.locked)),
                ("holders", .array(use.holders.map { .object([("pid", .int(Int64($0.pid))), ("command-line", .string($0.commandLine))]) })),
            ]).printToStandardOutput()
        case .human:
            if !use.isHeld {
                printOut("\(image): no process holds it")
            } else {
                printOut("\(image): held" + (use.writeLocked ? " (QEMU's write lock is held)" : use.locked ? " (QEMU's read lock is held)" : ""))
                for h in use.holders { printOut("  PID \(h.pid)  \(h.commandLine)") }
            }
        }
        if use.isHeld { throw ExitCode(2) }
    }
}
