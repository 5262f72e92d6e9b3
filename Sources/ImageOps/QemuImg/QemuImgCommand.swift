/// One qemu-img invocation as a typed value: it builds its argv and nothing else, so the argv is unit-tested without
/// running anything. Every command that writes a backing link passes the backing format (`-F`), which qemu-img 6.1+
/// requires and which keeps QEMU from guessing.
public enum QemuImgCommand: Sendable, Equatable {
    /// `qemu-img create -f FORMAT [-u] [-b BACKING -F BACKINGFORMAT] IMAGE [SIZE]`. With both a backing file and a
    /// size, `-u`: qemu-img does not open the backing file (imgtool checked it, and a relative name cannot be
    /// resolved from the `/proc/self/fd` name the new image is written through).
    case create(image: String, format: String, size: UInt64?, backing: String?, backingFormat: String?)
    /// `qemu-img rebase -f FORMAT [-u] [-p] -b BACKING [-F BACKINGFORMAT] IMAGE`; an empty backing flattens.
    /// FORMAT is qcow2 or QED (the formats whose link qemu-img can rewrite).
    case rebase(image: String, format: String = "qcow2", backing: String, backingFormat: String?, unsafe: Bool, progress: Bool)
    /// `qemu-img resize -f FORMAT [--shrink] IMAGE SIZE`.
    case resize(image: String, format: String, size: UInt64, shrink: Bool)
    /// `qemu-img commit -f FORMAT [-p] [-b BASE] IMAGE`: IMAGE's data (and the layers' between) written into BASE.
    case commit(image: String, format: String, base: String?, progress: Bool)
    /// `qemu-img check -f FORMAT -r leaks|all --output=json IMAGE`: a repair. Its exit 2 (corruptions remain) and 3
    /// (leaks remain) are answers, not failures: `acceptedStatuses`.
    case check(image: String, format: String, repair: String)

    /// The arguments after `qemu-img`.
    public var arguments: [String] {
        switch self {
        case .create(let image, let format, let size, let backing, let backingFormat):
            var a = ["create", "-q", "-f", format]
            if let backing {
                if size != nil { a.append("-u") }
                a += ["-b", backing]
                if let backingFormat { a += ["-F", backingFormat] }
            }
            a.append(image)
            if let size { a.append(String(size)) }
            return a
        case .rebase(let image, let format, let backing, let backingFormat, let unsafe, let progress):
            var a = ["rebase", "-f", format]
            if unsafe { a.append("-u") }
            if progress { a.append("-p") }
            a += ["-b", backing]
            if let backingFormat, !backing.isEmpty { a += ["-F", backingFormat] }
            a.append(image)
            return a
        case .resize(let image, let format, let size, let shrink):
            var a = ["resize", "-q", "-f", format]
            if shrink { a.append("--shrink") }
            a += [image, String(size)]
            return a
        case .commit(let image, let format, let base, let progress):
            var a = ["commit", "-f", format]
            a.append(progress ? "-p" : "-q")
            if let base { a += ["-b", base] }
            a.append(image)
            return a
        case .check(let image, let format, let repair):
            return ["check", "-f", format, "-r", repair, "--output=json", image]
        }
    }

    /// The exit statuses that mean qemu-img did its work (0 for every command; `check` also 2 and 3: it ran and
    /// found problems that remain).
    public var acceptedStatuses: [Int32] {
        if case .check = self { return [0, 2, 3] }
        return [0]
    }

    /// The image this command writes.
    public var target: String {
        switch self {
        case .create(let image, _, _, _, _), .rebase(let image, _, _, _, _, _), .resize(let image, _, _, _), .commit(let image, _, _, _),
             .check(let image, _, _): image
        }
    }

    /// The exact command line, shell-quoted, as a dry run prints it.
    public func commandLine(qemuImg: String) -> String {
        Shell.join([qemuImg] + arguments)
    }

    /// The name qemu-img opens the held image by. imgtool hands qemu-img the descriptor it checked as its standard
    /// input; opening `/proc/self/fd/0` reopens that very file (device and inode), whatever its path names by then.
    public static let heldImage = "/proc/self/fd/0"

    /// A `json:` name for the held qcow2 image with its backing file given explicitly (nil: none opened), for the
    /// commands that open the backing chain: QEMU would resolve a relative backing name from `/proc/self/fd`.
    /// A file on a block device needs QEMU's `host_device` protocol driver (`file` takes regular files only).
    public static func heldQCow2(backing: (format: String, path: String)?, onDevice: Bool = false, backingOnDevice: Bool = false,
                                 dataFile: HeldFile? = nil) -> String {
        func driver(_ device: Bool) -> String { device ? "host_device" : "file" }
        let file = #"{"driver":"\#(driver(onDevice))","filename":"\#(heldImage)"}"#
        let back = backing.map {
            #"{"driver":\#(jsonString($0.format)),"file":{"driver":"\#(driver(backingOnDevice))","filename":\#(jsonString($0.path))}}"#
        } ?? "null"
        return #"json:{"driver":"qcow2","file":\#(file)"# + dataFileKey(dataFile) + #","backing":\#(back)}"#
    }

    /// One layer of a chain handed to qemu-img by descriptor: its format, and the `/proc/…/fd/N` name that reopens
    /// the very file imgtool holds (device and inode), whatever its path names by then.
    public struct HeldLayer: Sendable, Equatable {
        /// The format QEMU opens it with (given, so nothing is probed).
        public var format: String
        /// `/proc/self/fd/0` for the image on qemu-img's standard input, `/proc/PID/fd/N` for imgtool's other held layers.
        public var path: String
        /// True for a block device (QEMU's `host_device` driver; `file` takes regular files only).
        public var onDevice: Bool
        /// The layer's external data file, held too (nil: it has none).
        public var dataFile: HeldFile?

        /// A layer.
        public init(format: String, path: String, onDevice: Bool, dataFile: HeldFile? = nil) {
            self.format = format
            self.path = path
            self.onDevice = onDevice
            self.dataFile = dataFile
        }
    }

    /// A `json:` name for a whole chain, top first, every layer and every backing link given explicitly: qemu-img then
    /// opens no file by a name it reads from a header (a name someone can rename over between imgtool's checks and
    /// qemu-img). The last layer gets no `backing` key: it records none (raw takes no such option).
    public static func heldChain(_ layers: ArraySlice<HeldLayer>) -> String {
        "json:" + chainObject(layers)
    }

    static func chainObject(_ layers: ArraySlice<HeldLayer>) -> String {
        guard let top = layers.first else { return "null" }
        let file = #"{"driver":"\#(top.onDevice ? "host_device" : "file")","filename":\#(jsonString(top.path))}"#
        let below = layers.dropFirst()
        return #"{"driver":\#(jsonString(top.format)),"file":\#(file)"# + dataFileKey(top.dataFile) + (below.isEmpty ? "" : #","backing":"# + chainObject(below)) + "}"
    }

    /// `s` as a JSON string literal.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
