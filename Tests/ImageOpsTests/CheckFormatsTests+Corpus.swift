import Foundation
import Testing
@testable import QCow2
import TestSupport

extension CheckFormatsTests {
    /// Formats QEMU 7.2 has no `bdrv_co_check` for: qemu-img says "This image format does not support checks"
    /// (exit 63); imgtool refuses them with the same sentence, and reads nothing else of the image.
    @Test func unsupportedFormatsAreRefusedAsQemuImgRefuses() throws {
        let dir = try TempDir("checkf")
        var cases: [(String, String)] = []
        for (fmt, opts) in [("raw", [String]()), ("vpc", []), ("vpc", ["-o", "subformat=fixed"]), ("qcow", [])] {
            let p = dir.file("\(fmt)\(opts.isEmpty ? "" : "-fixed").img")
            try CheckImages.create(p, fmt, "16M", opts)
            cases.append((p, p))
        }
        for (label, path) in cases {
            guard case .unsupported = try CheckDiff.theirs(path) else { Issue.record("\(label): qemu-img checks it"); continue }
        }
        try Self.expectAgreement(cases)

        // LUKS: qemu-img needs the key to open it before it can say so.
        let luks = dir.file("plain.luks")
        try LUKSFixtures.copy("plain.luks", to: luks)
        let r = try runProgram(try QemuImg.path(), ["check", "--object", "secret,id=s0,data=pw", "--image-opts",
                                                    "driver=luks,key-secret=s0,file.filename=\(luks)"])
        #expect(r.status == 63 && r.stderr.contains("This image format does not support checks"), "\(r.status) \(r.stderr)")
        guard case .failure(let e) = CheckDiff.ours(luks), case .unsupported = e as? ImageCheck.Error else {
            Issue.record("imgtool checks a LUKS image")
            return
        }
        #expect("\(e)".contains("This image format does not support checks"))
    }

    /// Every image of the third-party corpus and of Tests/Fixtures/images that is not qcow2 (checkq's): the same
    /// answer as `qemu-img check` — the same counts, the same failure, or both refuse (the VHDX whose log needs a
    /// replay; the formats without a check).
    @Test func corpusAgreesWithQemuImg() throws {
        let dir = try TempDir("checkf")
        var cases: [(String, String)] = []
        for image in ThirdPartyCorpus.images {
            let p = try ThirdPartyCorpus.materialise(image, in: dir)
            cases.append((image.name, p))
        }
        let own = fixturesDirectory()
        for name in try FileManager.default.contentsOfDirectory(atPath: own).sorted() where !name.hasSuffix(".json") && name != "MADE-WITH" {
            cases.append(("images/" + name, own + "/" + name))
        }
        cases = cases.filter { (try? ImageInfo.read($0.1).format) != .qcow2 }
        #expect(cases.count >= 25, "\(cases.count) non-qcow2 images")
        let checked = cases.filter { c in [.qed, .vdi, .vhdx, .parallels, .vmdk].contains((try? ImageInfo.read(c.1).format) ?? .raw) }
        #expect(checked.count >= 6, "the corpus has images of the checked formats: \(checked.map(\.0))")
        try Self.expectAgreement(cases)
    }
}
