import Foundation
import Glibc
import SystemPackage
import Testing
@testable import QCow2
import TestSupport

/// File names are bytes: `String(pathBytes:)` and `pathBytes` must give back every byte string exactly, and the
/// `Sys` wrappers must reach the file those bytes name.
@Suite struct PathBytesTests {
    /// Random names biased towards what breaks decoders: high bytes, truncated and overlong sequences, surrogates,
    /// the escape scalars' own UTF-8 (F4 8F BE/BF xx), and valid multi-byte characters.
    static func randomName(_ rng: inout SystemRandomNumberGenerator) -> [UInt8] {
        let pieces: [[UInt8]] = [
            Array("a".utf8), Array("/".utf8), Array("é".utf8), Array("€".utf8), Array("😀".utf8), [0xE9], [0xFF], [0xFE],
            [0xC3], [0xA9], [0x80], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x8F, 0xBE, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
            [0xF4, 0x8F, 0xBD, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0xF0, 0x9F, 0x98],
        ]
        var out: [UInt8] = []
        for _ in 0..<Int.random(in: 0...12, using: &rng) {
            if Bool.random(using: &rng) {
                out += pieces[Int.random(in: 0..<pieces.count, using: &rng)]
            } else {
                out.append(UInt8.random(in: 1...255, using: &rng))
            }
        }
        return out
    }

    @Test func everyByteStringRoundTrips() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let bytes = Self.randomName(&rng)
            let s = String(pathBytes: bytes)
            #expect(s.pathBytes == bytes, "\(bytes)")
            let viaC = s.withPathCString { p in Array(UnsafeBufferPointer(start: p, count: strlen(p))).map { UInt8(bitPattern: $0) } }
            #expect(viaC == bytes.prefix { $0 != 0 }.map { $0 }, "\(bytes)")
            // A slice and a non-contiguous collection decode the same.
            #expect(String(pathBytes: ([0x41] + bytes).dropFirst()).unicodeScalars.elementsEqual(s.unicodeScalars))
            #expect(String(pathBytes: bytes.lazy.map { $0 }).unicodeScalars.elementsEqual(s.unicodeScalars))
        }
    }

    @Test func validUTF8DecodesAsUsual() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            // Random scalars (no surrogates), outside the escape range: their UTF-8 must decode as String does.
            var text = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...10, using: &rng) {
                let v = UInt32.random(in: 1...0x10FF7F, using: &rng)
                if let u = Unicode.Scalar(v) { text.append(u) }
            }
            let s = String(text)
            #expect(String(pathBytes: Array(s.utf8)).unicodeScalars.elementsEqual(s.unicodeScalars))
            #expect(s.pathBytes == Array(s.utf8))
        }
    }

    @Test func invalidBytesAndEscapeScalarsAreEscapedByteByByte() {
        let latin1 = String(pathBytes: Array("caf".utf8) + [0xE9])
        #expect(latin1.unicodeScalars.map(\.value) == [0x63, 0x61, 0x66, 0x10FFE9])
        // The UTF-8 of U+10FF80 itself is four escapes, so no two byte strings decode alike.
        #expect(String(pathBytes: [0xF4, 0x8F, 0xBE, 0x80]).unicodeScalars.map(\.value) == [0x10FFF4, 0x10FF8F, 0x10FFBE, 0x10FF80])
        // U+10FF7F, just below the range, is an ordinary scalar.
        #expect(String(pathBytes: [0xF4, 0x8F, 0xBD, 0xBF]).unicodeScalars.map(\.value) == [0x10FF7F])
        // Overlong forms, surrogates and a cut sequence are not UTF-8.
        #expect(String(pathBytes: [0xC0, 0x80]).unicodeScalars.map(\.value) == [0x10FFC0, 0x10FF80])
        #expect(String(pathBytes: [0xED, 0xA0, 0x80]).unicodeScalars.map(\.value) == [0x10FFED, 0x10FFA0, 0x10FF80])
        #expect(String(pathBytes: [0xE2, 0x82, 0x41]).unicodeScalars.map(\.value) == [0x10FFE2, 0x10FF82, 0x41])
        #expect(FilePath(pathString: latin1).withPlatformString { strlen($0) } == 4)
    }

    /// The wrappers reach the file the bytes name: created, listed, stat'ed, linked, resolved, renamed, removed.
    @Test func syscallsReachTheFileTheBytesName() throws {
        let dir = try TempDir("pathbytes")
        let name = String(pathBytes: Array("caf".utf8) + [0xE9, 0xFF] + Array(".raw".utf8))
        let path = dir.path + "/" + name
        let fd = Sys.open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        close(fd)
        // The kernel holds the exact bytes (FileManager's listing decodes lossily, so ask ls through od).
        let od = try runProgram("/bin/sh", ["-c", "ls \(shellQuote(dir.path)) | od -An -tx1"])
        #expect(od.stdout.split(whereSeparator: \.isWhitespace) == ["63", "61", "66", "e9", "ff", "2e", "72", "61", "77", "0a"])
        var listed: [String] = []
        Directory.walk(dir.path, maxDepth: 0) { listed.append($0.name) }
        #expect(listed.map { $0.pathBytes } == [name.pathBytes])
        var st = stat()
        #expect(Sys.stat(path, &st) == 0 && Sys.lstat(path, &st) == 0)
        #expect(try ImageFile.open(path).stat.size == 0)
        let link = dir.path + "/link" + name
        #expect(path.withPathCString { target in link.withPathCString { symlink(target, $0) } } == 0)
        #expect(Sys.readlink(link)?.pathBytes == path.pathBytes)
        #expect(Sys.realpath(link)?.pathBytes == path.pathBytes)
        let renamed = dir.path + "/" + String(pathBytes: [0xFE])
        #expect(Sys.rename(path, renamed) == 0)
        #expect(Sys.stat(path, &st) != 0 && Sys.stat(renamed, &st) == 0)
        #expect(Sys.unlink(renamed) == 0 && Sys.unlink(link) == 0)
        #expect(Sys.mkdir(path, 0o700) == 0 && Sys.opendir(path).map { closedir($0) } == 0)
    }
}
