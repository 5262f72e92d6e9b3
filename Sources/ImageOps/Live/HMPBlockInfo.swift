import QCow2

/// What `info block -v` and `info block -n` print (QEMU 7.2, block/monitor/block-hmp-cmds.c `print_block_info` and
/// block/qapi.c `bdrv_image_info_dump`), read strictly: a line that fits none of the forms is an error naming it.
struct HMPBlockInfo: Equatable {
    /// One `info block` entry: a BlockBackend (`d0 (#block117): vm.cow (qcow2)`) or a node (`#block117: vm.cow (qcow2)`).
    struct Entry: Equatable {
        /// The drive's name; empty for a node, or for a backend with no name (`-blockdev` disks).
        var device: String
        /// The node inserted (or listed); nil for an empty drive.
        var nodeName: String?
        var file: String
        var driver: String
        var readOnly: Bool
        /// `Attached to:` (the guest device's QOM path).
        var qdev: String?
        /// The chain below the node, top first, from `Images:` (verbose only).
        var images: [Image] = []
        /// `Backing file: NAME (chain depth: N)`: how many layers lie below the node (nil: no such line).
        var depth: Int?
    }

    /// One `image:` block of the verbose listing.
    struct Image: Equatable {
        var filename: String
        var format: String
        var virtualSize: UInt64?
        var backingFilename: String?
        var backingFormat: String?
    }

    var entries: [Entry]

    /// Why a listing could not be read: the line, escaped by the caller.
    struct Unexpected: Swift.Error { let line: String }

    private static let propertyKeys = ["Attached to:", "I/O status:", "Removable device:", "Cache mode:", "Backing file:",
                                       "Detect zeroes:", "I/O throttling:"]

    /// Parses the lines of `info block [-v] [-n]`.
    static func parse(_ lines: [String], verbose: Bool) throws(Unexpected) -> HMPBlockInfo {
        enum State { case header, properties, images, snapshots, formatSpecific }
        var entries: [Entry] = []
        var state = State.header
        var i = 0
        while i < lines.count {
            let line = lines[i]
            i += 1
            switch state {
            case .header:
                if line.isEmpty && !entries.isEmpty { continue }
                entries.append(try header(line))
                state = .properties
            case .properties:
                if line.isEmpty {
                    // Verbose listings go on with "Images:"; otherwise a blank line parts two entries.
                    if verbose, i < lines.count, lines[i] == "Images:" { i += 1; state = .images } else { state = .header }
                    continue
                }
                guard line.hasPrefix("    "), let key = propertyKeys.first(where: { line.dropFirst(4).hasPrefix($0) }) else { throw Unexpected(line: line) }
                let value = String(line.dropFirst(4 + key.count).drop { $0 == " " })
                if key == "Attached to:" { entries[entries.count - 1].qdev = value }
                if key == "Backing file:" {
                    // The depth is a number QEMU counts, not a name: it bounds the chain a name could lengthen.
                    guard entries[entries.count - 1].depth == nil, value.hasSuffix(")"), let r = value.lastRange(of: " (chain depth: "),
                          let n = Int(value[r.upperBound...].dropLast()), n >= 0 else { throw Unexpected(line: line) }
                    entries[entries.count - 1].depth = n
                }
            case .images, .snapshots, .formatSpecific:
                if line.isEmpty {
                    // Inside a snapshot table QEMU prints no blank line; outside, a blank line ends the entry.
                    state = .header
                    continue
                }
                if state == .formatSpecific && line.hasPrefix(" ") { continue }
                if let v = value(line, "image: ") {
                    entries[entries.count - 1].images.append(Image(filename: v, format: ""))
                    state = .images
                    continue
                }
                if line == "Format specific information:" { state = .formatSpecific; continue }
                if line == "Snapshot list:" { state = .snapshots; continue }
                if state == .snapshots { continue }
                guard state == .images, !entries[entries.count - 1].images.isEmpty else { throw Unexpected(line: line) }
                var image = entries[entries.count - 1].images.removeLast()
                if let v = value(line, "file format: ") { image.format = v }
                else if let v = value(line, "virtual size: ") {
                    // "4 MiB (4194304 bytes)"
                    guard let open = v.lastIndex(of: "("), v.hasSuffix(" bytes)"),
                          let n = UInt64(v[v.index(after: open)...].dropLast(7)) else { throw Unexpected(line: line) }
                    image.virtualSize = n
                }
                else if value(line, "disk size: ") != nil || value(line, "cluster_size: ") != nil || line == "encrypted: yes" || line == "cleanly shut down: no" {}
                else if let v = value(line, "backing file format: ") { image.backingFormat = v }
                else if let v = value(line, "backing file: ") {
                    // "NAME", "NAME (actual path: PATH)" or "NAME (cannot determine actual path)": the recorded name.
                    var name = v
                    if name.hasSuffix(" (cannot determine actual path)") { name = String(name.dropLast(31)) }
                    else if name.hasSuffix(")"), let r = name.lastRange(of: " (actual path: ") { name = String(name[..<r.lowerBound]) }
                    image.backingFilename = name
                } else { throw Unexpected(line: line) }
                entries[entries.count - 1].images.append(image)
            }
        }
        // One entry a drive and a node: a second one of a name is a line that is not QEMU's (a name printed raw).
        var seen: Set<String> = []
        for e in entries {
            // QEMU prints as many images as the chain is deep (block/qapi.c counts both in one loop); an internal
            // snapshot's or a bitmap's name, printed raw among them, could add an `image:` line of its own choosing.
            if verbose, e.nodeName != nil, !e.images.isEmpty, e.images.count != (e.depth ?? 0) + 1 {
                throw Unexpected(line: "\(e.images.count) images listed for \(e.device.isEmpty ? e.nodeName ?? "" : e.device), whose chain depth is \(e.depth ?? 0)")
            }
            for name in [e.device.isEmpty ? nil : "drive " + e.device, e.nodeName.map { "node " + $0 }].compactMap({ $0 }) {
                guard seen.insert(name).inserted else { throw Unexpected(line: "a second \(name)") }
            }
        }
        return HMPBlockInfo(entries: entries)
    }

