import QCow2
import ArgumentParser
import ImageOps

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Vet an untrusted image before qemu-img opens it: exit 2 when it reaches outside itself or cannot be trusted.")

    @Argument(help: "The image.") var image: String
    @Option(name: .long, help: "The format the sender claims (a qcow2 sent as raw is unsafe).") var format: String?
    @OptionGroup var options: ReadOptions

    func run() throws {
        let v = Verification.run(image, claimed: format)
        switch options.output {
        case .json: v.json.printToStandardOutput()
        case .human: printOut(v.human(style: .forStandardOutput()))
        }
        if v.format == nil { throw ExitCode(1) }
        if !v.safe { throw ExitCode(2) }
    }
}
