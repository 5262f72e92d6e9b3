import QCow2

/// The reading commands' work, shared by the ArgumentParser commands and the start-up fast path, so both print the
/// same bytes and return the same exit code.
public enum ReadCommands {
    /// Output styles of the reading commands.
    public enum Output: String, Sendable, CaseIterable {
        case human, json
    }

    /// `imgtool info`: prints the image; throws when it cannot be read.
    public static func info(_ image: String, output: Output) throws(ImageInfo.Error) -> Int32 {
        let info = try ImageInfo.read(image)
        switch output {
        case .json: info.json.printToStandardOutput()
        case .human: printOut(ImageReport.human(info))
        }
        return 0
    }

    /// `imgtool chain`: prints the chain; 0 healthy, 2 with problems; throws when the top cannot be read.
    public static func chain(_ image: String, maxDepth: Int, output: Output) throws(ImageInfo.Error) -> Int32 {
        let chain = try BackingChain.follow(image, maxDepth: maxDepth)
        let report = ChainReport(image: image, chain: chain)
        switch output {
        case .json: report.json.printToStandardOutput()
        case .human: printOut(report.human(style: .forStandardOutput()))
        }
        return chain.isHealthy ? 0 : 2
    }

    /// Recognises the plain forms of `info` and `chain` (`imgtool chain IMAGE [--output json] [--max-depth N]`)
    /// without ArgumentParser, whose reflection costs milliseconds of start-up on every run. Anything else — help,
    /// a typo, an option it does not know — returns nil and goes through the full parser.
    public static func fastPath(_ argv: [String]) -> (() throws(ImageInfo.Error) -> Int32)? {
        guard argv.count >= 2, argv[0] == "info" || argv[0] == "chain" else { return nil }
        var image: String?
        var output = Output.human
        var maxDepth = BackingChain.defaultMaxDepth
        var i = 1
        while i < argv.count {
            let a = argv[i]
            func value() -> String? {
                i += 1
                return i < argv.count ? argv[i] : nil
            }
            if a == "--output" || a.hasPrefix("--output=") {
                guard let v = a == "--output" ? value() : String(a.dropFirst(9)), let o = Output(rawValue: v) else { return nil }
                output = o
            } else if argv[0] == "chain", a == "--max-depth" || a.hasPrefix("--max-depth=") {
                guard let v = a == "--max-depth" ? value() : String(a.dropFirst(12)), let n = Int(v), n >= 1 else { return nil }
                maxDepth = n
            } else if a.hasPrefix("-") || image != nil {
                return nil
            } else {
                image = a
            }
            i += 1
        }
        guard let image else { return nil }
        if argv[0] == "info" {
            return { () throws(ImageInfo.Error) in try info(image, output: output) }
        }
        return { () throws(ImageInfo.Error) in try chain(image, maxDepth: maxDepth, output: output) }
    }
}
