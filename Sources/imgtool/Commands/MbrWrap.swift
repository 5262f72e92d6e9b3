import ArgumentParser
import ImageOps
import QCow2

struct MbrWrap: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mbr-wrap",
        abstract: "Write a 16 KiB MBR file whose one partition covers PARTITION, to boot it as a whole disk.")

    @Argument(help: "The bare partition (or a file holding one filesystem).") var partition: String
    @Option(name: .long, help: "The MBR file (default: PARTITION.mbr); never overwritten.") var out: String?
    @Option(name: .long, help: "Partition type in hex (default 83, Linux).") var type: String = "83"
    @Flag(name: .long, help: "Check only; write nothing.") var dryRun = false

    func validate() throws {
        guard UInt8(type, radix: 16) != nil else { throw ValidationError("--type must be a hex byte such as 83 or 0c") }
    }

    func run() throws {
        let lines = try MBRWrap.write(partition: partition, out: out ?? partition + ".mbr", type: UInt8(type, radix: 16) ?? 0x83, dryRun: dryRun)
        printOut(lines.map(Untrusted.shown).joined(separator: "\n"))
    }
}
