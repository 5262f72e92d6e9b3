/// One image as read natively: what qemu-img info reports, from one open, one fstat and one pread.
public struct ImageInfo: Sendable, Equatable {
    /// The path as given (or as resolved from the layer above), as qemu-img prints it.
    public var filename: String
    /// The detected format.
    public var format: ImageFormat
    /// Virtual disk size, when the format's header gives it.
    public var virtualSize: UInt64?
    /// Bytes allocated on disk.
    public var actualSize: UInt64
    /// Device, inode, size and modification time.
    public var identity: FileIdentity
    /// The qcow2 header, for qcow2 images.
    public var qcow2: QCow2Header?
    /// What the probe found (VMDK descriptors keep their extents here).
    public var probe: ProbeResult
    /// For formats other than qcow2 and raw: what their header says beyond the magic.
    public var details: FormatDetails?
    /// For LUKS-encrypted qcow2 images: the LUKS header the crypto extension points at, when QEMU's checks pass.
    public var qcow2LUKS: LUKSHeader?
    /// For VMDK images: what qemu-img prints in `format-specific` (create type, IDs, extents).
    public var vmdk: VMDKSpecific?
    /// For qcow2 images: the internal snapshots, in table order (read only when the header counts any).
    public var snapshots: [QCow2Snapshot] = []

    /// qemu-img's `cluster-size`, for the formats that have one.
    public var clusterSize: UInt64? {
        if let h = qcow2 { return h.clusterSize }
        // A VMDK's is its extents' grain, when they agree (a descriptor's sparse extents have no header of its own).
        if let v = vmdk { return v.clusterSize }
        return details?.clusterSize
    }
    /// True when the guest's data is encrypted (qcow2 or qcow encryption, LUKS).
    public var isEncrypted: Bool { qcow2?.encryptionName != nil || details?.encrypted == true }

    /// The backing file name as recorded in the image.
    public var backingFilename: String? {
        guard let name = qcow2?.backingFile ?? details?.backingFile, !name.isEmpty else { return nil }
        return name
    }
    /// The backing format as recorded, nil when none is.
    public var backingFormat: String? { qcow2?.backingFormat ?? details?.backingFormat }
    /// Where QEMU will look for the backing file.
    public var fullBackingFilename: String? {
        backingFilename.map { BackingPath.resolve($0, relativeTo: filename) }
    }

    /// Why an image could not be read.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable {
        /// Opening or reading the file failed.
        case file(ImageFile.Error)
        /// The file has qcow2's magic but a header QEMU would refuse.
        case header(QCow2Header.Error)
        /// Another format's header that QEMU would refuse to open.
        case invalid(FormatError)
        /// A qcow2 snapshot table that QEMU would refuse to open.
        case snapshots(QCow2Snapshot.Error)
        /// A qcow2 bitmap directory or bitmap table that QEMU would refuse to open.
        case bitmaps(QCow2Bitmap.Error)

        public var description: String {
            switch self {
            case .file(let e): return e.description
            case .header(let e): return e.description
            case .invalid(let e): return e.description
            case .snapshots(let e): return e.description
            case .bitmaps(let e): return e.description
            }
        }
    }

    /// How the image is opened, as QEMU opens it for the job.
    public enum OpenMode: Sendable {
        /// As for I/O: a snapshot table QEMU cannot read refuses the image.
        case open
        /// As `qemu-img check` opens it (`BDRV_O_CHECK`): qcow2's internal snapshot table is not read at open, so a table
        /// QEMU cannot read (too much extra data, too big, unreadable) fails the check instead, with its own reason.
        case check
    }

    /// Reads one image: its format by magic and, for qcow2, the validated header.
    public static func read(_ path: String, mode: OpenMode = .open) throws(Error) -> ImageInfo {
        let file: ImageFile
        do { file = try ImageFile.open(path) } catch { throw .file(error) }
        return try read(file, mode: mode)
    }

    /// Reads one image from an open file.
    public static func read(_ file: ImageFile, mode: OpenMode = .open) throws(Error) -> ImageInfo {
        let prefix: [UInt8]
        do { prefix = try file.read(at: 0, count: QCow2Header.firstRead) } catch { throw .file(error) }
        var probe = ImageFormat.probe(prefix, fileSize: file.stat.size, filename: file.path)
        if probe.format == .vmdk { probe = ImageFormat.vmdkProbe(file, probe) }
        var info = ImageInfo(
            filename: file.path, format: probe.format, virtualSize: probe.virtualSize,
            actualSize: file.stat.allocated, identity: file.stat, qcow2: nil, probe: probe, details: nil, qcow2LUKS: nil, vmdk: nil)
        if probe.format != .qcow2, probe.format != .raw {
            let details = FormatDetails.read(probe.format, prefix: prefix, fileSize: file.stat.size) { offset, count in
                try? file.read(at: offset, count: count)
            }
            info.details = details
            if let size = details.virtualSize { info.virtualSize = size }
            do throws(FormatError) {
                if let size = try FormatCheck.validate(probe.format, file) { info.virtualSize = size }
            } catch {
                throw .invalid(error)
            }
            if probe.format == .vmdk, let v = VMDKSpecific.read(file, cids: details.vmdkCIDs) {
                info.vmdk = v
                // qemu-img's actual size counts the extent files too.
                let (sum, o) = info.actualSize.addingReportingOverflow(v.extentBytesOnDisk)
                info.actualSize = o ? UInt64.max : sum
            }
            // qemu-img reports a size for every image it opens; so does imgtool, or it refuses.
            if info.virtualSize == nil {
                throw .invalid(FormatError(path: file.path, format: probe.format, field: "size", reason: "the header gives no virtual size"))
            }
        }
        if probe.format == .qcow2 {
            var snapshotError: QCow2Snapshot.Error?
            var bitmapError: QCow2Bitmap.Error?
            do throws(QCow2Header.Error) {
                let header = try QCow2Header.parse(prefix, path: file.path, snapshotTable: mode == .open) { (offset, count) throws(QCow2Header.Error) in
                    do throws(ImageFile.Error) { return try file.read(at: offset, count: count) } catch { throw .io(error) }
                }
                info.qcow2 = header
                // qcow2_do_open keeps `size / 512` sectors: a header's odd size is cut to whole sectors.
                info.virtualSize = header.size & ~511
                // QEMU reads the snapshot table when it opens the image and refuses the image when the table fails.
                if header.snapshotCount > 0 {
                    do throws(QCow2Snapshot.Error) { info.snapshots = try header.readSnapshots(from: file).snapshots } catch {
                        // Opened for a check, QEMU reads no snapshot table (the check reads it, and fails instead).
                        if mode == .open { snapshotError = error }
                    }
                }
                // Then it loads the persistent bitmaps (`qcow2_load_dirty_bitmaps`) and refuses the image when the
                // directory or a table fails; only a bitmaps extension QEMU honours is read.
                if snapshotError == nil {
                    do throws(QCow2Bitmap.Error) { _ = try header.readBitmaps(from: file) } catch { bitmapError = error }
                }
                // QEMU reads the LUKS header only inside the extension's extent (`qcow2_crypto_hdr_read_func`).
                if header.encryptionName == "luks", let c = header.cryptoHeader, c.length >= UInt64(LUKSHeader.size),
                   let bytes = try? file.read(at: c.offset, count: LUKSHeader.size), case .success(let l) = LUKSHeader.parse(bytes) {
                    info.qcow2LUKS = l
                }
            } catch {
                throw .header(error)
            }
            if let snapshotError { throw .snapshots(snapshotError) }
            if let bitmapError { throw .bitmaps(bitmapError) }
        }
        return info
    }
}
