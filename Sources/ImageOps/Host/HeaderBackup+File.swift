import QCow2
import SystemPackage

import Glibc

extension HeaderBackup {
    /// Format 4: the fingerprints skip runs of zeros (`MetadataFingerprint.Encoding.zeroRuns`). Format 3 saves are
    /// still read and undone, their fingerprints taken as they were. Version 4 may also hold a repair's regions.
    static let magic = "imgtool-undo 4"
    static let magic3 = "imgtool-undo 3"

    // Format: the magic line, then "key=value" lines, an empty line, and the backing name, the header before and the
    // header after as raw bytes whose lengths the head gives. Version 4 adds a repair's regions (`regions=N` in the
    // head; after the headers a table of N regions and the saved bytes of its data regions); version 3, the same
    // without them, is still read.
    func encoded() -> [UInt8] {
        let name = intent.backing.pathBytes
        let head = [
            encoding == .plain ? Self.magic3 : Self.magic, "path=\(path.replacingAll("\n", with: " "))", "device=\(device)", "inode=\(inode)",
            "backing-format=\(intent.backingFormat.replacingAll("\n", with: " "))", "size-before=\(sizeBefore)",
            "size-after=\(sizeAfter)", "meta-before=\(metaBefore)", "meta-after=\(metaAfter)",
            "refusal=\(refusal.replacingAll("\n", with: " "))",
            "backing=\(name.count)", "before=\(before.count)", "after=\(after.count)",
        ] + (repair.map { ["regions=\($0.regions.count)", "saved=\($0.bytes.count)", "repair=\(intent.repair ?? "all")",
                           "digest-before=\($0.digestBefore)", "digest-after=\($0.digestAfter)"] } ?? [])
        return Array((head.joined(separator: "\n") + "\n\n").utf8) + name + before + after + (repair.map { $0.table + $0.bytes } ?? [])
    }

    /// Parses a save file's bytes; `image` and `file` name it in errors; `bound` is the longest a header region may be.
    static func decode(_ bytes: [UInt8], image: String, file: String, bound: UInt64) throws(Error) -> HeaderBackup {
        func bad(_ field: String) -> Error { .badSave(path: image, saveFile: file, field: field) }
        guard let split = bytes.firstRange(of: [10, 10]) else { throw bad("head") }
        let head = String(decoding: bytes[..<split.lowerBound], as: UTF8.self).split(separator: "\n")
        // Saves of the earlier format hold no fingerprint of the metadata: undo cannot tell whether more than the
        // header changed, so it does not guess.
        if head.first == "imgtool-undo 2" { throw bad("version (written by an older imgtool, which did not record the metadata)") }
        let first = head.first.map(String.init)
        guard first == magic || first == magic3 else { throw bad("magic") }
        var fields: [String: String] = [:]
        for line in head.dropFirst() {
            if let eq = line.firstIndex(of: "=") { fields[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        func number(_ key: String) throws(Error) -> UInt64 {
            guard let v = fields[key].flatMap({ UInt64($0) }) else { throw bad(key) }
            return v
        }
        let body = Array(bytes[split.upperBound...])
        let nName = try number("backing"), nBefore = try number("before"), nAfter = try number("after")
        // A repair's regions follow the headers (version 4 only).
        let isRepair = fields["regions"] != nil && head.first.map(String.init) == magic
        let nRegions = isRepair ? try number("regions") : 0, nSaved = isRepair ? try number("saved") : 0
        guard nRegions <= UInt64(RepairSave.maxRegions), nSaved <= RepairSave.budget else { throw bad("regions") }
        // The regions are at most the image's header cluster (the caller bounded the file by it too), and the header
        // written is as long as the one saved: undo writes back exactly the region it checked.
        guard nName <= 4096, nBefore <= bound, nAfter <= bound, nAfter == 0 || nAfter == nBefore,
              UInt64(body.count) == nName + nBefore + nAfter + nRegions * 17 + nSaved else { throw bad("length") }
        func digest(_ key: String, empty: Bool) throws(Error) -> String {
            guard let v = fields[key], (empty && v.isEmpty) || (v.count == 64 && v.allSatisfy(\.isHexDigit)) else { throw bad(key) }
            return v
        }
        let a = Int(nName), b = Int(nName + nBefore), c = Int(nName + nBefore + nAfter), t = c + Int(nRegions) * 17
        var repair: RepairSave?
        if isRepair {
            let sizeBefore = try number("size-before")
            guard let r = RepairSave.decode(table: body[c..<t], bytes: body[t...], count: Int(nRegions), sizeBefore: sizeBefore,
                                            digestBefore: try digest("digest-before", empty: false),
                                            digestAfter: try digest("digest-after", empty: nAfter == 0)) else { throw bad("regions") }
            repair = r
        }
        return HeaderBackup(
            path: fields["path"] ?? image, device: try number("device"), inode: try number("inode"),
            intent: Intent(backing: String(pathBytes: body[..<a]), backingFormat: fields["backing-format"] ?? "", repair: isRepair ? fields["repair"] ?? "all" : nil),
            before: Array(body[a..<b]), sizeBefore: try number("size-before"),
            after: Array(body[b..<c]), sizeAfter: try number("size-after"),
            metaBefore: try digest("meta-before", empty: false), metaAfter: try digest("meta-after", empty: nAfter == 0),
            refusal: fields["refusal"] ?? "", encoding: first == magic3 ? .plain : .zeroRuns, repair: repair)
    }
}
