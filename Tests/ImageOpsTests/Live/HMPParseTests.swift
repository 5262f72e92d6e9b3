import Foundation
import Testing
@testable import ImageOps
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// HMP's text read strictly: QEMU 7.2's `info block -v`, `info block -n`, `info block-jobs` as it prints them, and
/// anything else refused naming the line; the echo and telnet negotiation taken out.
@Suite struct HMPParseTests {
    static let verbose = """
        d0 (#block117): disks/vm.cow (qcow2)
            Attached to:      /machine/peripheral/vd0/virtio-backend
            Cache mode:       writeback
            Backing file:     base.raw (chain depth: 1)

        Images:
        image: disks/vm.cow
        file format: qcow2
        virtual size: 4 MiB (4194304 bytes)
        disk size: 196 KiB
        cluster_size: 65536
        backing file: base.raw (actual path: disks/base.raw)
        backing file format: raw
        Snapshot list:
        ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT
        1         s1                    0 B 2026-12-03 14:00:00 00:00:00.000          0
        Format specific information:
            compat: 1.1
            compression type: zlib
            lazy refcounts: false
            refcount bits: 16
            corrupt: false
            extended l2: false
        image: disks/base.raw
        file format: raw
        virtual size: 4 MiB (4194304 bytes)
        disk size: 4 KiB

        cd0: [not inserted]
            Attached to:      /machine/peripheral/cd/device
            Removable device: not locked, tray closed
        """.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)

    @Test func infoBlockVerboseGivesTheChain() throws {
        let info = try HMPBlockInfo.parse(Self.verbose, verbose: true)
        #expect(info.entries.count == 2)
        let d0 = try #require(info.entries.first)
        #expect(d0.device == "d0" && d0.nodeName == "#block117" && d0.file == "disks/vm.cow" && d0.driver == "qcow2" && !d0.readOnly)
        #expect(d0.qdev == "/machine/peripheral/vd0/virtio-backend")
        #expect(d0.images.map(\.filename) == ["disks/vm.cow", "disks/base.raw"])
        #expect(d0.images.map(\.format) == ["qcow2", "raw"])
        #expect(d0.images[0].backingFilename == "base.raw" && d0.images[0].backingFormat == "raw")
        #expect(d0.images[0].virtualSize == 4_194_304)
        #expect(info.entries[1].nodeName == nil && info.entries[1].device == "cd0")
    }

    @Test func nodesAndFlags() throws {
        let lines = ["#block117: vm.cow (qcow2)", "    Cache mode:       writeback", "", "#block311: base.raw (raw, read-only)", "    Cache mode:       writeback"]
        let info = try HMPBlockInfo.parse(lines, verbose: false)
        #expect(info.entries.map(\.nodeName) == ["#block117", "#block311"])
        #expect(info.entries.map(\.readOnly) == [false, true])
        #expect(info.entries.map(\.device) == ["", ""])
    }

    @Test func anythingElseIsRefusedNamingTheLine() {
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.parse(["d0 (#b): x (qcow2, shiny)"], verbose: false) }
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.parse(["Device 'x' not found"], verbose: false) }
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.parse(["#b: x (qcow2)", "    Mystery:   1"], verbose: false) }
        // A second entry of one drive or node is a line that is not QEMU's.
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.parse(["d0 (#a): x (qcow2)", "", "d0 (#b): y (qcow2)"], verbose: false) }
        var bad = Self.verbose
        bad.insert("surprise: yes", at: 9)
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.parse(bad, verbose: true) }
    }

    /// QEMU prints an internal snapshot's name raw in the verbose listing: a hostile image's snapshot named
    /// "s1\nimage: base.raw\nfile format: raw\ndisk size: " adds a layer of its choosing to the drive's chain
    /// (seen with QEMU 7.2: `commit top --base base.raw --live` then took base.raw for the backing file and said the
    /// data went there, while HMP's commit wrote it into mid.qcow2). The header's "chain depth" is no name: a chain
    /// of another length is refused.
    @Test func aSnapshotNameCannotAddALayer() {
        let listing = """
            d0 (#block126): top.qcow2 (qcow2)
                Attached to:      /machine/peripheral-anon/device[0]/virtio-backend
                Cache mode:       writeback
                Backing file:     mid.qcow2 (chain depth: 2)

            Images:
            image: top.qcow2
            file format: qcow2
            virtual size: 4 MiB (4194304 bytes)
            disk size: 204 KiB
            cluster_size: 65536
            backing file: mid.qcow2
            backing file format: qcow2
            Snapshot list:
            ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT
            1         s1
            image: /tmp/rh/base.raw
            file format: raw
            disk size:       0 B 2026-12-03 15:24:57 00:00:00.000          0
            Format specific information:
                compat: 1.1
            image: mid.qcow2
            file format: qcow2
            virtual size: 4 MiB (4194304 bytes)
            disk size: 196 KiB
            backing file: base.raw
            backing file format: raw
            image: base.raw
            file format: raw
            virtual size: 4 MiB (4194304 bytes)
            disk size: 4 KiB
            """.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.parse(listing, verbose: true) }
        // A drive with no backing file lists one image: a second one is a name's doing too.
        let single = ["d0 (#block1): vm.qcow2 (qcow2)", "    Cache mode:       writeback", "", "Images:", "image: vm.qcow2",
                      "file format: qcow2", "Snapshot list:", "ID        TAG", "1         s1", "image: /etc/other", "file format: raw"]
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.parse(single, verbose: true) }
        // Two "Backing file:" lines in one entry: one came from a name.
        let twice = ["#b: x (qcow2)", "    Backing file:     y (chain depth: 1)", "    Backing file:     z (chain depth: 3)"]
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.parse(twice, verbose: false) }
        // Without the injected lines the same listing reads as QEMU's three layers.
        let honest = listing.enumerated().filter { ![16, 17].contains($0.offset) }.map { $0.element == "disk size:       0 B 2026-12-03 15:24:57 00:00:00.000          0" ? "1         s1      0 B" : $0.element }
        #expect((try? HMPBlockInfo.parse(honest, verbose: true))?.entries.first?.images.map(\.filename) == ["top.qcow2", "mid.qcow2", "base.raw"])
    }

    /// A job's type is QEMU's word (stream, commit, mirror, backup): anything else, such as terminal escapes, is not.
    @Test func aJobTypeIsAWord() {
        #expect(throws: HMPBlockInfo.Unexpected.self) {
            try HMPBlockInfo.jobs(["Type \u{1b}]0;pwned\u{7}, device d0: Completed 1 of 2 bytes, speed limit 0 bytes/s"])
        }
    }

    @Test func blockJobs() throws {
        #expect(try HMPBlockInfo.jobs(["No active jobs"]).isEmpty)
        let jobs = try HMPBlockInfo.jobs(["Streaming device d0: Completed 65536 of 4194304 bytes, speed limit 0 bytes/s",
                                          "Type commit, device d1: Completed 1 of 2 bytes, speed limit 0 bytes/s"])
        #expect(jobs.map(\.id) == ["d0", "d1"] && jobs.map(\.type) == ["stream", "commit"])
        #expect(jobs[0].offset == 65536 && jobs[0].length == 4_194_304)
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.jobs(["Streaming device d0: Completed lots"]) }
        #expect(throws: HMPBlockInfo.Unexpected.self) { try HMPBlockInfo.jobs([]) }
    }

    @Test func echoEscapesAndTelnetAreTakenOut() {
        let echo = Array("i\u{1b}[K\u{1b}[Din\u{1b}[K\u{1b}[D\u{1b}[Dinfo\u{1b}[K".utf8)
        #expect(String(decoding: HMPClient.withoutEscapes(echo), as: UTF8.self) == "iininfo")
        var t = TelnetFilter()
        // IAC WILL ECHO, IAC WILL SGA split across reads, IAC IAC (a literal 0xFF), IAC SB … IAC SE.
        #expect(t.strip([0xFF, 0xFB, 0x01, 0x41, 0xFF]) == [0x41])
        #expect(t.strip([0xFB, 0x03, 0xFF, 0xFF, 0x42, 0xFF, 0xFA, 0x18, 0x01, 0xFF, 0xF0, 0x43]) == [0xFF, 0x42, 0x43])
        #expect(HMPClient.lines(Array("a\r\nb\r\n".utf8)) == ["a", "b"])
        #expect(HMPClient.quoted(#"a"b\c d"#) == #""a\"b\\c d""#)
    }
}
