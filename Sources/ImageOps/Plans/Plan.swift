import QCow2

import Glibc

/// A change, checked and ready: the checks made (for the user to read) and the qemu-img commands that do it.
public struct Plan: Sendable {
    /// What was checked, one line each.
    public var checks: [String] = []
    /// Commands to run, in order. They name the image as `QemuImgCommand.heldImage` (or a `json:` name around it):
    /// the descriptor below, handed to qemu-img as its standard input.
    public var commands: [QemuImgCommand] = []
    /// The image the commands change, opened when it was checked and held since, so the change lands on the file
    /// that was checked whatever its path names by then.
    public var held: ImageFile?
    /// Further files the commands name by descriptor (`/proc/PID/fd/N` in a `json:` chain: commit's lower layers),
    /// held from the checks to the end like `held`.
    public var alsoHeld: [ImageFile] = []
    /// A new file the commands write: created exclusively (O_EXCL) just before qemu-img runs, then held the same way.
    public var reserve: String?
    /// Header-only changes: the change asked, for the save `undo` needs, written before qemu-img starts.
    public var save: HeaderBackup.Intent?
    /// Images to show the chain of after the change.
    public var show: [String] = []
    /// Stream qemu-img's output (its progress bar) to the terminal.
    public var progress = false
    /// What the user must know about a change made anyway (`--force`) or about data it leaves to the user's word:
    /// printed as warnings once the change is made.
    public var warnings: [String] = []

    /// The path the commands write, as the user named it.
    public var target: String? { held?.path ?? reserve }
}

/// Why a change was refused or failed. Every case names the file.
public enum ChangeError: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
    /// A check failed: nothing was changed.
    case refused(path: String, reason: String, hint: String?)
    /// Another process holds the image.
    case inUse(path: String, holders: String)
    /// The base of a new overlay or backing link is being written by another process (QEMU's lock byte 101).
    case baseWritten(path: String, holders: String)
    /// The change was made on the file that was checked, but by the end the path named another file.
    case pathMoved(path: String, detail: String)
    /// qemu-img failed on `path`; `detail` says what imgtool cleaned up.
    case qemuImgFailed(path: String, error: QemuImg.Error, detail: String)
    /// imgtool was interrupted (`signal`); what it did about it.
    case interrupted(path: String, signal: Int32, detail: String)

    /// The exit code: 128 + the signal for an interruption (as a shell reports one), else 1.
    public var exitCode: Int32 {
        if case .interrupted(_, let sig, _) = self { return 128 + sig }
        return 1
    }

    public var description: String {
        switch self {
        case .baseWritten(let path, let holders):
            return "\(path) is being written by \(holders); a qcow2 overlay on it would be corrupt as soon as it changes, so nothing was changed"
                + "\n  instead: stop the writer (or snapshot it inside QEMU: --live), then retry"
        case .qemuImgFailed(let path, let error, let detail):
            return "\(path): \(error.description)" + (detail.isEmpty ? "" : "\n  \(detail)")
        case .pathMoved(let path, let detail):
            return "\(path): \(detail)"
        case .interrupted(let path, let sig, let detail):
            return "\(path): interrupted by \(Self.signalName(sig)); \(detail)"
        case .refused(let path, let reason, let hint):
            return "\(path): \(reason); nothing was changed" + (hint.map { "\n  instead: \($0)" } ?? "")
        case .inUse:
            return ([headline] + details.map { "  " + $0 }).joined(separator: "\n")
        }
    }

    public var headline: String {
        switch self {
        case .refused(let path, let reason, _): return "\(path): \(reason); nothing was changed"
        case .baseWritten(let path, let holders):
            return "\(path) is being written by \(holders); a qcow2 overlay on it would be corrupt as soon as it changes, so nothing was changed"
        case .qemuImgFailed(let path, let error, _): return "\(path): \(error.headline)"
        case .inUse(let path, let holders): return "\(path) is in use by \(holders); nothing was changed (stop it first, then retry)"
        case .pathMoved, .interrupted: return description
        }
    }

    public var details: [String] {
        switch self {
        case .refused(_, _, let hint?): return ["instead: \(hint)"]
        case .baseWritten: return ["instead: stop the writer (or snapshot it inside QEMU: --live), then retry"]
        case .qemuImgFailed(_, let error, let detail): return error.details + (detail.isEmpty ? [] : [detail])
        case .inUse(_, let holders):
            // A running QEMU can make the change itself: say so where the user looks first.
            let qemu = holders.contains("qemu-system") || holders.contains("qemu-kvm")
            return qemu ? ["instead: add --live to have the running QEMU make the change through its QMP monitor"] : []
        case .refused, .pathMoved, .interrupted: return []
        }
    }

    static func signalName(_ sig: Int32) -> String {
        switch sig {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(sig)"
        }
    }
}