    private static func value(_ line: String, _ key: String) -> String? {
        line.hasPrefix(key) ? String(line.dropFirst(key.count)) : nil
    }

    /// `NAME (NODE): FILE (DRIVER[, read-only][, encrypted][, inactive])`, `NAME: FILE (…)`, or `NAME: [not inserted]`.
    static func header(_ line: String) throws(Unexpected) -> Entry {
        guard let colon = line.firstRange(of: ": ") else { throw Unexpected(line: line) }
        let name = String(line[..<colon.lowerBound])
        let rest = String(line[colon.upperBound...])
        var device = "", node: String? = nil
        if name.hasSuffix(")"), let open = name.firstRange(of: " (") {
            device = String(name[..<open.lowerBound])
            node = String(name[open.upperBound...].dropLast())
        } else {
            // No node in parentheses: a node listing (`-n`), or a nameless backend: the name is the node's.
            node = name
        }
        guard !name.contains(" ") || node != name, !(device.isEmpty && node?.isEmpty != false) else { throw Unexpected(line: line) }
        if rest == "[not inserted]" { return Entry(device: device.isEmpty ? name : device, nodeName: nil, file: "", driver: "", readOnly: false) }
        guard rest.hasSuffix(")"), let open = rest.lastRange(of: " (") else { throw Unexpected(line: line) }
        let file = String(rest[..<open.lowerBound])
        let flags = rest[open.upperBound...].dropLast().components(separatedBy: ", ")
        guard let driver = flags.first, !driver.isEmpty, !driver.contains(" ") else { throw Unexpected(line: line) }
        var readOnly = false
        for f in flags.dropFirst() {
            switch f {
            case "read-only": readOnly = true
            case "encrypted", "inactive": break
            default: throw Unexpected(line: line)
            }
        }
        return Entry(device: device, nodeName: node, file: file, driver: driver, readOnly: readOnly)
    }

    /// `info block-jobs`: `No active jobs`, or one line a job:
    /// `Streaming device D: Completed N of M bytes, speed limit S bytes/s` / `Type T, device D: Completed …`.
    static func jobs(_ lines: [String]) throws(Unexpected) -> [LiveJob] {
        if lines == ["No active jobs"] { return [] }
        guard !lines.isEmpty else { throw Unexpected(line: "(nothing)") }
        var jobs: [LiveJob] = []
        for line in lines {
            let type: String, rest: Substring
            if line.hasPrefix("Streaming device ") {
                type = "stream"
                rest = line.dropFirst(17)
            } else if line.hasPrefix("Type "), let comma = line.firstRange(of: ", device ") {
                type = String(line[line.index(line.startIndex, offsetBy: 5)..<comma.lowerBound])
                // QEMU's job types are words (JobType: commit, stream, mirror, backup, create, amend, snapshot-*).
                guard !type.isEmpty, type.utf8.allSatisfy({ (0x61...0x7A).contains($0) || $0 == 0x2D }) else { throw Unexpected(line: line) }
                rest = line[comma.upperBound...]
            } else { throw Unexpected(line: line) }
            guard let done = rest.lastRange(of: ": Completed ") else { throw Unexpected(line: line) }
            let device = String(rest[..<done.lowerBound])
            let words = rest[done.upperBound...].split(separator: " ")
            // "N of M bytes, speed limit S bytes/s"
            guard words.count == 8, words[1] == "of", words[3] == "bytes,", words[4] == "speed", words[5] == "limit", words[7] == "bytes/s",
                  let offset = UInt64(words[0]), let len = UInt64(words[2]), UInt64(words[6]) != nil else { throw Unexpected(line: line) }
            jobs.append(LiveJob(id: device, type: type, offset: offset, length: len, ready: false, status: "running"))
        }
        return jobs
    }
}

extension StringProtocol {
    /// The range of the last occurrence of `needle` (Foundation's `.backwards` search, which ImageOps does not link).
    func lastRange(of needle: String) -> Range<Index>? {
        var found: Range<Index>?
        var from = startIndex
        while from < endIndex, let r = self[from...].firstRange(of: needle) {
            found = r
            from = index(after: r.lowerBound)
        }
        return found
    }
}
