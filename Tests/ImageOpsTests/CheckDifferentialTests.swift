import Foundation
import Testing
import QCow2
import TestSupport

/// The native qcow2 checker against the real `qemu-img check --output=json`: every count field equal on a corpus of
/// clean and damaged images (Tests/Fixtures/check-corpus.py builds it with qemu-img, qemu-io and byte edits, one case
/// per class of damage QEMU's iotests 060, 061, 108 and 138 make), and on every qcow2 fixture.
@Suite(.serialized)
struct CheckDifferentialTests {
    /// qemu-img check's answer: its exit status and, when it printed them, its counts.
    struct QemuAnswer {
        var status: Int32
        var counts: [String: UInt64]?
        var stderr: String
    }

    /// The fields compared, as qemu-img names them; a field qemu-img leaves out is 0 (it prints only nonzero ones).
    static let fields = ["check-errors", "corruptions", "leaks", "corruptions-fixed", "leaks-fixed", "image-end-offset",
                         "total-clusters", "allocated-clusters", "fragmented-clusters", "compressed-clusters"]

    static func ours(_ c: ImageCheck) -> [String: UInt64] {
        ["check-errors": c.checkErrors, "corruptions": c.corruptions, "leaks": c.leaks,
         "corruptions-fixed": c.corruptionsFixed, "leaks-fixed": c.leaksFixed, "image-end-offset": c.imageEndOffset ?? 0,
         "total-clusters": c.totalClusters ?? 0, "allocated-clusters": c.allocatedClusters ?? 0,
         "fragmented-clusters": c.fragmentedClusters ?? 0, "compressed-clusters": c.compressedClusters ?? 0]
    }

    /// `secret`: the passphrase of a LUKS-encrypted image, which qemu-img check cannot open without it.
    static func qemuCheck(_ path: String, secret: String? = nil) throws -> QemuAnswer {
        var args = ["check", "--output=json", path]
        if let secret {
            args = ["check", "--output=json", "--object", "secret,id=sec0,data=\(secret)", "--image-opts",
                    "driver=qcow2,file.filename=\(path.replacingOccurrences(of: ",", with: ",,")),encrypt.key-secret=sec0"]
        }
        let r = try runProgram(try QemuImg.path(), args)
        var counts: [String: UInt64]?
        if let v = try? JSONValue.parse(r.stdout), case .object(let o) = v {
            var c: [String: UInt64] = [:]
            for f in fields {
                switch o[f] {
                case .int(let i)?: c[f] = UInt64(i)
                case .uint(let u)?: c[f] = u
                default: c[f] = 0
                }
            }
            counts = c
        }
        return QemuAnswer(status: r.status, counts: counts, stderr: r.stderr)
    }

    /// Every disagreement between qemu-img check and the native checker on one image, in words (empty: they agree).
    static func compare(_ path: String, name: String, secret: String? = nil) throws -> [String] {
        let qemu = try qemuCheck(path, secret: secret)
        let info: ImageInfo
        do { info = try ImageInfo.read(path, mode: .check) } catch {
            // An image imgtool will not open must be one qemu-img check cannot open or check either.
            return qemu.status == 1 && qemu.counts == nil ? [] : ["\(name): imgtool refuses it (\(error)) but qemu-img check answers \(qemu.status)"]
        }
        let check: ImageCheck
        do { check = try ImageChecker.check(info) } catch {
            return qemu.status == 1 && qemu.counts == nil ? [] : ["\(name): the checker refuses it (\(error)) but qemu-img check answers \(qemu.status)"]
        }
        guard let counts = qemu.counts else {
            // qemu-img printed nothing: it could not open the image (an encrypted one without its key: imgtool checks
            // it anyway) or its check stopped ("Check failed"), which the checker must report as aborted.
            if qemu.stderr.contains("Could not open") && check.aborted == nil { return [] }
            if check.aborted != nil && qemu.status == 1 && qemu.stderr.contains("Check failed") { return [] }
            return ["\(name): qemu-img check printed no counts (\(qemu.status): \(qemu.stderr.prefix(200))) but the checker says aborted=\(check.aborted ?? "nil") \(ours(check))"]
        }
        var out: [String] = []
        if check.aborted != nil { out.append("\(name): the checker stopped (\(check.aborted ?? "")) but qemu-img check printed counts") }
        let mine = ours(check)
        for f in fields where mine[f] != counts[f] {
            out.append("\(name): \(f) qemu-img \(counts[f] ?? 0), imgtool \(mine[f] ?? 0)")
        }
        // Findings must say as much as the counts: one or more per counted corruption, leak or check error kind.
        for (kind, n) in [(ImageCheck.Finding.Kind.corruption, check.corruptions), (.leak, check.leaks), (.checkError, check.checkErrors)]
        where n > 0 && !check.findings.contains(where: { $0.kind == kind }) {
            out.append("\(name): \(n) \(kind.rawValue) counted but no finding of that kind")
        }
        return out
    }

