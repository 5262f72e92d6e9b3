import QCow2

/// The records a scan keeps: one slim `Image`/`Node` per file found (100,000 of them are held at once, so their
/// layout is chosen for size), what holds the few held ones, and the bad links.
extension Scan {
    /// What the forest needs of one image.
    public struct Image: Sendable {
        // Field order keeps the record small (80 bytes; 88 in declaration order): 100,000 of them are held at once.
        /// The path, as found under the scanned folder (or as resolved from the image above it).
        public var filename: String
        /// Device and inode: the same file reached by two names is one image.
        package var key: FileKey
        /// The backing file name as recorded.
        public var backingFilename: String?
        /// The backing format as recorded.
        public var backingFormat: String?
        /// Virtual size, when the format gives it.
        public var virtualSize: UInt64?
        /// The detected format.
        public var format: ImageFormat

        init(filename: String, key: FileKey, format: ImageFormat) {
            self.filename = filename
            self.key = key
            self.format = format
        }

        init(_ info: ImageInfo) {
            filename = info.filename
            key = FileKey(info.identity)
            format = info.format
            virtualSize = info.virtualSize
            backingFilename = info.backingFilename
            backingFormat = info.backingFormat
        }

        /// Where QEMU will look for the backing file.
        public var fullBackingFilename: String? { backingFilename.map { BackingPath.resolve($0, relativeTo: filename) } }
    }

    /// One image found.
    public struct Node: Sendable {
        /// The image.
        public var image: Image
        /// Index of its backing image in `nodes` (-1: none), four bytes where an `Int?` takes eight.
        var parentIndex: Int32 = -1
        /// Index of its backing image in `nodes`, when the link resolves to one.
        public var parent: Int? {
            get { parentIndex < 0 ? nil : Int(parentIndex) }
            set { parentIndex = newValue.map { Int32(truncatingIfNeeded: $0) } ?? -1 }
        }

        init(image: Image) { self.image = image }
    }

    /// What holds an image: processes, and devices the kernel serves it on (loop devices and what is stacked on them).
    public struct Held: Sendable {
        /// Processes holding it.
        public var holders: [InUse.Holder]
        /// Devices the kernel serves it on.
        public var devices: [Readers.Device]
    }

    /// A broken link.
    public struct Problem: Sendable {
        /// Index of the image whose link is bad.
        public var node: Int
        /// Kind, as `chain` names them.
        public var kind: BackingChain.Kind
        /// The recorded backing name.
        public var backing: String
        /// Where it resolves.
        public var resolved: String
        /// In words.
        public var message: String
        /// Files under DIR that could be the lost backing file: same name first, then same format and size.
        public var candidates: [String]
    }
}
