import ImageOps
import QCow2

/// imgtool's version: the one place it is written. `scripts/package` reads it from this line (keep the form
/// `static let number = "X.Y.Z"`), ArgumentParser's help lists `--version` from it, and `--version` prints it.
enum ImgtoolVersion {
    /// The release number.
    static let number = "0.1.0"

    /// `--version` anywhere before `--`, as ArgumentParser itself would take it (GNU tools do the same): the
    /// `--qemu-img` value given with it, if any, names the qemu-img to report (`.some(nil)`: none given). Nil when
    /// argv does not ask for the version, or asks for help too (help wins, as in ArgumentParser).
    static func requested(_ argv: [String]) -> String?? {
        let words = argv.prefix { $0 != "--" }
        guard words.contains("--version"), !words.contains("--help"), !words.contains("-h") else { return nil }
        var qemuImg: String?
        for (i, w) in words.enumerated() {
            if w == "--qemu-img", i + 1 < words.count { qemuImg = words[words.startIndex + i + 1] }
            if w.hasPrefix("--qemu-img=") { qemuImg = String(w.dropFirst("--qemu-img=".count)) }
        }
        return .some(qemuImg)
    }

    /// The line `--version` prints: `imgtool X.Y.Z (qemu-img A.B.C found at PATH)`. It always exists, so a bug
    /// report can quote it: a qemu-img that is missing, fails or names no version is said in the parentheses.
    static func line(qemuImg explicit: String?) async -> String {
        let about: String
        do {
            let tool = try QemuImg.locate(explicit)
            let at = Untrusted.shown(tool.path)
            switch await tool.version() {
            case .version(let v): about = "qemu-img \(v) found at \(at)"
            case .unknown(let why): about = "qemu-img found at \(at), version unknown: \(Untrusted.shown(why))"
            }
        } catch .notFound(let why) {
            about = "qemu-img not found: \(Untrusted.shown(why))"
        } catch {
            about = Untrusted.shown(error.description)
        }
        return "imgtool \(number) (\(about))"
    }
}
