import Foundation
import Testing
import TestSupport

/// `imgtool info/chain --output json` must agree with `qemu-img info [--backing-chain] --output=json` on every
/// image of a corpus made at test time by the real qemu-img. Both run from the corpus's parent folder on the same
/// relative paths, so even full-backing-filename must match to the letter.
@Suite(.serialized)
struct DifferentialTests {
    static let compared = [
        "format", "virtual-size", "cluster-size", "dirty-flag", "encrypted", "backing-filename",
        "full-backing-filename", "backing-filename-format",
    ]
    static let comparedSpecific = ["compat", "compression-type", "extended-l2", "refcount-bits", "lazy-refcounts", "corrupt", "data-file"]

    /// Keys qemu-img prints that imgtool does not, each for a reason: `children` (a newer qemu-img's node tree).
    /// (`snapshots` is printed by both and compared entry by entry.)
    static let theirsOnly: Set<String> = ["children"]
    /// Every key both print is compared with its type (`false` is not `0`), recursively, format-specific included;
    /// the keys the contract names must be printed by both or by neither.
    static func compare(_ ours: JSONValue, _ theirs: JSONValue, _ what: String) {
        for key in compared + ["snapshots"] {
            #expect(ours[key] == theirs[key], "\(what): \(key): imgtool \(ours[key]?.description ?? "nil") vs qemu-img \(theirs[key]?.description ?? "nil")")
        }
        for key in Set(theirs.members.keys).subtracting(ours.members.keys).subtracting(theirsOnly) {
            Issue.record("\(what): qemu-img prints \(key) (\(theirs[key]?.description ?? "")), imgtool does not")
        }
        common(ours, theirs, what)
        // VMDK's and LUKS's blocks are compared whole: every key, both ways (qcow2's only by the keys both print).
        if case .string(let f) = theirs["format"] ?? .null, f == "vmdk" || f == "luks" {
            #expect(ours["format-specific"] == theirs["format-specific"],
                    "\(what): format-specific: imgtool \(ours["format-specific"]?.description ?? "nil") vs qemu-img \(theirs["format-specific"]?.description ?? "nil")")
        }
    }

    /// Equal wherever both have a value: objects by the keys both print, arrays element by element.
    static func common(_ ours: JSONValue, _ theirs: JSONValue, _ path: String) {
        switch (ours, theirs) {
        case (.object(let a), .object(let b)):
            for key in Set(a.keys).intersection(b.keys).sorted() {
                if let x = a[key], let y = b[key] { common(x, y, path + "." + key) }
            }
        case (.array(let a), .array(let b)):
            #expect(a.count == b.count, "\(path): \(a.count) elements vs qemu-img's \(b.count)")
            for (i, (x, y)) in zip(a, b).enumerated() { common(x, y, path + "[\(i)]") }
        default:
            #expect(ours == theirs, "\(path): imgtool \(ours) vs qemu-img \(theirs)")
        }
    }

    /// One image of the corpus: the qemu-img commands that make it (run in the corpus folder).
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var commands: [[String]] = []
        /// A committed LUKS fixture (Tests/Fixtures/luks) instead of commands: QEMU times its PBKDF when it makes
        /// a LUKS header, and under load that fails, so these are made once, not at test time.
        var fixture = false
        var description: String { name }
    }

    static let secret = ["--object", "secret,id=s0,data=pw"]

    static let singles: [Case] = {
        var cases: [Case] = []
        for bits in [9, 12, 16, 21] {
            let size = 1 << bits
            cases.append(Case(name: "c\(size).qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "cluster_size=\(size)", "c\(size).qcow2", "8M"]]))
        }
        cases += [
            Case(name: "v2.qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=512", "v2.qcow2", "3M"]]),
            Case(name: "lazy.qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "lazy.qcow2", "16M"]]),
            Case(name: "extl2.qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=128k", "extl2.qcow2", "1G"]]),
            Case(name: "zstd.qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", "zstd.qcow2", "10M"]]),
            Case(name: "refcount1.qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", "refcount1.qcow2", "10M"]]),
            Case(name: "refcount64.qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "refcount_bits=64", "refcount64.qcow2", "10M"]]),
            Case(name: "luks.qcow2", fixture: true),
            Case(name: "datafile.qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "data_file=datafile.data", "datafile.qcow2", "8M"]]),
            Case(name: "datafile-raw.qcow2", commands: [["create", "-q", "-f", "qcow2", "-o", "data_file=dfr.data,data_file_raw=on", "datafile-raw.qcow2", "8M"]]),
            Case(name: "snap.qcow2", commands: [
                ["create", "-q", "-f", "qcow2", "snap.qcow2", "8M"], ["snapshot", "-c", "first", "snap.qcow2"], ["snapshot", "-c", "second", "snap.qcow2"],
            ]),
            Case(name: "bitmap.qcow2", commands: [["create", "-q", "-f", "qcow2", "bitmap.qcow2", "8M"], ["bitmap", "--add", "bitmap.qcow2", "b0"]]),
            Case(name: "odd-size.qcow2", commands: [["create", "-q", "-f", "qcow2", "odd-size.qcow2", "12345"]]),
            Case(name: "big.qcow2", commands: [["create", "-q", "-f", "qcow2", "big.qcow2", "4T"]]),
            Case(name: "rawbase.raw", commands: [["create", "-q", "-f", "raw", "rawbase.raw", "4M"]]),
            Case(name: "over-raw-rel.qcow2", commands: [
                ["create", "-q", "-f", "raw", "b1.raw", "4M"], ["create", "-q", "-f", "qcow2", "-b", "b1.raw", "-F", "raw", "over-raw-rel.qcow2"],
            ]),
            Case(name: "sub/over-qcow2-rel.qcow2", commands: [
                ["create", "-q", "-f", "qcow2", "b2.qcow2", "4M"], ["create", "-q", "-f", "qcow2", "-b", "../b2.qcow2", "-F", "qcow2", "sub/over-qcow2-rel.qcow2"],
            ]),
            Case(name: "v2-over.qcow2", commands: [
                ["create", "-q", "-f", "raw", "b3.raw", "4M"], ["create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "b3.raw", "-F", "raw", "v2-over.qcow2"],
            ]),
            // The other formats qemu-img makes: sizes, cluster sizes, encryption and (QED, qcow) backing links.
            Case(name: "plain.qed", commands: [["create", "-q", "-f", "qed", "plain.qed", "10M"]]),
            Case(name: "c4k.qed", commands: [["create", "-q", "-f", "qed", "-o", "cluster_size=4096", "c4k.qed", "3M"]]),
            Case(name: "over-raw.qed", commands: [
                ["create", "-q", "-f", "raw", "b4.raw", "4M"], ["create", "-q", "-f", "qed", "-b", "b4.raw", "-F", "raw", "over-raw.qed"],
            ]),
            Case(name: "sub/over-qcow2.qed", commands: [
                ["create", "-q", "-f", "qcow2", "b5.qcow2", "4M"], ["create", "-q", "-f", "qed", "-b", "../b5.qcow2", "-F", "qcow2", "sub/over-qcow2.qed"],
            ]),
            Case(name: "plain.qcow", commands: [["create", "-q", "-f", "qcow", "plain.qcow", "5M"]]),
            Case(name: "over.qcow", commands: [
                ["create", "-q", "-f", "raw", "b6.raw", "4M"], ["create", "-q", "-f", "qcow", "-b", "b6.raw", "-F", "raw", "over.qcow"],
            ]),
            Case(name: "aes.qcow", commands: [["create", "-q"] + secret + ["-f", "qcow", "-o", "encrypt.format=aes,encrypt.key-secret=s0", "aes.qcow", "4M"]]),
            Case(name: "sparse.vmdk", commands: [["create", "-q", "-f", "vmdk", "sparse.vmdk", "10M"]]),
            Case(name: "delta.vmdk", commands: [
                ["create", "-q", "-f", "vmdk", "b7.vmdk", "4M"], ["create", "-q", "-f", "vmdk", "-b", "b7.vmdk", "-F", "vmdk", "delta.vmdk"],
            ]),
            Case(name: "stream.vmdk", commands: [["create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "stream.vmdk", "10M"]]),
            Case(name: "flat.vmdk", commands: [["create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "flat.vmdk", "3M"]]),
            Case(name: "sub/two-sparse.vmdk", commands: [["create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "sub/two-sparse.vmdk", "5G"]]),
            Case(name: "two-flat.vmdk", commands: [["create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", "two-flat.vmdk", "3M"]]),
            Case(name: "zeroed.vmdk", commands: [["create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", "zeroed.vmdk", "3M"]]),
            Case(name: "dynamic.vdi", commands: [["create", "-q", "-f", "vdi", "dynamic.vdi", "10M"]]),
            Case(name: "static.vdi", commands: [["create", "-q", "-f", "vdi", "-o", "static=on", "static.vdi", "3M"]]),
            // Made by QEMU's default writer, the size comes from the CHS geometry; with force_size from current_size.
            Case(name: "chs.vpc", commands: [["create", "-q", "-f", "vpc", "chs.vpc", "10000000"]]),
            Case(name: "forced.vpc", commands: [["create", "-q", "-f", "vpc", "-o", "force_size=on", "forced.vpc", "10000000"]]),
            Case(name: "plain.vhdx", commands: [["create", "-q", "-f", "vhdx", "plain.vhdx", "10M"]]),
            Case(name: "b1m.vhdx", commands: [["create", "-q", "-f", "vhdx", "-o", "block_size=1M,log_size=1M", "b1m.vhdx", "7M"]]),
            Case(name: "plain.luks", fixture: true),
            Case(name: "serpent.luks", fixture: true),
            Case(name: "essiv.luks", fixture: true),
            Case(name: "cast5.luks", fixture: true),
            Case(name: "twofish.luks", fixture: true),
            Case(name: "plain.parallels", commands: [["create", "-q", "-f", "parallels", "plain.parallels", "10M"]]),
            Case(name: "c64k.parallels", commands: [["create", "-q", "-f", "parallels", "-o", "cluster_size=64k", "c64k.parallels", "7M"]]),
        ]
        return cases
    }()

    @Test(arguments: singles)
    func infoAgrees(_ c: Case) throws {
        let root = try TempDir("diff")
        let corpus = try root.mkdir("corpus")
        try root.mkdir("corpus/sub")
        for cmd in c.commands { try QemuImg.run(cmd, cwd: corpus) }
        if c.fixture { try LUKSFixtures.copy(c.name, to: corpus + "/" + c.name) }
        let rel = "corpus/" + c.name
        let theirs = try QemuImg.infoValue(rel, cwd: root.path)
        let r = try ImgtoolBinary.run(["info", "--output", "json", rel], cwd: root.path)
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try JSONValue.parse(r.stdout)
        Self.compare(ours, theirs, c.name)
        #expect(ours["filename"] == .string(rel))
    }

    /// Chains of depth 1 to 50, qcow2 and raw bases, relative and absolute links, every layer compared.
    @Test(arguments: [(1, "raw", false), (2, "qcow2", true), (7, "raw", true), (50, "qcow2", false), (50, "raw", true)])
    func chainAgrees(depth: Int, baseFormat: String, absolute: Bool) throws {
        let root = try TempDir("diffchain")
        let corpus = try root.mkdir("corpus")
        try root.mkdir("corpus/layers")
        try QemuImg.run(["create", "-q", "-f", baseFormat, "base.\(baseFormat)", "16M"], cwd: corpus)
        var below = "base.\(baseFormat)", belowFormat = baseFormat
        for i in 1...depth {
            // Alternate folders so relative names climb up and down.
            let name = i % 2 == 0 ? "layer\(i).qcow2" : "layers/layer\(i).qcow2"
            let belowFromHere: String
            if absolute {
                belowFromHere = corpus + "/" + below
            } else if name.hasPrefix("layers/") {
                belowFromHere = below.hasPrefix("layers/") ? String(below.dropFirst(7)) : "../" + below
            } else {
                belowFromHere = below
            }
            try QemuImg.run(["create", "-q", "-f", "qcow2", "-b", belowFromHere, "-F", belowFormat, name], cwd: corpus)
            below = name
            belowFormat = "qcow2"
        }
        let rel = "corpus/" + below
        let theirs = try QemuImg.infoValue(rel, chain: true, cwd: root.path).elements
        let r = try ImgtoolBinary.run(["chain", "--output", "json", rel], cwd: root.path)
        #expect(r.status == 0, "\(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(report["healthy"] as? Bool == true)
        let layers = try JSONValue.parse(r.stdout)["layers"]?.elements ?? []
        #expect(layers.count == depth + 1)
        #expect(theirs.count == depth + 1)
        for (i, (a, b)) in zip(layers, theirs).enumerated() {
            Self.compare(a, b, "layer \(i)")
        }
    }
}
