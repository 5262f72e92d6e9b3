import Foundation
import Testing
@testable import ImageOps
import QCow2
import TestSupport

/// `imgtool space` against the real qemu-img: every layer's map and the chain's map agree range by range with
/// `qemu-img map --output=json` (depth, present, data, zero); a commit's preview against what `qemu-img commit`
/// grew a copy of the target by; the flatten against the file `qemu-img convert -O qcow2` writes.
struct SpaceDifferentialTests {
    let dir: TempDir
    init() throws { dir = try TempDir("space") }

    func f(_ name: String) -> String { dir.file(name) }
    func img(_ args: String...) throws { try QemuImg.run(args, cwd: dir.path) }
    func io(_ image: String, _ commands: String..., format: String = "qcow2") throws {
        var args = ["-f", format]
        for c in commands { args += ["-c", c] }
        args.append(image)
        let r = try runProgram(try #require(which("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)"), args, cwd: dir.path)
        #expect(r.status == 0, "qemu-io \(args): \(r.stderr)")
    }

    /// qemu-img's map of `image`, neighbours with the same depth, present, data and zero merged (offsets dropped).
    func qemuMap(_ image: String) throws -> [SpaceLedger.MapEntry] {
        let value = try JSONValue.parse(try QemuImg.run(["map", "--output=json", image], cwd: dir.path))
        var out: [SpaceLedger.MapEntry] = []
        for e in value.elements {
            func n(_ k: String) -> UInt64 {
                switch e[k] { case .int(let i)?: return UInt64(i); case .uint(let u)?: return u; default: return 0 }
            }
            func b(_ k: String) -> Bool { if case .bool(let v)? = e[k] { return v }; return false }
            let entry = SpaceLedger.MapEntry(start: n("start"), length: n("length"), depth: Int(n("depth")), present: b("present"), data: b("data"), zero: b("zero"))
            if var last = out.last, last.start + last.length == entry.start, last.depth == entry.depth, last.present == entry.present,
               last.data == entry.data, last.zero == entry.zero {
                last.length += entry.length
                out[out.count - 1] = last
            } else {
                out.append(entry)
            }
        }
        return out
    }

    /// The chain's map and every layer's own map agree with qemu-img's; returns the ledger.
    @discardableResult
    func agree(_ top: String, flatten: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws -> SpaceLedger {
        let ledger = try SpaceLedger.read(f(top))
        let theirs = try qemuMap(top)
        #expect(ledger.map == theirs, "chain map of \(top)", sourceLocation: sourceLocation)
        if ledger.map != theirs {
            for (a, b) in zip(ledger.map, theirs) where a != b { Issue.record("ours \(a) theirs \(b)", sourceLocation: sourceLocation); break }
        }
        for layer in ledger.layers {
            let own = try qemuMap(layer.filename).filter { $0.depth == 0 && $0.present }
            let ours = SpaceLedger.compute(image: layer.filename, [layer]).map.filter(\.present)
            #expect(ours.map { [$0.start, $0.length] } == own.map { [$0.start, $0.length] }, "allocated ranges of \(layer.filename)", sourceLocation: sourceLocation)
            #expect(ours.map(\.data) == own.map(\.data), "data flags of \(layer.filename)", sourceLocation: sourceLocation)
        }
        // The ledger adds up: what a layer maps is either read from it or hidden.
        for (i, layer) in ledger.layers.enumerated() { #expect(ledger.visible[i] + ledger.shadowed[i] == layer.allocated) }
        // The flatten: within one cluster of the file qemu-img convert writes.
        guard flatten else { return ledger }
        let flat = "flat-\(UInt32.random(in: 0...UInt32.max)).qcow2"
        try img("convert", "-O", "qcow2", top, flat)
        let size = try #require(FileIdentity.of(path: f(flat))).size
        #expect(size + 65536 >= ledger.flattenFileSize && ledger.flattenFileSize + 65536 >= size,
                "flatten \(ledger.flattenFileSize) against convert's \(size)", sourceLocation: sourceLocation)
        try FileManager.default.removeItem(atPath: f(flat))
        return ledger
    }

    @Test func zeroDiscardedCompressedAndShorterLongerBacking() throws {
        try img("create", "-q", "-f", "raw", "base.raw", "48M")
        try io("base.raw", "write -P 0x11 0 3M", "write -P 0x12 20M 1M", "write -P 0x13 40M 64k", format: "raw")
        try img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "mid.qcow2", "32M")
        try io("mid.qcow2", "write -P 0x21 1M 2M", "write -z 2M 128k", "write -P 0x22 10M 1M", "discard 10M 512k", "write -c -P 0x23 12M 64k")
        try img("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2", "64M")
        try io("top.qcow2", "write -P 0x31 1536k 1M", "write -z 12M 64k", "write -P 0x32 50M 1M", "write -z -u 52M 1M")
        let ledger = try agree("top.qcow2")
        #expect(ledger.layers.count == 3)
        #expect(ledger.layers[1].runs.contains { $0.kind == .compressed })
        #expect(ledger.layers[2].zero > 0)  // the raw base's holes
        #expect(ledger.shadowed[1] > 0)
    }

    @Test func subclusters() throws {
        try img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=128k", "base.qcow2", "16M")
        try io("base.qcow2", "write -P 1 0 1M")
        try img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "16M")
        try io("top.qcow2", "write -P 2 4k 4k", "write -P 3 70k 10k", "write -z 256k 8k", "write -z -u 2M 64k", "write -P 4 3M 2k")
        let ledger = try agree("top.qcow2")
        #expect(ledger.layers[0].allocated < 200 << 10)
    }

