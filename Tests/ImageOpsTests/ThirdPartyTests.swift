import Foundation
import Testing
import TestSupport

/// Every image of the third-party corpus (Tests/Fixtures/third-party/MANIFEST.tsv) read by imgtool and by the real
/// tools: `info` and `chain` against `qemu-img info --output=json [--backing-chain]` (typed values, every key both
/// print), `partitions` against `sfdisk -J` on `qemu-img convert -O raw` output, and the image itself against that
/// raw copy.
@Suite(.serialized)
struct ThirdPartyTests {
    /// Disagreements accepted, each with its reason (the README lists them too). The test expects each to fail and
    /// fails the other way ("known issue was not recorded") once it is mended: delete the line then.
    static let accepted: [String: String] = [:]
    /// Keys of imgtool's own, printed beside qemu-img's (the contract allows additions, never a key of qemu-img's
    /// where qemu-img has none): the snapshot count.
    static let oursOnly: Set<String> = ["snapshot-count"]
    /// Keys qemu-img prints that imgtool does not, as DifferentialTests.theirsOnly: the snapshot list, the node tree.
    static let theirsOnly: Set<String> = ["snapshots", "children"]

    @Test func manifestListsTheCorpus() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: ThirdPartyCorpus.folder).filter { $0 != "MANIFEST.tsv" }
        #expect(ThirdPartyCorpus.images.count >= 30, "MANIFEST.tsv lists \(ThirdPartyCorpus.images.count) images")
        #expect(Set(files) == Set(ThirdPartyCorpus.images.map(\.file)), "every committed file is in MANIFEST.tsv and back")
    }

    /// Runs `body`, expecting it to fail when `key` is awaiting the guest branch.
    static func check(_ key: String, _ body: () throws -> Void) rethrows {
        if let why = accepted[key] {
            withKnownIssue("accepted: \(why)") { try body() }
        } else {
            try body()
        }
    }

    @Test(arguments: ThirdPartyCorpus.images)
    func infoAndChainAgreeWithQemuImg(_ image: ThirdPartyCorpus.Image) throws {
        let dir = try TempDir("third")
        _ = try ThirdPartyCorpus.materialise(image, in: dir)
        let qemu = try QemuImg.path()
        for chain in [false, true] {
            let theirs = try runProgram(qemu, ["info", "--output=json"] + (chain ? ["--backing-chain"] : []) + [image.name], cwd: dir.path)
            let ours = try ImgtoolBinary.run([chain ? "chain" : "info", "--output", "json", image.name], cwd: dir.path)
            try Self.check("\(image.name) \(chain ? "chain" : "info")") {
                guard theirs.status == 0 else {
                    // qemu-img will not open it: imgtool must refuse too, naming the file.
                    #expect(ours.status == 1, "qemu-img refuses (\(theirs.stderr)); imgtool exit \(ours.status)")
                    return
                }
                #expect(ours.status == 0, "\(ours.stderr)")
                var mine = try typedJSON(ours.stdout)
                if chain, case .object(let o) = mine { mine = o["layers"] ?? .null }
                let other = try typedJSON(theirs.stdout)
                let diffs = Typed.differences(mine, other)
                #expect(diffs.isEmpty, "imgtool vs qemu-img: \(diffs.joined(separator: "; "))")
                // The facts qemu-img prints must be there at all: a key it has that we lack is no agreement.
                let first: Typed? = { if case .array(let a) = mine { return a.first } else { return mine } }()
                let theirFirst: Typed? = { if case .array(let a) = other { return a.first } else { return other } }()
                if case .object(let a)? = first, case .object(let b)? = theirFirst {
                    for key in ["filename", "format", "virtual-size", "actual-size"] where b[key] != nil {
                        #expect(a[key] != nil, "imgtool prints no \(key)")
                    }
                }
                // And no key of qemu-img's that qemu-img does not print for this format (`dirty-flag` on a bochs,
                // cloop or dmg image): each layer's top-level keys, both ways, but for imgtool's own additions.
                let layers: [(Typed, Typed)] = {
                    if case .array(let a) = mine, case .array(let b) = other { return Array(zip(a, b)) }
                    return [(mine, other)]
                }()
                for (x, y) in layers {
                    guard case .object(let a) = x, case .object(let b) = y else { continue }
                    let extra = Set(a.keys).subtracting(b.keys).subtracting(Self.oursOnly)
                    #expect(extra.isEmpty, "imgtool prints \(extra.sorted()), qemu-img does not")
                    let missing = Set(b.keys).subtracting(a.keys).subtracting(Self.theirsOnly)
                    #expect(missing.isEmpty, "qemu-img prints \(missing.sorted()), imgtool does not")
                }
            }
        }
    }

    /// Nothing in the corpus reaches outside itself: `verify --format` with the format qemu-img sees is safe, and an
    /// image qemu-img refuses to open is unsafe (it cannot be trusted to be what it claims).
    @Test(arguments: ThirdPartyCorpus.images)
    func verifyAgreesWithQemuImg(_ image: ThirdPartyCorpus.Image) throws {
        let dir = try TempDir("third")
        _ = try ThirdPartyCorpus.materialise(image, in: dir)
        let theirs = try runProgram(try QemuImg.path(), ["info", "--output=json", image.name], cwd: dir.path)
        var format: String?
        if theirs.status == 0, case .object(let o) = try typedJSON(theirs.stdout), case .string(let f)? = o["format"] { format = f }
        let ours = try ImgtoolBinary.run(["verify"] + (format.map { ["--format", $0] } ?? []) + [image.name], cwd: dir.path)
        Self.check("\(image.name) verify") {
            #expect(ours.status == (format == nil ? 2 : 0), "qemu-img: \(format ?? "refuses"); imgtool verify: \(ours.stdout)")
        }
    }

    /// sfdisk's listing as imgtool's contract spells it.
    static func expectSameTable(_ ours: Typed, _ sfdisk: RunResult, _ what: String) throws {
        guard case .object(let mine) = ours, case .array(let parts)? = mine["partitions"] else {
            Issue.record("\(what): imgtool printed no partitions array"); return
        }
        guard sfdisk.status == 0 else {
            #expect(sfdisk.stderr.contains("does not contain a recognized partition table"), "\(what): sfdisk \(sfdisk.stderr)")
            #expect(mine["table"] == .string("none"), "\(what): sfdisk finds no table, imgtool \(mine["table"] ?? .null)")
            return
        }
        // sfdisk prints what it would fix ("Invalid flag … of EBR", "omitting empty partition") before the JSON.
        guard case .object(let j) = try typedJSON(String(sfdisk.stdout.drop { $0 != "{" })), case .object(let t)? = j["partitiontable"],
              case .string(let label)? = t["label"] else { Issue.record("\(what): sfdisk -J unreadable"); return }
        #expect(mine["table"] == .string(label == "dos" ? "mbr" : label), "\(what): table \(mine["table"] ?? .null) vs sfdisk \(label)")
        #expect(mine["sector-size"] == t["sectorsize"], "\(what): sector size")
        guard case .array(let theirs)? = t["partitions"] ?? .array([]) else { return }
        #expect(parts.count == theirs.count, "\(what): \(parts.count) partitions vs sfdisk's \(theirs.count)")
        for (p, q) in zip(parts, theirs) {
            guard case .object(let a) = p, case .object(let b) = q, case .string(let node)? = b["node"], case .int(let n)? = a["number"] else { continue }
            #expect(node.hasSuffix(String(n)) && !node.hasSuffix("1\(n)"), "\(what): number \(n) vs \(node)")
            #expect(a["start-sector"] == b["start"], "\(what) #\(n): start \(a["start-sector"] ?? .null) vs \(b["start"] ?? .null)")
            #expect(a["sectors"] == b["size"], "\(what) #\(n): sectors \(a["sectors"] ?? .null) vs \(b["size"] ?? .null)")
            if case .string(let x)? = a["type"], case .string(let y)? = b["type"] {
                let same = label == "gpt" ? x == y : UInt32(x, radix: 16) == UInt32(y, radix: 16)
                #expect(same, "\(what) #\(n): type \(x) vs \(y)")
            }
            if label == "dos" { #expect(a["bootable"] == (b["bootable"] ?? .bool(false)), "\(what) #\(n): bootable") }
            if label == "gpt" {
                #expect(a["uuid"] == b["uuid"], "\(what) #\(n): uuid")
                #expect((a["name"] ?? .string("")) == (b["name"] ?? .string("")), "\(what) #\(n): name")
            }
            // Every listed entry has an offset (an extended container included), start × sector size.
            if case .int(let start)? = a["start-sector"], case .int(let ss)? = mine["sector-size"] {
                #expect(a["offset"] == .int(start * ss), "\(what) #\(n): offset")
            }
        }
    }

    @Test(arguments: ThirdPartyCorpus.images)
    func partitionsAgreeWithSfdisk(_ image: ThirdPartyCorpus.Image) throws {
        let dir = try TempDir("third")
        let path = try ThirdPartyCorpus.materialise(image, in: dir)
        let sfdisk = try #require(which("sfdisk"), "sfdisk (fdisk) is needed")
        let raw = dir.file("guest.raw")
        let converted = try runProgram(try QemuImg.path(), ["convert", "-O", "raw", path, raw])
        let direct = try ImgtoolBinary.run(["partitions", "--output", "json", path])
        guard converted.status == 0 else {
            // No guest disk for qemu-img: imgtool must not invent one.
            Self.check("\(image.name) partitions") { #expect(direct.status != 0, "qemu-img convert refuses; imgtool lists a table") }
            return
        }
        // The table reader itself, on the guest bytes qemu-img produced: always ours to get right.
        let onRaw = try ImgtoolBinary.run(["partitions", "--output", "json", raw])
        #expect(onRaw.status == 0, "\(onRaw.stderr)")
        let theirs = try runProgram(sfdisk, ["-J", raw])
        try Self.expectSameTable(try typedJSON(onRaw.stdout), theirs, "\(image.name) as raw")
        // The same table read through the image's own format.
        try Self.check("\(image.name) partitions") {
            #expect(direct.status == 0, "\(direct.stderr)")
            guard direct.status == 0 else { return }
            let a = try typedJSON(direct.stdout), b = try typedJSON(onRaw.stdout)
            #expect(a == b, "through \(image.name) vs its raw copy: \(Typed.differences(a, b).joined(separator: "; "))")
        }
        // offset agrees with partitions for every listed entry, containers included.
        if case .object(let t) = try typedJSON(onRaw.stdout), case .array(let parts)? = t["partitions"] {
            for case .object(let p) in parts {
                guard case .int(let n)? = p["number"], case .int(let off)? = p["offset"] else { continue }
                let r = try ImgtoolBinary.run(["offset", raw, String(n)])
                #expect(r.status == 0 && r.stdout == "\(off)\n", "offset \(n): \(r.stdout)\(r.stderr)")
            }
        }
    }
}
