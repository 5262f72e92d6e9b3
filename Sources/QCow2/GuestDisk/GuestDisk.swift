/// The disk a guest sees, read natively: a raw file directly, a qcow2 through its L1/L2 tables and its whole
/// backing chain. Tables are read lazily and cached; every offset read from the file is checked first.
public final class GuestDisk {
    /// The top image's path.
    public let path: String
    /// The virtual size.
    public let size: UInt64
    /// The top image's format.
    public let format: ImageFormat
    let top: any GuestLayer

    /// Why the guest's disk cannot be read.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        /// The image or a layer below it could not be opened.
        case open(ImageInfo.Error)
        /// The chain is broken; guest reads need every layer.
        case brokenChain(path: String, problem: String)
        /// Encrypted images need a key we do not take.
        case encrypted(path: String)
        /// A format whose clusters we do not map.
        case unsupportedFormat(path: String, format: String)
        /// A chunk compressed by a method imgtool has no library for (a dmg's bzip2 or lzfse chunks).
        case unsupportedCompression(path: String, method: String, offset: UInt64)
        /// A table entry or compressed cluster that cannot be right.
        case corrupt(path: String, field: String, offset: UInt64, reason: String)
        /// A read failed.
        case io(ImageFile.Error)
        /// More bytes asked for at once than a read may hold.
        case tooLarge(count: Int)

        public var description: String {
            switch self {
            case .open(let e): return e.description
            case .brokenChain(let path, let problem): return "\(path): the backing chain is broken (\(problem)); run imgtool chain \(path)"
            case .encrypted(let path): return "\(path): the image is encrypted; imgtool does not read encrypted guest data"
            case .unsupportedFormat(let path, let format): return "\(path): guest reads of \(format) images are not supported"
            case .unsupportedCompression(let path, let method, let offset):
                return "\(path): the chunk at offset \(offset) is \(method)-compressed: \(method) chunks are not supported (imgtool has no \(method) library); `qemu-img convert -O raw` first (QEMU needs its dmg-\(method == "bzip2" ? "bz2" : method) module, from qemu-block-extra on Debian)"
            case .corrupt(let path, let field, let offset, let reason): return "\(path): corrupt \(field) at offset \(offset): \(reason)"
            case .io(let e): return e.description
            case .tooLarge(let n): return "a single read of \(n) bytes is larger than the 64 MiB imgtool reads at once"
            }
        }
    }

    /// At most this many bytes per read call (a caller's count is never trusted to size an allocation).
    public static let maxRead = 64 << 20

    init(path: String, size: UInt64, format: ImageFormat, top: any GuestLayer) {
        self.path = path
        self.size = size
        self.format = format
        self.top = top
    }

    /// Opens the guest disk of `path`, following the whole chain.
    public static func open(_ path: String) throws(Error) -> GuestDisk {
        let chain: BackingChain
        do { chain = try BackingChain.follow(path) } catch { throw .open(error) }
        if let p = chain.problems.first(where: { !$0.kind.isWarning }) {
            throw .brokenChain(path: path, problem: "\(p.kind.rawValue): \(p.message)")
        }
        var below: (any GuestLayer)?
        for info in chain.layers.reversed() {
            below = try layer(for: info, backing: below)
        }
        guard let top = below else { throw .unsupportedFormat(path: path, format: "none") }
        return GuestDisk(path: path, size: top.size, format: chain.layers[0].format, top: top)
    }

    static func layer(for info: ImageInfo, backing: (any GuestLayer)?) throws(Error) -> any GuestLayer {
        let file: ImageFile
        do { file = try ImageFile.open(info.filename) } catch { throw .io(error) }
        switch info.format {
        case .raw:
            return RawLayer(file: file, size: file.stat.kind == .blockDevice ? (info.virtualSize ?? 0) : ImageFormat.sectorsRoundedUp(file.stat.size))
        case .qcow2:
            guard let header = info.qcow2 else { throw .unsupportedFormat(path: info.filename, format: "qcow2") }
            if header.cryptMethod != 0 { throw .encrypted(path: info.filename) }
            var data = file
            if header.hasExternalDataFile {
                guard let name = header.dataFile else {
                    throw .corrupt(path: info.filename, field: "external data file", offset: 0, reason: "the incompatible bit is set but no name is recorded")
                }
                do { data = try ImageFile.open(BackingPath.resolve(name, relativeTo: info.filename)) } catch { throw .io(error) }
            }
            return QCow2Layer(file: file, data: data, header: header, backing: backing)
        default:
            return try otherLayer(for: info, file: file, backing: backing)
        }
    }

    /// Reads `count` bytes at `offset` of the guest's disk; zeros past its end.
    public func read(at offset: UInt64, count: Int) throws(Error) -> [UInt8] {
        guard count >= 0, count <= Self.maxRead else { throw .tooLarge(count: count) }
        var buffer = [UInt8](repeating: 0, count: count)
        let failure: Error? = buffer.withUnsafeMutableBytes { raw in
            do throws(Error) { try top.read(into: raw, at: offset); return nil } catch { return error }
        }
        if let failure { throw failure }
        return buffer
    }
}

/// One layer of the guest's disk.
protocol GuestLayer: AnyObject {
    var size: UInt64 { get }
    /// Fills `buffer` with the guest bytes at `offset`; zeros past this layer's end.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(GuestDisk.Error)
}

final class RawLayer: GuestLayer {
    let file: ImageFile
    let size: UInt64
    init(file: ImageFile, size: UInt64) { self.file = file; self.size = size }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(GuestDisk.Error) {
        guard offset < size else { zero(buffer); return }
        let n = Int(min(UInt64(buffer.count), size - offset))
        do { try file.readZeroFilled(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<n])) } catch { throw .io(error) }
        if n < buffer.count { zero(UnsafeMutableRawBufferPointer(rebasing: buffer[n...])) }
    }
}

func zero(_ buffer: UnsafeMutableRawBufferPointer) {
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
}