    @Test func hundredLayers() throws {
        try img("create", "-q", "-f", "qcow2", "l0.qcow2", "256M")
        try io("l0.qcow2", "write -P 1 0 2M")
        for i in 1..<100 {
            try img("create", "-q", "-f", "qcow2", "-b", "l\(i - 1).qcow2", "-F", "qcow2", "l\(i).qcow2")
            try io("l\(i).qcow2", "write -P \(i % 250 + 2) \(i * 1024)k 1536k")
        }
        let ledger = try agree("l99.qcow2")
        #expect(ledger.layers.count == 100)
    }

    @Test func externalDataFileAndSmallClusters() throws {
        try img("create", "-q", "-f", "qcow2", "-o", "data_file=data.raw,cluster_size=4k", "ext.qcow2", "8M")
        try io("ext.qcow2", "write -P 1 0 100k", "write -z 1M 8k", "write -P 2 3M 4k")
        try img("create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=512", "-b", "ext.qcow2", "-F", "qcow2", "v2.qcow2", "8M")
        try io("v2.qcow2", "write -P 3 50k 3000", "write -z 1M 4k")
        let ledger = try agree("v2.qcow2")
        #expect(ledger.layers[1].hostData == 0)  // the data lives in data.raw
    }

    /// preallocation=metadata: QEMU sees the refcounts claim more than the file holds and reports data clusters
    /// over the file's holes as data that reads as zeros; preallocation=full is not mistaken for it.
    @Test(arguments: ["metadata", "full", "falloc"])
    func preallocation(_ mode: String) throws {
        try img("create", "-q", "-f", "qcow2", "-o", "preallocation=\(mode)", "base.qcow2", "32M")
        try io("base.qcow2", "write -P 1 1M 2M", "write -z 8M 64k")
        try img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
        try io("top.qcow2", "write -P 2 2M 2M")
        // Fully preallocated clusters hold zeros that convert finds by reading and leaves out; the flatten, like
        // qemu-img measure, does not read data.
        let ledger = try agree("top.qcow2", flatten: mode == "metadata")
        #expect(ledger.layers[1].runs.contains { $0.kind == .preallocated } == (mode == "metadata"))
    }

    @Test func mixedFormats() throws {
        try img("create", "-q", "-f", "vmdk", "base.vmdk", "16M")
        try io("base.vmdk", "write -P 1 0 1M", "write -P 2 8M 64k", format: "vmdk")
        try img("create", "-q", "-f", "qed", "-b", "base.vmdk", "-F", "vmdk", "mid.qed", "16M")
        try io("mid.qed", "write -P 3 512k 1M", format: "qed")
        try img("create", "-q", "-f", "qcow2", "-b", "mid.qed", "-F", "qed", "top.qcow2", "16M")
        try io("top.qcow2", "write -P 4 1M 128k")
        try agree("top.qcow2")
    }

