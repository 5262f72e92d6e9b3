import Foundation

/// The committed LUKS images (Tests/Fixtures/luks, made once by make-luks.sh): QEMU times its PBKDF when it creates
/// a LUKS header, and on a loaded machine that timing fails ("Unable to get accurate CPU usage"), so no test makes
/// one. Each is unpacked and checked against the sha256 MANIFEST.tsv records. The passphrase is "pw".
public enum LUKSFixtures {
    /// The folder of the committed files.
    public static var folder: String {
        fixturesDirectory().replacingOccurrences(of: "/Fixtures/images", with: "/Fixtures/luks")
    }

    /// The images MANIFEST.tsv names, with their sha256.
    public static func manifest() throws -> [String: String] {
        let text = try String(contentsOfFile: folder + "/MANIFEST.tsv", encoding: .utf8)
        var out: [String: String] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            if f.count >= 3 { out[f[1]] = f[2] }
        }
        return out
    }

    /// Unpacks fixture `name` (e.g. "plain.luks", "luks.qcow2") to `path`, and checks it is the image the manifest names.
    public static func copy(_ name: String, to path: String) throws {
        guard let sha = try manifest()[name] else { throw ToolError("\(name) is not in \(folder)/MANIFEST.tsv") }
        guard let xz = which("xz") else { throw ToolError("xz is needed to unpack \(name)") }
        let status = shell("\(shellQuote(xz)) -dc \(shellQuote(folder + "/" + name + ".xz")) > \(shellQuote(path))")
        guard status == 0 else { throw ToolError("xz -dc \(name).xz failed (\(status))") }
        let got = try fileDigest(path)
        guard got == sha else { throw ToolError("\(name): sha256 \(got), MANIFEST.tsv says \(sha)") }
    }
}
