import Foundation
import Testing

/// The three targets mean what they say: QCow2 and ImageOps return values and never print, read argv, import
/// ArgumentParser or (QCow2) start a process; only the CLI target does. And no source file holds two things.
@Suite struct LayeringTests {
    static let sources: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources").path
    }()

    static func swiftFiles(_ target: String) -> [String] {
        let root = sources + "/" + target
        let files = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String } ?? []
        return files.filter { $0.hasSuffix(".swift") }.map { root + "/" + $0 }.sorted()
    }

    @Test(arguments: ["QCow2", "ImageOps"]) func librariesNeitherPrintNorParse(_ target: String) throws {
        var forbidden = [#"(?m)^\s*import\s+ArgumentParser"#, #"\bprint\("#, #"\bprintOut\("#, #"\bprintError\("#,
                         #"CommandLine\.(arguments|argc|unsafeArgv)"#, #"\bwrite\((1|2|STDOUT_FILENO|STDERR_FILENO),"#,
                         #"FileDescriptor\.standard(Output|Error)"#]
        if target == "QCow2" { forbidden += [#"(?m)^\s*import\s+Subprocess"#, #"\bposix_spawn"#, #"\bfork\("#, #"\bexecv"#] }
        let files = Self.swiftFiles(target)
        #expect(files.count > 5, "found no sources under \(Self.sources)/\(target)")
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            for pattern in forbidden where text.range(of: pattern, options: .regularExpression) != nil {
                Issue.record("\(file) matches \(pattern): the \(target) target must not print, parse argv or spawn")
            }
        }
    }

    @Test func noSourceFileHoldsTwoThings() throws {
        for target in ["QCow2", "ImageOps", "imgtool"] {
            for file in Self.swiftFiles(target) {
                let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).count
                #expect(lines <= 320, "\(file) has \(lines) lines")
            }
        }
    }
}