    @Test func corpusAgreesWithQemuImg() throws {
        let python = try #require(which("python3"), "python3 is needed to build the corpus")
        _ = try #require(which("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)")
        _ = try QemuImg.path()
        let dir = try TempDir("checkq")
        let script = fixturesDirectory().replacingOccurrences(of: "/Fixtures/images", with: "/Fixtures/check-corpus.py")
        let built = try runProgram(python, [script, dir.path])
        try #require(built.status == 0, "check-corpus.py failed: \(built.stderr)")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".qcow2") }.sorted()
        #expect(names.count >= 60, "the corpus has \(names.count) images")
        var disagreements: [String] = []
        for name in names {
            let path = dir.file(name)
            let before = try fileDigest(path)
            disagreements += try Self.compare(path, name: name)
            #expect(try fileDigest(path) == before, "\(name): checking changed the image")
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements:\n\(disagreements.joined(separator: "\n"))")
    }

    /// Damaged images must be found damaged, in words that name the place: a guard against agreeing by finding nothing.
    @Test func damageIsFoundAndNamed() throws {
        let python = try #require(which("python3"), "python3 is needed to build the corpus")
        let dir = try TempDir("checkq-words")
        let script = fixturesDirectory().replacingOccurrences(of: "/Fixtures/images", with: "/Fixtures/check-corpus.py")
        let built = try runProgram(python, [script, dir.path])
        try #require(built.status == 0, "check-corpus.py failed: \(built.stderr)")
        func check(_ name: String) throws -> ImageCheck { try ImageChecker.check(try ImageInfo.read(dir.file(name + ".qcow2"), mode: .check)) }

        let leaked = try check("leaked")
        #expect(leaked.leaks == 2 && leaked.corruptions == 0)
        #expect(leaked.findings.contains { $0.kind == .leak && $0.message.contains("refcount 3 but 0 references") })
        let shared = try check("refcount-low-snap")
        #expect(shared.findings.contains { $0.kind == .corruption && $0.message.contains("refcount 1 but 2 references") && $0.message.contains("snapshot 'snap") })
        let eof = try check("l2-past-eof")
        #expect(eof.findings.contains { $0.kind == .corruption && $0.message.contains("past the end of the file") && ($0.table ?? "").contains("L2 table at") })
        let dirty = try check("dirty")
        #expect(dirty.corruptions > 0 && dirty.findings.contains { $0.kind == .note && $0.message.contains("dirty") })
        let corrupt = try check("corrupt-bit")
        #expect(corrupt.isClean && corrupt.findings.contains { $0.kind == .note && $0.message.contains("marked corrupt") })
        let stopped = try check("bitmap-in-use-bad")
        #expect(stopped.aborted != nil && stopped.checkErrors > 0)
        let clean = try check("snapshots")
        #expect(clean.isClean && clean.findings.isEmpty && clean.imageEndOffset != nil)
    }

    /// Every qcow2 image among the fixtures (made here and third-party) agrees too.
    @Test func fixturesAgreeWithQemuImg() throws {
        var disagreements: [String] = []
        var checked = 0
        let images = fixturesDirectory()
        for name in try FileManager.default.contentsOfDirectory(atPath: images).sorted() {
            let path = images + "/" + name
            guard (try? ImageInfo.read(path))?.format == .qcow2 else { continue }
            disagreements += try Self.compare(path, name: name)
            checked += 1
        }
        let dir = try TempDir("checkq-third")
        for image in ThirdPartyCorpus.images where image.name.contains("qcow2") {
            let path = try ThirdPartyCorpus.materialise(image, in: dir)
            disagreements += try Self.compare(path, name: image.name)
            checked += 1
        }
        // The committed LUKS image, checked by qemu-img with its key (imgtool needs none): as made, then written to.
        let luks = dir.file("luks.qcow2")
        try LUKSFixtures.copy("luks.qcow2", to: luks)
        disagreements += try Self.compare(luks, name: "luks.qcow2", secret: "pw")
        let io = try #require(which("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)")
        let wrote = try runProgram(io, ["--object", "secret,id=sec0,data=pw", "--image-opts",
                                        "driver=qcow2,file.filename=\(luks),encrypt.key-secret=sec0",
                                        "-c", "write -P 1 0 128k", "-c", "write -P 2 3M 64k"])
        #expect(wrote.status == 0, "qemu-io: \(wrote.stderr)")
        disagreements += try Self.compare(luks, name: "luks.qcow2 written", secret: "pw")
        checked += 2
        // Inputs the fuzzer found where the checker and qemu-img once disagreed (a file length not a whole number of
        // sectors, an end-of-extensions marker with a length, reserved bits in the refcount table, a header extension
        // whose data runs past the end of the file, which QEMU reads as zeros).
        let regressions = images.replacingOccurrences(of: "/images", with: "/fuzz-regressions")
        for name in try FileManager.default.contentsOfDirectory(atPath: regressions).sorted() where name.hasPrefix("check-") {
            let path = dir.file(name)
            try FileManager.default.copyItem(atPath: regressions + "/" + name, toPath: path)
            disagreements += try Self.compare(path, name: name)
            checked += 1
        }
        #expect(checked >= 10, "only \(checked) qcow2 fixtures found")
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements:\n\(disagreements.joined(separator: "\n"))")
    }
}
