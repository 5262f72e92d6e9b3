import Foundation
import Testing
@testable import imgtool
import TestSupport

/// `scripts/package`'s .deb, built once per test run (the release build is incremental: a no-op when current) and
/// shared by the tests below, each of which unpacks it into its own scratch root.
enum BuiltPackage {
    /// The repository's root (this file is Tests/ImageOpsTests/PackageTests.swift).
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The .deb's path, or why it could not be built. Built on a thread of its own: the tests await it without
    /// holding one of the runtime's few cooperative threads (two on a two-core machine) for the minutes a release
    /// build takes, so the rest of the suite runs meanwhile.
    static let deb = Task { await offPool(build) }

    /// `body` on a new thread; the caller awaits without blocking a cooperative thread.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { done in Thread.detachNewThread { done.resume(returning: body()) } }
    }

    private static func build() -> Result<String, ToolError> {
        for tool in ["dpkg-deb", "lintian", "strip", "gzip"] where which(tool) == nil {
            return .failure(ToolError("\(tool) is not installed (scripts/setup --tests installs lintian; dpkg-deb comes with dpkg)"))
        }
        let out = repository + "/.build/package-test"
        try? FileManager.default.removeItem(atPath: out)
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            var env = ProcessInfo.processInfo.environment
            // `swift test` holds .build's lock for the whole run; the release build only reads what the test build shares.
            env["IMGTOOL_SWIFTPM_FLAGS"] = "--ignore-lock"
            let started = Date()
            let r = try runProgram(repository + "/scripts/package", [out], environment: env)
            print("scripts/package took \(Int(Date().timeIntervalSince(started))) s")
            guard r.status == 0 else { return .failure(ToolError("scripts/package failed (\(r.status)):\n\(r.stderr)")) }
            return .success(r.stdout.trimmingCharacters(in: .newlines))
        } catch {
            return .failure(ToolError("scripts/package could not run: \(error)"))
        }
    }

    /// The package unpacked with `dpkg -x` into a fresh scratch root.
    static func unpacked() async throws -> (deb: String, root: TempDir) {
        let deb = try await BuiltPackage.deb.value.get()
        let root = try TempDir("deb-root")
        let r = try runProgram(try #require(which("dpkg")), ["-x", deb, root.path])
        #expect(r.status == 0, "\(r.stderr)")
        return (deb, root)
    }
}

