import Foundation
import Testing
@testable import QCow2
import TestSupport

/// The committed fixtures (made by Tests/Fixtures/make-images.sh with the real qemu-img) read as qemu-img reads them.
struct FixtureTests {
    @Test(arguments: ["base.raw", "overlay.cow", "v2.qcow2", "features.qcow2", "top.qcow2", "mbr.raw", "gpt.raw"])
    func fixtureAgreesWithQemuImg(name: String) throws {
        let path = fixturesDirectory() + "/" + name
        let ours = try ImageInfo.read(path)
        let theirs = try #require(try QemuImg.info(path) as? [String: Any])
        #expect(ours.format.rawValue == theirs["format"] as? String)
        #expect(ours.virtualSize == theirs["virtual-size"] as? UInt64)
        #expect(ours.backingFilename == theirs["backing-filename"] as? String)
        #expect(ours.backingFormat == theirs["backing-filename-format"] as? String)
    }

    @Test func fixtureChainIsHealthy() throws {
        let chain = try BackingChain.follow(fixturesDirectory() + "/top.qcow2")
        #expect(chain.isHealthy)
        #expect(chain.layers.map(\.format) == [.qcow2, .qcow2, .raw])
        let features = try #require(try ImageInfo.read(fixturesDirectory() + "/features.qcow2").qcow2)
        #expect(features.hasExtendedL2 && features.lazyRefcounts && features.compressionType == 1 && features.clusterSize == 16384)
    }
}
