import ArgumentParser
import Foundation
import Testing
import TestSupport
@testable import imgtool

/// The fast path against ArgumentParser: over argument lists *generated* from every option, `=` form, empty value,
/// unknown option, `--` and help, wherever the fast path answers, `Imgtool.parseAsRoot` must give the same request;
/// where ArgumentParser refuses, the fast path must not answer.
@Suite struct FastPathTests {
    /// Words each command's lists are made from: its options with good, bad, empty and option-like values.
    static let pools: [String: [String]] = [
        "info": ["a.img", "b.img", "--output", "json", "human", "yaml", "--output=json", "--output=", "--max-depth", "3"],
        "who": ["a.img", "--output", "json", "--output=human", "--output=xml", ""],
        "partitions": ["a.img", "b", "--output", "json", "--output=json", "-o", "--to"],
        "chain": ["a.img", "b.img", "--output", "json", "--output=json", "--max-depth", "3", "0", "-1", "--max-depth=2", "--max-depth=", "x", "--live"],
        "space": ["a.img", "b.img", "--output", "json", "--output=json", "--store", "dir", "--store=", "--store=d", "--live"],
        "check": ["a.img", "b.img", "--output", "json", "--output=json", "--output=", "--repair", "all", "leaks", "--dry-run"],
        "offset": ["a.img", "1", "5", "0", "-1", "one", "--output", "json"],
        "fix-backing": ["a.cow", "b.cow", "--to", "base.raw", "--to=base.raw", "--to=", "--relative", "--absolute", "--force",
                        "--dry-run", "--qemu-img", "/usr/bin/qemu-img", "--qemu-img=", "--qemu-img=/q", "-x", "--live"],
    ]
    /// Words every command's lists may also hold.
    static let shared = ["--", "--help", "-h", "--bogus", "", "-"]

    /// A small deterministic generator, so a failure names a list that can be run again.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// What ArgumentParser makes of `argv`: the request, or nil when it refuses (or would only print help).
    static func viaArgumentParser(_ argv: [String]) -> Request? {
        guard let command = try? Imgtool.parseAsRoot(Imgtool.prepare(argv)) else { return nil }
        return (command as? any RequestCommand)?.request
    }

    @Test(arguments: pools.keys.sorted()) func generatedArgumentListsAgree(_ command: String) throws {
        var rng = SplitMix(state: 0x1234_5678 &+ UInt64(command.utf8.count))
        let words = (Self.pools[command] ?? []) + Self.shared
        var answered = 0, tried = 0
        while answered < 300 && tried < 40000 {
            tried += 1
            let n = Int.random(in: 0...5, using: &rng)
            let argv = [command] + (0..<n).map { _ in words.randomElement(using: &rng) ?? "" }
            let fast = FastPath.parse(Imgtool.prepare(argv))
            guard let fast else { continue }
            answered += 1
            let full = Self.viaArgumentParser(argv)
            #expect(full == fast, "\(argv): fast path \(fast), ArgumentParser \(String(describing: full))")
        }
        // The generator must reach the fast path often enough for the comparison to mean something.
        #expect(answered >= 100, "\(command): only \(answered) lists took the fast path")
    }

    @Test func plainFormsTakeTheFastPath() {
        #expect(FastPath.parse(["check", "a", "--output", "json"]) == .check(image: "a", output: .json))
        #expect(FastPath.parse(["check", "a", "--repair", "all"]) == nil)
        #expect(FastPath.parse(["fix-backing", "a", "--to", "b"]) != nil)
        #expect(FastPath.parse(["fix-backing", "--to=b", "--dry-run", "--force", "--relative"]) != nil)
        #expect(FastPath.parse(["fix-backing", "a", "--to", "b", "--live"])
                == .fixBacking(.init(images: ["a"], to: "b", style: .keep, force: false, options: .init(dryRun: false, qemuImg: nil), live: true)))
        #expect(FastPath.parse(["chain", "a", "--output=json", "--max-depth", "7"]) == .chain(image: "a", maxDepth: 7, output: .json))
        #expect(FastPath.parse(["partitions", "a", "--output", "json"]) == .partitions(image: "a", output: .json))
        #expect(FastPath.parse(["offset", "a", "1"]) == .offset(image: "a", number: 1))
        #expect(FastPath.parse(["who", "a"]) == .who(image: "a", output: .human))
        for declined in [["info", "--help"], ["chain", "a", "b"], ["scan", "x"], ["fix-backing", "a", "--to", "b", "--", "c"],
                         ["fix-backing", "a", "--to", "b", "--qemu-img="], ["offset", "a", "-1"], ["info"]] {
            #expect(FastPath.parse(declined) == nil, "\(declined)")
        }
    }

    /// Usage errors in the contract's form from both paths: `imgtool: error: …`, the usage line, exit 64.
    @Test func usageErrorsInTheContractsForm() throws {
        for args in [["offset", "a.img", "-1"], ["chain", "a.img", "--max-depth", "-1"], ["info"], ["create", "x.img", "1e3"],
                     ["fix-backing", "a", "--to", "b", "--qemu-img="], ["bogus"], ["resize", "a.img", "1KiB"]] {
            for env in [[:], ["IMGTOOL_NO_FAST_PATH": "1"]] {
                var environment = ProcessInfo.processInfo.environment
                environment.merge(env) { $1 }
                let r = try ImgtoolBinary.run(args, environment: environment)
                #expect(r.status == 64, "\(args): \(r.status) \(r.stderr)")
                #expect(r.stderr.hasPrefix("imgtool: error: "), "\(args): \(r.stderr)")
                #expect(r.stderr.contains("Usage: imgtool"), "\(args): \(r.stderr)")
                #expect(!r.stderr.contains("Missing expected argument") || args == ["info"], "\(args): \(r.stderr)")
            }
        }
    }
}
