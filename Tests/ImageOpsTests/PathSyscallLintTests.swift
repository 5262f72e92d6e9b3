import Foundation
import Testing

/// The mechanism, not the cases: no source hands the kernel a `String` path itself (Glibc's functions would get
/// its UTF-8, another name when it is not UTF-8) or decodes a name the kernel gives back lossily. Paths go through
/// `Sys`, `withPathCString`, `FilePath(pathString:)`; names come back through `String(pathBytes:)`/`(pathCString:)`.
@Suite struct PathSyscallLintTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources").path

    @Test func pathsReachTheKernelAsBytes() throws {
        let rules: [(pattern: String, why: String)] = [
            (#"(?<![\w.])(open|lstat|stat|opendir|unlink|rename|mkdir|rmdir|access|realpath|readlink|statfs|symlink|link|chdir|truncate)\((?!["\)$])"#,
             "a path syscall given a String: use Sys.… or withPathCString"),
            (#"Glibc\.(open|lstat|opendir|unlink|rename|mkdir|access|realpath|readlink)\("#, "use Sys.…"),
            (#"FilePath\((?!pathString:|platformString:|")"#, "FilePath(String) encodes an escaped byte as UTF-8: use FilePath(pathString:)"),
            (#"String\(cString:(?!.*strerror)"#, "decode names with String(pathCString:)"),
            (#"CommandLine\.arguments"#, "argv decoded lossily: use CommandLine.pathArguments"),
        ]
        let files = FileManager.default.enumerator(atPath: Self.root)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        #expect(files.count > 50)
        for file in files where !file.hasSuffix("IO/Sys.swift") && !file.hasSuffix("IO/PathBytes.swift") {
            let lines = try String(contentsOfFile: Self.root + "/" + file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            for (i, line) in lines.enumerated() {
                let code = line.trimmingCharacters(in: .whitespaces)
                // (Declarations, enum cases and Executor's own `open(plan, path:)` are not calls of Glibc's.)
                if code.hasPrefix("//") || code.contains("func ") || code.hasPrefix("case ") || code.contains("open(plan,") { continue }
                for rule in rules where line.range(of: rule.pattern, options: .regularExpression) != nil {
                    Issue.record("\(file):\(i + 1): \(rule.why): \(code)")
                }
            }
        }
    }
}
