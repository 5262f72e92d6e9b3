import Foundation
import Testing
import TestSupport

/// A user made for one test and deleted when the value goes away (`useradd`, `userdel`): the tests run as root and
/// need someone else to plant a save.
final class ThrowawayUser {
    let name: String
    let uid: String

    init() throws {
        let useradd = try #require(which("useradd"), "useradd (passwd) is needed")
        name = "imgtsv" + UUID().uuidString.prefix(8).lowercased()
        let r = try runProgram(useradd, ["-M", "-U", "-s", "/usr/sbin/nologin", name])
        guard r.status == 0 else { throw ToolError("useradd \(name) failed: \(r.stderr) (these tests run as root)") }
        uid = try runProgram("/usr/bin/id", ["-u", name]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { _ = try? runProgram(which("userdel") ?? "/usr/sbin/userdel", [name]) }

    /// Runs `argv` as this user, with no supplementary groups.
    func run(_ argv: [String]) throws -> RunResult {
        let setpriv = try #require(which("setpriv"), "setpriv (util-linux) is needed")
        return try runProgram(setpriv, ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups"] + argv)
    }
}

/// Saves someone else wrote. `undo` writes a save's bytes over the image, so a save in a shared or world-writable
/// folder, one owned by another user, one reached through a symbolic link or one larger than a header cluster is
/// refused, and the image stays byte-identical; a change with no folder only its user can write is refused before
/// it writes. The same save bytes, in the user's own folder, are put back.
@Suite(.serialized)
struct ForeignSaveTests {
    let f: SafetyFixture

    init() throws {
        f = try SafetyFixture()
        try f.qemu("create", "-q", "-f", "raw", "old.raw", "32M")
        try f.qemu("create", "-q", "-f", "raw", "new.raw", "32M")
        try f.qemu("create", "-q", "-f", "qcow2", "-b", "old.raw", "-F", "raw", "vm.cow")
    }

    /// The save file name imgtool uses for `name`: device and inode.
    func saveName(_ name: String) throws -> String {
        try runProgram("/usr/bin/stat", ["-c", "%d-%i", f.path(name)]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) + ".hdr"
    }

    func env(state: String) -> [String: String] {
        var e = f.environment
        e["IMGTOOL_STATE_DIR"] = state
        return e
    }

    func checkClean(_ name: String) throws {
        let r = try runProgram(try QemuImg.path(), ["check", f.path(name)])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
    }

    /// Undo from `state` is refused with `words` in its message and writes nothing.
    func refused(state: String, _ words: String..., comment: String) throws {
        let before = try f.digest("vm.cow")
        for argv in [["undo", "vm.cow", "--dry-run"], ["undo", "vm.cow"]] {
            let r = try f.imgtool(argv, environment: env(state: state))
            #expect(r.status == 1, "\(comment): \(r.stdout)")
            for w in words { #expect(r.stderr.contains(w), "\(comment): \(r.stderr)") }
            #expect(r.stderr.contains("undo refused, the image is left as it is"), "\(comment): \(r.stderr)")
        }
        #expect(try f.digest("vm.cow") == before, "\(comment): the image was written")
        try checkClean("vm.cow")
    }

    @Test func foreignLinkedAndOversizedSavesAreRefused() throws {
        let original = try f.digest("vm.cow")
        let fix = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"])
        #expect(fix.status == 0, "\(fix.stderr)")
        try checkClean("vm.cow")
        let name = try saveName("vm.cow")
        let legit = f.state + "/" + name
        // The very bytes imgtool wrote (a save undo would accept in its own folder), readable by the other user.
        let source = f.root.file("save.copy")
        try FileManager.default.copyItem(atPath: legit, toPath: source)
        chmod(source, 0o644)
        let user = try ThrowawayUser()

        // A shared world-writable folder (sticky or not), the save planted by the other user.
        for mode: mode_t in [0o1777, 0o777] {
            let shared = try f.root.mkdir("shared-\(String(mode, radix: 8))")
            chmod(shared, mode)
            let plant = try user.run(["/bin/cp", source, shared + "/" + name])
            #expect(plant.status == 0, "\(plant.stderr)")
            try refused(state: shared, "can be written by other users", comment: "folder \(String(mode, radix: 8))")
            // The folder made private again (root's, 0755): the file is still the other user's.
            chmod(shared, 0o755)
            try refused(state: shared, "belongs to user \(user.uid)", "someone else wrote it", comment: "file owned by another user")
        }
        // A folder owned by the other user (they could replace what is in it).
        let theirs = try f.root.mkdir("theirs")
        #expect(shell("chown \(user.uid):\(user.uid) \(shellQuote(theirs)) && chmod 700 \(shellQuote(theirs))") == 0)
        try FileManager.default.copyItem(atPath: legit, toPath: theirs + "/" + name)
        try refused(state: theirs, "belongs to user \(user.uid), not to you", comment: "folder owned by another user")
        // A private folder under a world-writable, non-sticky one.
        let open = try f.root.mkdir("open")
        chmod(open, 0o777)
        let inner = open + "/inner"
        try FileManager.default.createDirectory(atPath: inner, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        try FileManager.default.copyItem(atPath: legit, toPath: inner + "/" + name)
        try refused(state: inner, "not sticky", comment: "parent writable by others")

        // A symbolic link as the folder, and as the save file.
        let link = f.root.file("state-link")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: f.state)
        try refused(state: link, "is a symbolic link", comment: "linked folder")
        let linked = try f.root.mkdir("linked-save")
        chmod(linked, 0o700)
        try FileManager.default.createSymbolicLink(atPath: linked + "/" + name, withDestinationPath: legit)
        try refused(state: linked, "is a symbolic link", comment: "linked save file")
        // A second name of the save (a hard link) is not one imgtool made.
        let hard = try f.root.mkdir("hard")
        chmod(hard, 0o700)
        #expect(Glibc.link(legit, hard + "/" + name) == 0)
        try refused(state: hard, "has 2 names", comment: "hard-linked save")
        #expect(unlink(hard + "/" + name) == 0)

        // A save of 64 GiB (sparse): refused from its size, before anything is allocated for it.
        let big = try f.root.mkdir("big")
        chmod(big, 0o700)
        #expect(shell("truncate -s 64G \(shellQuote(big + "/" + name))") == 0)
        try refused(state: big, "is 68719476736 bytes, more than a save of this image can be", comment: "oversized save")

        // The same bytes in the user's own folder: put back, the image as it was, qemu-img clean.
        let undo = try f.imgtool(["undo", "vm.cow"])
        #expect(undo.status == 0, "\(undo.stderr)")
        #expect(try f.digest("vm.cow") == original)
        try checkClean("vm.cow")
        #expect(try f.backing("vm.cow") == "old.raw")
    }

    /// A change with no folder only its user can write is refused before it writes: a world-writable one, one
    /// reached through a symbolic link, and none at all (HOME, XDG_STATE_HOME and IMGTOOL_STATE_DIR unset; saves
    /// once went to /tmp then).
    @Test func aChangeWithNoSafeFolderIsRefusedBeforeWriting() throws {
        let before = try f.digest("vm.cow")
        let shared = try f.root.mkdir("shared")
        chmod(shared, 0o1777)
        let link = f.root.file("link")
        let real = try f.root.mkdir("real")
        chmod(real, 0o700)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        var bare = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        let cases: [([String: String], String)] = [
            (env(state: shared), "can be written by other users (mode 1777)"),
            (env(state: link), "is a symbolic link"),
            (env(state: link + "/undo"), "is a symbolic link"),
            (bare, "no folder to save its header in (HOME, XDG_STATE_HOME and IMGTOOL_STATE_DIR are all unset)"),
        ]
        for (environment, words) in cases {
            let dry = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw", "--dry-run"], environment: environment)
            #expect(dry.status == 1 && dry.stderr.contains(words), "dry run, \(words): \(dry.stdout) \(dry.stderr)")
            let r = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"], environment: environment)
            #expect(r.status == 1, "\(words): \(r.stdout)")
            #expect(r.stderr.contains(words) && r.stderr.contains("nothing was changed"), "\(words): \(r.stderr)")
            #expect(r.stderr.contains("instead: "), "\(r.stderr)")
            #expect(try f.digest("vm.cow") == before)
            #expect(try f.backing("vm.cow") == "old.raw")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: shared).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: real).isEmpty)
        // Undo with no folder finds no save, and says so.
        bare["HOME"] = nil
        let undo = try f.imgtool(["undo", "vm.cow"], environment: bare)
        #expect(undo.status == 1)
        #expect(undo.stderr.contains("no saved header") && undo.stderr.contains("all unset"), "\(undo.stderr)")
        #expect(try f.digest("vm.cow") == before)
        // A folder made by imgtool under a sticky shared one is its user's alone: the change goes ahead there.
        let r = try f.imgtool(["fix-backing", "vm.cow", "--to", "new.raw"], environment: env(state: shared + "/sub"))
        #expect(r.status == 0, "\(r.stderr)")
        var st = stat()
        #expect(stat(shared + "/sub", &st) == 0 && st.st_mode & 0o777 == 0o700)
        try checkClean("vm.cow")
        #expect(try f.imgtool(["undo", "vm.cow"], environment: env(state: shared + "/sub")).status == 0)
        #expect(try f.digest("vm.cow") == before)
        try checkClean("vm.cow")
    }
}