/// Builds the plans for each changing command. Every check runs here, before anything is written.
public enum Operations {
    /// Opens `path` for the checks and holds it: every check reads this descriptor, and qemu-img is handed it.
    static func openImage(_ path: String, role: String) throws(ChangeError) -> ImageFile {
        do { return try ImageFile.open(path) } catch {
            throw .refused(path: path, reason: "\(role) cannot be read: \(error.description)", hint: nil)
        }
    }

    static func readImage(_ file: ImageFile, role: String) throws(ChangeError) -> ImageInfo {
        do { return try ImageInfo.read(file) } catch {
            throw .refused(path: file.path, reason: "\(role) cannot be read: \(error.description)", hint: nil)
        }
    }

    static func readImage(_ path: String, role: String) throws(ChangeError) -> ImageInfo {
        do { return try ImageInfo.read(path) } catch {
            throw .refused(path: path, reason: "\(role) cannot be read: \(error.description)", hint: nil)
        }
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return Sys.lstat(path, &st) == 0
    }

    /// Checks that `path` does not exist. The executor creates it exclusively (O_EXCL) just before qemu-img runs,
    /// so no other file can appear there in between and an existing file is never overwritten.
    static func reserve(_ path: String, _ plan: inout Plan) throws(ChangeError) {
        try refuseFolderName(path)
        if exists(path) {
            throw .refused(path: path, reason: "already exists and imgtool does not overwrite", hint: "choose another name, or remove it yourself")
        }
        plan.checks.append("\(path) does not exist yet; it is created exclusively and held, and qemu-img writes it as \(QemuImgCommand.heldImage)")
        plan.reserve = path
    }

    /// Refuses a new file's name that ends in "/": it names a folder, and FilePath (which drops the slash) would
    /// create a file without it.
    static func refuseFolderName(_ path: String) throws(ChangeError) {
        guard path.hasSuffix("/") else { return }
        throw .refused(path: path, reason: "ends in /, so it names a folder, not a new file", hint: "give the file's name without the trailing /")
    }

    /// Refuses a file to be named as a backing file when its name reaches it through a pseudo file system
    /// (`/proc/self/fd/0`, `/dev/stdin`): written into an image, such a name means that file only while imgtool runs,
    /// and a chain followed from it is followed from the wrong folder (so a loop goes unseen). `owner` is the image
    /// refused; the hint names the file itself.
    static func requireLastingName(_ path: String, owner: String) throws(ChangeError) {
        var p = Paths.absolute(path)
        for _ in 0..<40 {
            let dir = BackingPath.directory(p)
            if let fs = PseudoFileSystem.of(path: dir) {
                let hint = Sys.realpath(path).map { "name the file itself: \(Shell.operand($0))" }
                throw .refused(path: owner, reason: "\(path) reaches its file through \(fs) (\(dir)), a name that leads there only while imgtool runs", hint: hint)
            }
            var st = stat()
            guard Sys.lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK else { return }
            guard let target = Sys.readlink(p), !target.isEmpty else { return }
            p = target.hasPrefix("/") ? target : (dir == "/" ? "" : dir) + "/" + target
        }
    }

    /// Holds `file` for the change and says so among the checks.
    static func hold(_ file: ImageFile, _ plan: inout Plan) {
        plan.held = file
        plan.checks.append("\(file.path) stays open from these checks to the change: qemu-img writes that file (as \(QemuImgCommand.heldImage)), whatever the name names by then")
    }

    /// How to write a new backing name.
    public enum LinkStyle: Sendable { case keep, relative, absolute }
}
