import ArgumentParser
import ImageOps
import QCow2

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one image: format, sizes, qcow2 header, backing link.")

    @Argument(help: "The image file.")
    var image: String

    @OptionGroup var options: ReadOptions

    func run() throws {
        let info = try ImageInfo.read(image)
        switch options.output {
        case .json: print(info.json.rendered())
        case .human: print(ImageReport.human(info))
        }
    }
}
