import Foundation
import Testing
@testable import ImageOps
import QCow2
import TestSupport

/// Wrong answers a hostile review found in `imgtool space`, each against the real qemu-img.
extension SpaceDifferentialTests {
    /// A raw file is a whole number of 512-byte sectors to QEMU: a 1000-byte file is a 1024-byte disk whose last
    /// 24 bytes read as zeros, sparse or not.
    @Test(arguments: [false, true])
    func rawSizeRoundsUpToSectors(written: Bool) throws {
        let name = "r\(written).raw"
        let path = f(name)
        #expect(FileManager.default.createFile(atPath: path, contents: written ? Data([1, 2, 3]) : Data()))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 1000)
        try handle.close()
        let ledger = try agree(name)
        let layer = try #require(ledger.layers.first)
        #expect(layer.virtualSize == 1024)
        #expect(layer.allocated == 1024)
        #expect(layer.fileSize == 1000)
        #expect(ledger.map.last.map { $0.start + $0.length } == 1024)
    }

    /// A VDI's unallocated blocks are present and read as zeros in qemu-img map (dynamic, with and without data);
    /// a static one maps every block to the file.
    @Test(arguments: ["empty", "data", "static", "static-data"])
    func vdiAllocated(kind: String) throws {
        let name = "\(kind).vdi"
        if kind.hasPrefix("static") {
            try img("create", "-q", "-f", "vdi", "-o", "static=on", name, "64M")
        } else {
            try img("create", "-q", "-f", "vdi", name, "64M")
        }
        if kind.hasSuffix("data") { try io(name, "write -P 1 512k 3200k", format: "vdi") }
        let ledger = try agree(name)
        let layer = try #require(ledger.layers.first)
        #expect(layer.allocated == 64 << 20)
        switch kind {
        case "empty": #expect(layer.zero == 64 << 20)
        case "data": #expect(layer.zero == (64 << 20) - (4 << 20))
        default: #expect(layer.zero > (60 << 20) && layer.runs.allSatisfy(\.kind.isData))  // a sparse file: holes read zeros
        }
    }

    /// `unused` counts the bytes of clusters with refcount 0; a cluster in use that the file ends inside (a bitmap
    /// directory written last) is not unused, whatever of it lies past the end.
    @Test func unusedWithTailClusterInUse() throws {
        try img("create", "-q", "-f", "qcow2", "t.qcow2", "64M")
        try io("t.qcow2", "write -P 1 0 1M")
        try img("bitmap", "--add", "t.qcow2", "b0")
        try img("snapshot", "-c", "s1", "t.qcow2")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: f("t.qcow2"))))
        func be(_ at: Int, _ n: Int) -> UInt64 { bytes[at..<(at + n)].reduce(0) { $0 << 8 | UInt64($1) } }
        // The oracle: walk the 16-bit refcounts by hand.
        let cs = 1 << Int(be(20, 4)), table = Int(be(48, 8)), tableClusters = Int(be(56, 4))
        var referenced: Set<Int> = []
        for i in 0..<(tableClusters * cs / 8) {
            let block = Int(be(table + 8 * i, 8))
            guard block != 0 else { continue }
            for j in 0..<(cs / 2) where be(block + 2 * j, 2) != 0 { referenced.insert(i * cs / 2 + j) }
        }
        let clusters = (bytes.count + cs - 1) / cs
        #expect(bytes.count % cs != 0 && referenced.contains(clusters - 1), "the file ends inside a cluster in use")
        let unused = (0..<clusters).filter { !referenced.contains($0) }.reduce(0) { $0 + min(cs, bytes.count - $1 * cs) }
        #expect(unused > 0 && unused % cs == 0)
        let ledger = try agree("t.qcow2")
        #expect(ledger.layers.first?.unused == UInt64(unused))
    }
}

extension SpaceDifferentialTests {
    /// The flatten over a base whose map calls zeros data (a VHDX QEMU maps as all data, zeros written into VHD and
    /// VDI blocks): qemu-img convert writes no cluster for what reads as zeros, nor does the preview count one.
    @Test(arguments: ["vhdx", "vpc", "vdi"])
    func flattenOverNonQCow2Base(format: String) throws {
        let base = "base.\(format)"
        try img("create", "-q", "-f", format, base, "64M")
        try io(base, "write -P 1 512k 3200k", format: format)
        try img("create", "-q", "-f", "qcow2", "-b", base, "-F", format, "top.qcow2")
        try io("top.qcow2", "write -P 2 10M 64k", "write -z 1M 64k")
        let ledger = try agree("top.qcow2")
        try img("convert", "-O", "qcow2", "top.qcow2", "flat.qcow2")
        #expect(ledger.flattenFileSize == (try #require(FileIdentity.of(path: f("flat.qcow2")))).size)
    }
}