/// The Debian package: its name and control fields, its files, and the tool it installs working from a scratch root.
struct PackageTests {
    @Test func controlFieldsAndName() async throws {
        let deb = try await BuiltPackage.deb.value.get()
        #expect((deb as NSString).lastPathComponent == "imgtool_\(ImgtoolVersion.number)_amd64.deb")
        let dpkgDeb = try #require(which("dpkg-deb"))
        func field(_ name: String) throws -> String {
            try runProgram(dpkgDeb, ["-f", deb, name]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try field("Package") == "imgtool")
        #expect(try field("Version") == ImgtoolVersion.number)
        #expect(try field("Architecture") == "amd64")
        #expect(try field("Depends") == "qemu-utils")
        #expect(try field("Recommends") == "fdisk")
        #expect(try field("Section") == "admin")
        #expect(try field("Priority") == "optional")
        #expect(try field("Maintainer").contains("@"))
        #expect(try field("Description").hasPrefix("show and repair the backing chains of QEMU disk images"))

        // Installed-Size as dpkg-gencontrol counts it: each file's KiB rounded up, one for each folder.
        let (_, root) = try await BuiltPackage.unpacked()
        var kib = 0
        let walker = try #require(FileManager.default.enumerator(atPath: root.path))
        for case let rel as String in walker {
            let attrs = try FileManager.default.attributesOfItem(atPath: root.file(rel))
            if attrs[.type] as? FileAttributeType == .typeRegular {
                kib += ((attrs[.size] as? Int ?? 0) + 1023) / 1024
            } else {
                kib += 1
            }
        }
        #expect(try field("Installed-Size") == String(kib))
    }

    @Test func filesOwnersAndModes() async throws {
        let deb = try await BuiltPackage.deb.value.get()
        let listing = try runProgram(try #require(which("dpkg-deb")), ["-c", deb]).stdout
        let lines = listing.split(separator: "\n")
        // --root-owner-group: everything root:root, whoever built it.
        #expect(!lines.isEmpty && lines.allSatisfy { $0.contains(" root/root ") })
        func entry(_ path: String) -> Substring? { lines.first { $0.hasSuffix(" ./" + path) } }
        #expect(entry("usr/bin/imgtool")?.hasPrefix("-rwxr-xr-x") == true)
        for path in ["usr/share/man/man1/imgtool.1.gz", "usr/share/bash-completion/completions/imgtool",
                     "usr/share/zsh/vendor-completions/_imgtool", "usr/share/fish/vendor_completions.d/imgtool.fish",
                     "usr/share/doc/imgtool/copyright", "usr/share/doc/imgtool/changelog.gz",
                     "usr/share/lintian/overrides/imgtool"] {
            #expect(entry(path)?.hasPrefix("-rw-r--r--") == true, "\(path)")
        }

        let (_, root) = try await BuiltPackage.unpacked()
        let man = try runProgram("/bin/sh", ["-c", "gzip -dc \(shellQuote(root.file("usr/share/man/man1/imgtool.1.gz")))"])
        #expect(man.status == 0)
        // generate-manual writes mdoc; the page lists --version among the root command's options.
        #expect(man.stdout.contains(".Dt IMGTOOL 1") && man.stdout.contains(".It Fl -version"))
        let zsh = try String(contentsOfFile: root.file("usr/share/zsh/vendor-completions/_imgtool"), encoding: .utf8)
        #expect(zsh.hasPrefix("#compdef imgtool"))
        let bash = try runProgram("/bin/bash", ["-n", root.file("usr/share/bash-completion/completions/imgtool")])
        #expect(bash.status == 0, "\(bash.stderr)")
        let copyright = try String(contentsOfFile: root.file("usr/share/doc/imgtool/copyright"), encoding: .utf8)
        #expect(copyright.hasPrefix("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"))
        // The installed binary is the stripped, fully static one: no interpreter, no symbol table.
        let readelf = try runProgram(try #require(which("readelf")), ["-lS", root.file("usr/bin/imgtool")]).stdout
        #expect(!readelf.contains("INTERP") && !readelf.contains(".symtab"))
    }

    /// The installed tool runs from the scratch root: `--version` names the package's version and the real qemu-img,
    /// and `chain` reads a two-layer chain qemu-img made.
    @Test func installedToolRuns() async throws {
        let (_, root) = try await BuiltPackage.unpacked()
        let tool = root.file("usr/bin/imgtool")
        let qemu = try TestSupport.QemuImg.path()
        var env = ProcessInfo.processInfo.environment
        env["IMGTOOL_QEMU_IMG"] = nil
        let version = try runProgram(tool, ["--version"], environment: env)
        #expect(version.status == 0)
        #expect(version.stdout == "imgtool \(ImgtoolVersion.number) (qemu-img \(try VersionTests.realQemuImgVersion(qemu)) found at \(qemu))\n")

        let dir = try TempDir("deb-chain")
        try TestSupport.QemuImg.run(["create", "-q", "-f", "raw", "base.raw", "1M"], cwd: dir.path)
        try TestSupport.QemuImg.run(["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2"], cwd: dir.path)
        let chain = try runProgram(tool, ["chain", "top.qcow2"], cwd: dir.path)
        #expect(chain.status == 0, "\(chain.stderr)")
        #expect(chain.stdout.contains("top.qcow2") && chain.stdout.contains("base.raw"))
        let json = try runProgram(tool, ["chain", "--output", "json", "top.qcow2"], cwd: dir.path)
        #expect(json.status == 0)
        // The same answer as the binary the other tests run.
        #expect(json.stdout == (try ImgtoolBinary.run(["chain", "--output", "json", "top.qcow2"], cwd: dir.path)).stdout)
    }

    /// Lintian (Debian's package checker) finds no errors.
    @Test func lintianReportsNoErrors() async throws {
        let deb = try await BuiltPackage.deb.value.get()
        let lintian = try #require(which("lintian"), "lintian is not installed (scripts/setup --tests)")
        let run = await BuiltPackage.offPool { Result { try runProgram(lintian, ["--info", deb]) } }
        let r = try run.get()
        print("lintian:\n" + r.stdout + r.stderr)
        #expect(!r.stdout.split(separator: "\n").contains { $0.hasPrefix("E: ") })
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    }
}
