import ImageOps
import QCow2

extension ImageInfo {
    /// The qemu-img `info --output=json` object for this image, with qemu-img's field names and meanings.
    public var json: JSON {
        var tree = JSONTree()
        members(into: &tree)
        return tree.object
    }

    /// The object's members, in qemu-img's order; absent facts are left out as qemu-img leaves them out. Written
    /// once for the tree and for `chain`'s direct bytes (see `JSONMembers`).
    func members<M: JSONMembers>(into m: inout M) {
        m.add("filename", string: filename)
        m.add("format", string: format.rawValue)
        if let virtualSize { m.add("virtual-size", uint: virtualSize) }
        m.add("actual-size", uint: actualSize)
        if let clusterSize { m.add("cluster-size", uint: clusterSize) }
        if isEncrypted { m.add("encrypted", bool: true) }
        // qemu-img prints the flag only for the formats whose driver answers bdrv_get_info.
        if format.reportsDirtyFlag { m.add("dirty-flag", bool: qcow2?.isDirty ?? false) }
        if let backingFilename {
            m.add("backing-filename", string: backingFilename)
            m.add("full-backing-filename", string: BackingPath.resolve(backingFilename, relativeTo: filename))
        }
        if let backingFormat { m.add("backing-filename-format", string: backingFormat) }
        if !snapshots.isEmpty { m.add("snapshots", .array(snapshots.map(\.json))) }
        if let h = qcow2 { m.add("snapshot-count", uint: UInt64(h.snapshotCount)) }
        if let h = qcow2 {
            m.addObject("format-specific") { f in
                f.add("type", string: "qcow2")
                f.addObject("data") { data in qcow2Members(h, into: &data) }
            }
        } else if let v = vmdk {
            m.add("format-specific", .object([("type", .string("vmdk")), ("data", v.json)]))
        } else if let l = details?.luks {
            m.add("format-specific", .object([("type", .string("luks")), ("data", l.json)]))
        }
    }

    /// qcow2's `format-specific` data (`ImageInfoSpecificQCow2`).
    private func qcow2Members<M: JSONMembers>(_ h: QCow2Header, into data: inout M) {
        data.add("compat", string: h.compat)
        data.add("compression-type", string: h.compressionName)
        if h.version >= 3 { data.add("lazy-refcounts", bool: h.lazyRefcounts) }
        data.add("refcount-bits", uint: h.refcountBits)
        if let df = h.dataFile { data.add("data-file", string: df) }
        if h.hasExternalDataFile { data.add("data-file-raw", bool: h.dataFileRaw) }
        if let enc = h.encryptionName {
            // `ImageInfoSpecificQCow2Encryption`: the format, then for LUKS the header's details.
            data.addObject("encrypt") { e in
                e.add("format", string: enc)
                if case .object(let luks)? = qcow2LUKS?.json { for (k, v) in luks { e.add(named: k, v) } }
            }
        }
        if let b = h.bitmaps { data.add("bitmap-count", uint: UInt64(b.count)) }
        if h.version >= 3 {
            data.add("corrupt", bool: h.isCorrupt)
            data.add("extended-l2", bool: h.hasExtendedL2)
        }
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
