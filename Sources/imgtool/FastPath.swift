import ImageOps
import QCow2

/// The one fast path: the plain forms of the commands people run in loops (`info`, `chain`, `partitions`, `offset`,
/// `who`, `space`, `check`, `fix-backing`, live or not) read without ArgumentParser, whose start-up reflection costs more than these commands' own
/// work. It is driven by the table below, which names the same options as the ArgumentParser commands; anything
/// unusual — help, `--`, an unknown or repeated option, an empty value, a value that looks like an option, a value
/// ArgumentParser would refuse — returns nil and goes through ArgumentParser, which explains the mistake. A test
/// generates thousands of argument lists and checks that wherever this returns a request, `Imgtool.parseAsRoot`
/// returns the same one.
enum FastPath {
    // Arrays, not Set or Dictionary: these hold two to four names, and a Set<String> or [String: String] is a generic
    // type the runtime instantiates on first use by searching the static binary's every conformance record (about
    // 250 K instructions each, callgrind; `imgtool info` runs in 340 K).

    /// One command as the fast path knows it.
    struct Spec: Sendable {
        /// Flags (no value).
        var flags: [String] = []
        /// Options that take one value.
        var options: [String] = []
        /// How many positional arguments: at least, at most.
        var positionals: ClosedRange<Int>
        /// The request from what was read; nil when ArgumentParser should judge it.
        var build: @Sendable (Parsed) -> Request?
    }

    /// What the generic pass read.
    struct Parsed: Sendable {
        var flags: [String] = []
        var options = Options()
        var positionals: [String] = []

        /// `--output`, defaulting to human; nil for a value ArgumentParser refuses.
        var output: ReadCommands.Output? {
            guard let v = options["--output"] else { return .human }
            return ReadCommands.Output(rawValue: v)
        }
    }

    /// Option values by name, in the order given.
    struct Options: Sendable {
        var pairs: [(name: String, value: String)] = []

        /// The value given for `name`, if any.
        subscript(name: String) -> String? { pairs.first { $0.name == name }?.value }

        /// Sets `name`'s value; returns the value it had, as Dictionary's method does.
        mutating func updateValue(_ value: String, forKey name: String) -> String? {
            if let i = pairs.firstIndex(where: { $0.name == name }) {
                defer { pairs[i].value = value }
                return pairs[i].value
            }
            pairs.append((name, value))
            return nil
        }
    }

    /// The spec for a command name, nil for a command the fast path leaves to ArgumentParser. A switch, not a
    /// `[String: Spec]` literal: building the dictionary made the runtime instantiate its metadata and search the
    /// static binary's every conformance record, about a quarter of `imgtool info`'s instructions (callgrind).
    static func spec(_ name: String) -> Spec? {
        switch name {
        case "info": return Spec(options: ["--output"], positionals: 1...1) { p in
            p.output.map { .info(image: p.positionals[0], output: $0) }
        }
        case "who": return Spec(options: ["--output"], positionals: 1...1) { p in
            p.output.map { .who(image: p.positionals[0], output: $0) }
        }
        case "partitions": return Spec(options: ["--output"], positionals: 1...1) { p in
            p.output.map { .partitions(image: p.positionals[0], output: $0) }
        }
        case "chain": return Spec(flags: ["--live"], options: ["--output", "--max-depth"], positionals: 1...1) { p in
            var depth = BackingChain.defaultMaxDepth
            if let v = p.options["--max-depth"] {
                guard let n = Int(v), n >= 1 else { return nil }
                depth = n
            }
            if p.flags.contains("--live") { return p.output.map { .liveChain(image: p.positionals[0], output: $0) } }
            return p.output.map { .chain(image: p.positionals[0], maxDepth: depth, output: $0) }
        }
        case "space": return Spec(options: ["--output", "--store"], positionals: 1...1) { p in
            p.output.map { .space(image: p.positionals[0], store: p.options["--store"], output: $0) }
        }
        case "check": return Spec(options: ["--output"], positionals: 1...1) { p in
            p.output.map { .check(image: p.positionals[0], output: $0) }
        }
        case "offset": return Spec(positionals: 2...2) { p in
            guard let n = Int(p.positionals[1]), n >= 1 else { return nil }
            return .offset(image: p.positionals[0], number: n)
        }
        case "fix-backing": return Spec(flags: ["--relative", "--absolute", "--force", "--dry-run", "--live"], options: ["--to", "--qemu-img"], positionals: 0...Int.max) { p in
            guard let to = p.options["--to"], !(p.flags.contains("--relative") && p.flags.contains("--absolute")) else { return nil }
            let style: Operations.LinkStyle = p.flags.contains("--absolute") ? .absolute : p.flags.contains("--relative") ? .relative : .keep
            let options = ChangeCommands.Options(dryRun: p.flags.contains("--dry-run"), qemuImg: p.options["--qemu-img"])
            return .fixBacking(.init(images: p.positionals, to: to, style: style, force: p.flags.contains("--force"), options: options,
                                     live: p.flags.contains("--live")))
        }
        default: return nil
        }
    }

    /// The request `argv` (without the program name) asks for, or nil to let ArgumentParser decide.
    static func parse(_ argv: [String]) -> Request? {
        guard let name = argv.first, let spec = spec(name) else { return nil }
        var parsed = Parsed()
        var i = 1
        while i < argv.count {
            let a = argv[i]
            i += 1
            if spec.flags.contains(a) {
                guard !parsed.flags.contains(a) else { return nil }
                parsed.flags.append(a)
                continue
            }
            let (key, inline): (String, String?) = {
                guard a.hasPrefix("--"), let eq = a.firstIndex(of: "=") else { return (a, nil) }
                return (String(a[..<eq]), String(a[a.index(after: eq)...]))
            }()
            if spec.options.contains(key) {
                let value: String
                if let inline { value = inline } else {
                    guard i < argv.count else { return nil }
                    value = argv[i]
                    i += 1
                }
                guard !value.isEmpty, !value.hasPrefix("-"), parsed.options.updateValue(value, forKey: key) == nil else { return nil }
                continue
            }
            // Anything that looks like an option (and `--`, `-h`, an empty word) is ArgumentParser's to judge.
            guard !a.isEmpty, !a.hasPrefix("-") else { return nil }
            parsed.positionals.append(a)
        }
        guard spec.positionals.contains(parsed.positionals.count) else { return nil }
        return spec.build(parsed)
    }
}