    @Test func commitPreviewMatchesQemuImgCommit() throws {
        try img("create", "-q", "-f", "qcow2", "base.qcow2", "64M")
        try io("base.qcow2", "write -P 1 0 4M")
        try img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "96M")
        try io("top.qcow2", "write -P 2 2M 4M", "write -P 3 20M 1M", "write -z 30M 1M", "write -P 4 80M 192k")
        let ledger = try agree("top.qcow2")
        let preview = try #require(ledger.commits.first)
        #expect(preview.needsResize)
        let before = try #require(FileIdentity.of(path: f("base.qcow2"))).size
        let flatten = ledger.flattenFileSize
        try img("convert", "-O", "qcow2", "top.qcow2", "flat.qcow2")
        let flat = try #require(FileIdentity.of(path: f("flat.qcow2"))).size
        #expect(flat + 65536 >= flatten && flatten + 65536 >= flat, "flatten \(flatten) against convert's \(flat)")
        try img("commit", "-q", "top.qcow2")
        let after = try #require(FileIdentity.of(path: f("base.qcow2"))).size
        let grew = after - before
        #expect(grew + 65536 >= preview.targetGrows && preview.targetGrows + 65536 >= grew, "target grows \(preview.targetGrows) against qemu-img's \(grew)")
        #expect(preview.writes == 4 << 20 + 1 << 20 + 192 << 10)
        #expect(preview.zeroWrites == 1 << 20)
    }

    /// The commit preview against `qemu-img commit` on targets of every kind: the target's growth (file size for
    /// qcow2, allocated bytes for raw).
    @Test(arguments: ["subclusters", "raw-holes", "compressed-target", "middle-layer"])
    func commitGrowth(_ kind: String) throws {
        switch kind {
        case "subclusters":
            try img("create", "-q", "-f", "qcow2", "base.img", "256M")
            try io("base.img", "write -P 1 0 1M")
            try img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b", "base.img", "-F", "qcow2", "top.qcow2")
            try io("top.qcow2", "write -P 2 4k 4k", "write -P 3 2M 8k", "write -P 4 200M 100k", "write -z 100M 2M")
        case "raw-holes":
            try img("create", "-q", "-f", "raw", "base.img", "64M")
            try io("base.img", "write -P 1 0 1M", format: "raw")
            try img("create", "-q", "-f", "qcow2", "-b", "base.img", "-F", "raw", "top.qcow2")
            try io("top.qcow2", "write -P 2 512k 1M", "write -P 3 10M 64k", "write -z 20M 1M")
        case "middle-layer":
            try img("create", "-q", "-f", "qcow2", "-o", "cluster_size=16k", "base.img", "64M")
            try io("base.img", "write -P 1 0 3M")
            try img("create", "-q", "-f", "qcow2", "-b", "base.img", "-F", "qcow2", "mid.qcow2")
            try io("mid.qcow2", "write -P 2 1M 4M", "write -P 3 40M 96k", "write -z 2M 64k")
            try img("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2")
            try io("top.qcow2", "write -P 4 0 1M")
        default:
            try img("create", "-q", "-f", "qcow2", "b0.qcow2", "64M")
            try io("b0.qcow2", "write -P 1 0 2M")
            try img("convert", "-c", "-O", "qcow2", "b0.qcow2", "base.img")
            try img("create", "-q", "-f", "qcow2", "-b", "base.img", "-F", "qcow2", "top.qcow2")
            try io("top.qcow2", "write -P 2 0 512k", "write -z 1M 256k")
        }
        let commits = try agree("top.qcow2").commits
        let preview = try #require(kind == "middle-layer" ? commits.last : commits.first)
        func used() throws -> UInt64 {
            let id = try #require(FileIdentity.of(path: f("base.img")))
            return kind == "raw-holes" ? id.allocated : id.size
        }
        let before = try used()
        try img("commit", "-q", kind == "middle-layer" ? "mid.qcow2" : "top.qcow2")
        let grew = try used() - before
        // Zeros written over the target's data clusters free them, and qemu's commit job, whose requests run in
        // parallel, may reuse them for later writes or not: the preview is the most it grows, and it grows by no
        // less than that less the zeroed clusters (exactly the preview when none are zeroed).
        #expect(grew <= preview.targetGrows && preview.targetGrows - grew <= preview.zeroWrites, "grew \(grew), preview \(preview)")
        if kind != "raw-holes" { #expect(try QemuImg.run(["check", f("base.img")]).contains("No errors")) }
    }

    @Test func fixtures() throws {
        for name in ["top.qcow2", "features.qcow2", "v2.qcow2"] {
            let src = fixturesDirectory() + "/" + name
            _ = try agreeFixture(src)
        }
    }

    /// Every image of the third-party corpus: the map agrees with qemu-img's, or the reader refuses it by name.
    @Test(arguments: ThirdPartyCorpus.images)
    func thirdParty(_ image: ThirdPartyCorpus.Image) throws {
        let path = try ThirdPartyCorpus.materialise(image, in: dir)
        let ledger: SpaceLedger
        do { ledger = try SpaceLedger.read(path) } catch {
            #expect(error.description.contains(image.name), "\(error)")
            return
        }
        let theirs = try qemuMap(path)
        #expect(ledger.map == theirs, "chain map of \(image.name): ours \(ledger.map.prefix(4)) theirs \(theirs.prefix(4))")
    }

    func agreeFixture(_ path: String) throws -> SpaceLedger {
        let ledger = try SpaceLedger.read(path)
        #expect(ledger.map == (try qemuMap(path)), "chain map of \(path)")
        return ledger
    }

    @Test func hostileTablesAreNamed() throws {
        try img("create", "-q", "-f", "qcow2", "bad.qcow2", "1G")
        try io("bad.qcow2", "write -P 1 0 64k")
        // The L1 table is at cluster 3 (offset 196608): point its first entry far past the end.
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: f("bad.qcow2")))
        try h.seek(toOffset: 196608)
        h.write(Data([0x80, 0, 0, 0x10, 0, 0, 0, 0]))
        try h.close()
        #expect(throws: LayerSpace.Error.self) { try SpaceLedger.read(f("bad.qcow2")) }
        do { _ = try SpaceLedger.read(f("bad.qcow2")) } catch {
            #expect(error.description.contains("L1 entry 0") && error.description.contains("bad.qcow2"), "\(error)")
        }
    }
}
