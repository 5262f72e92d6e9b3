import Foundation
import Testing
@testable import imgtool
import TestSupport

/// `imgtool --version`: one line naming imgtool's version (the one constant) and the qemu-img the change commands
/// would run, found the same way (`--qemu-img`, `IMGTOOL_QEMU_IMG`, PATH), exit 0 whatever qemu-img is.
struct VersionTests {
    /// qemu-img's own version word, read here independently of imgtool's parser.
    static func realQemuImgVersion(_ path: String) throws -> String {
        let out = try runProgram(path, ["--version"]).stdout
        let first = try #require(out.split(separator: "\n").first)
        #expect(first.hasPrefix("qemu-img version "))
        return String(try #require(first.split(separator: " ").dropFirst(2).first))
    }

    /// An executable script in `dir` that prints `body`'s output.
    static func script(_ dir: TempDir, _ name: String, _ body: String) throws -> String {
        let path = dir.file(name)
        try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(chmod(path, 0o755) == 0)
        return path
    }

    @Test func namesTheRealQemuImgOnPath() throws {
        let qemu = try TestSupport.QemuImg.path()
        let expected = "imgtool \(ImgtoolVersion.number) (qemu-img \(try Self.realQemuImgVersion(qemu)) found at \(qemu))\n"
        var env = ProcessInfo.processInfo.environment
        env["IMGTOOL_QEMU_IMG"] = nil
        // Wherever `--version` stands before `--` (as ArgumentParser takes it), and through either parser.
        for args in [["--version"], ["info", "x.qcow2", "--version"], ["chain", "--version", "x"], ["fix-backing", "--to", "b", "--version"]] {
            for fast in [true, false] {
                env["IMGTOOL_NO_FAST_PATH"] = fast ? nil : "1"
                let r = try ImgtoolBinary.run(args, environment: env)
                #expect(r.status == 0, "\(args)")
                #expect(r.stdout == expected, "\(args)")
                #expect(r.stderr == "", "\(args)")
            }
        }
        #expect(ImgtoolVersion.number.split(separator: ".").count == 3 && ImgtoolVersion.number.allSatisfy { $0.isNumber || $0 == "." })
    }

    @Test func fakeQemuImgByOptionAndEnvironment() throws {
        let dir = try TempDir("version")
        let fake = try Self.script(dir, "fake-qemu-img", "echo 'qemu-img version 9.1.0-rc2 (fake build)'; echo 'Copyright (c) nobody'")
        let r = try ImgtoolBinary.run(["--version", "--qemu-img", fake])
        #expect(r.status == 0)
        #expect(r.stdout == "imgtool \(ImgtoolVersion.number) (qemu-img 9.1.0-rc2 found at \(fake))\n")
        let inline = try ImgtoolBinary.run(["--qemu-img=\(fake)", "--version"])
        #expect(inline.stdout == r.stdout)
        var env = ProcessInfo.processInfo.environment
        env["IMGTOOL_QEMU_IMG"] = fake
        let byEnv = try ImgtoolBinary.run(["--version"], environment: env)
        #expect(byEnv.status == 0)
        #expect(byEnv.stdout == r.stdout)
        // The explicit option wins over the environment, as in the change commands.
        let real = try TestSupport.QemuImg.path()
        let both = try ImgtoolBinary.run(["--version", "--qemu-img", real], environment: env)
        #expect(both.stdout.contains("found at \(real))"))
    }

    @Test func missingQemuImgStillExitsZero() throws {
        let dir = try TempDir("version")
        let missing = dir.file("no-such-qemu-img")
        let r = try ImgtoolBinary.run(["--version", "--qemu-img", missing])
        #expect(r.status == 0)
        #expect(r.stdout == "imgtool \(ImgtoolVersion.number) (qemu-img not found: --qemu-img \(missing) is not executable)\n")
        #expect(r.stderr == "")
        // Nothing on PATH either.
        var env = ProcessInfo.processInfo.environment
        env["IMGTOOL_QEMU_IMG"] = nil
        env["PATH"] = dir.path
        let none = try ImgtoolBinary.run(["--version"], environment: env)
        #expect(none.status == 0)
        #expect(none.stdout == "imgtool \(ImgtoolVersion.number) (qemu-img not found: not on PATH)\n")
    }

    /// A qemu-img that fails, prints something else, or prints terminal escapes: described, escaped, still exit 0.
    @Test func oddQemuImgIsDescribedNotTrusted() throws {
        let dir = try TempDir("version")
        let failing = try Self.script(dir, "failing", "echo 'qemu-img version 1.2.3'; exit 3")
        let other = try Self.script(dir, "other", "echo 'some other program 1.0'")
        let hostile = try Self.script(dir, "hostile", #"printf 'qemu-img version 7.2\033[2J\n'"#)
        let named = try Self.script(dir, "bad\u{1b}[31mname", "echo 'qemu-img version 8.0.0'")
        let v = ImgtoolVersion.number
        let cases: [(String, String)] = [
            (failing, "imgtool \(v) (qemu-img found at \(failing), version unknown: exit 3)\n"),
            (other, "imgtool \(v) (qemu-img found at \(other), version unknown: no version in its output)\n"),
            (hostile, "imgtool \(v) (qemu-img found at \(hostile), version unknown: no version in its output)\n"),
            (named, "imgtool \(v) (qemu-img 8.0.0 found at \(dir.path)/bad\\x1b[31mname)\n"),
        ]
        for (path, expected) in cases {
            let r = try ImgtoolBinary.run(["--version", "--qemu-img", path])
            #expect(r.status == 0, "\(path)")
            #expect(r.stdout == expected)
        }
    }

    /// Help lists `--version`; after `--` it is an operand; with `--help` help wins.
    @Test func helpListsItAndOperandsStayOperands() throws {
        for args in [["--help"], ["help"], ["-h"]] {
            let r = try ImgtoolBinary.run(args)
            #expect(r.status == 0, "\(args)")
            #expect(r.stdout.contains("--version") && r.stdout.contains("Show the version."), "\(args)")
        }
        let helpWins = try ImgtoolBinary.run(["--version", "--help"])
        #expect(helpWins.status == 0 && helpWins.stdout.contains("USAGE:"))
        let dir = try TempDir("version")
        let operand = try ImgtoolBinary.run(["info", "--", "--version"], cwd: dir.path)
        #expect(operand.status == 1)
        #expect(operand.stdout == "")
        #expect(operand.stderr.contains("--version"))
    }
}
