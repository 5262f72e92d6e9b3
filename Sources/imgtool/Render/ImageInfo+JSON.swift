import ImageOps
import QCow2

extension ImageInfo {
    /// The qemu-img `info --output=json` object for this image, with qemu-img's field names and meanings.
    public var json: JSON {
        var formatSpecific: JSON?
        if let h = qcow2 {
            var data: [(String, JSON?)] = [
                ("compat", .string(h.compat)),
                ("compression-type", .string(h.compressionName)),
            ]
            if h.version >= 3 { data.append(("lazy-refcounts", .bool(h.lazyRefcounts))) }
            data.append(("refcount-bits", .uint(h.refcountBits)))
            if let df = h.dataFile { data.append(("data-file", .string(df))) }
            if h.hasExternalDataFile { data.append(("data-file-raw", .bool(h.dataFileRaw))) }
            if let enc = h.encryptionName {
                // `ImageInfoSpecificQCow2Encryption`: the format, then for LUKS the header's details.
                var members: [(String, JSON?)] = [("format", .string(enc))]
                if case .object(let luks)? = qcow2LUKS?.json { members += luks.map { ($0.0, Optional($0.1)) } }
                data.append(("encrypt", .object(members)))
            }
            if let b = h.bitmaps { data.append(("bitmap-count", .uint(UInt64(b.count)))) }
            if h.version >= 3 {
                data.append(("corrupt", .bool(h.isCorrupt)))
                data.append(("extended-l2", .bool(h.hasExtendedL2)))
            }
            formatSpecific = .object([("type", .string("qcow2")), ("data", .object(data))])
        } else if let v = vmdk {
            formatSpecific = .object([("type", .string("vmdk")), ("data", v.json)])
        } else if let l = details?.luks {
            formatSpecific = .object([("type", .string("luks")), ("data", l.json)])
        }
        return .object([
            ("filename", .string(filename)),
            ("format", .string(format.rawValue)),
            ("virtual-size", virtualSize.map(JSON.uint)),
            ("actual-size", .uint(actualSize)),
            ("cluster-size", clusterSize.map(JSON.uint)),
            ("encrypted", isEncrypted ? .bool(true) : nil),
            // qemu-img prints the flag only for the formats whose driver answers bdrv_get_info.
            ("dirty-flag", format.reportsDirtyFlag ? .bool(qcow2?.isDirty ?? false) : nil),
            ("backing-filename", backingFilename.map(JSON.string)),
            ("full-backing-filename", fullBackingFilename.map(JSON.string)),
            ("backing-filename-format", backingFormat.map(JSON.string)),
            ("snapshots", snapshots.isEmpty ? nil : .array(snapshots.map(\.json))),
            ("snapshot-count", qcow2.map { .uint(UInt64($0.snapshotCount)) }),
            ("format-specific", formatSpecific),
        ])
    }
}

extension QCow2Snapshot {
    /// qemu-img's `SnapshotInfo`: its 64-bit fields are signed in the schema, so a value past 2^63 prints as
    /// qemu-img prints it; `icount` only when the entry records one.
    var json: JSON {
        .object([
            ("id", .string(id)),
            ("name", .string(name)),
            ("vm-state-size", .int(Int64(bitPattern: vmStateSize))),
            ("date-sec", .int(Int64(dateSeconds))),
            ("date-nsec", .int(Int64(dateNanoseconds))),
            ("vm-clock-sec", .int(Int64(vmClockNanoseconds / 1_000_000_000))),
            ("vm-clock-nsec", .int(Int64(vmClockNanoseconds % 1_000_000_000))),
            ("icount", icount.map { .int(Int64(bitPattern: $0)) }),
        ])
    }
}

extension VMDKSpecific {
    /// `ImageInfoSpecificVmdk`, its members in the schema's order; each extent is an `ImageInfo` with only the
    /// members QEMU fills (cluster-size for sparse extents, compressed only when true).
    var json: JSON {
        .object([
            ("create-type", .string(createType)),
            ("cid", .uint(UInt64(cids.cid))),
            ("parent-cid", .uint(UInt64(cids.parentCID))),
            ("extents", .array(extents.map { e in
                .object([
                    ("filename", .string(e.filename)),
                    ("format", .string(e.format)),
                    ("virtual-size", .uint(e.virtualSize)),
                    ("cluster-size", e.clusterSize.map(JSON.uint)),
                    ("compressed", e.compressed ? .bool(true) : nil),
                ])
            })),
        ])
    }
}

extension LUKSHeader {
    /// `QCryptoBlockInfoLUKS`, its members in the schema's order; iters and stripes only for active slots.
    var json: JSON {
        .object([
            ("cipher-alg", .string(cipherAlg)),
            ("cipher-mode", .string(cipherMode)),
            ("ivgen-alg", .string(ivgenAlg)),
            ("ivgen-hash-alg", ivgenHashAlg.map(JSON.string)),
            ("hash-alg", .string(hashAlg)),
            ("payload-offset", .uint(payloadOffset)),
            ("master-key-iters", .uint(UInt64(masterKeyIters))),
            ("uuid", .string(uuid)),
            ("slots", .array(slots.map { s in
                .object([
                    ("active", .bool(s.active)),
                    ("iters", s.active ? .uint(UInt64(s.iterations)) : nil),
                    ("stripes", s.active ? .uint(UInt64(s.stripes)) : nil),
                    ("key-offset", .uint(s.keyOffset)),
                ])
            })),
        ])
    }
}
