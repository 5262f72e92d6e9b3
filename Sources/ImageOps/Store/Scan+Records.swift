import QCow2

/// The records a scan keeps: one slim `Image`/`Node` per file found (100,000 of them are held at once, so their
/// layout is chosen for size), what holds the few held ones, and the bad links.
extension Scan {
    /// What the forest needs of one image.
    public struct Image: Sendable {
        // Field order keeps the record small (80 bytes, the brief in what was padding after `format`; the node adds
        // two 4-byte fields, 88): 100,000 of them are held at once.
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
        /// What printing needs beyond the fields above, for raw and plain qcow2 images (in the six bytes of
        /// padding after `format`; the allocated blocks sit in the node's).
        package var brief: ImageInfo.Brief = .none

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
            brief = ImageInfo.Brief(info)
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
        /// The allocated size in 512-byte blocks, when `image.brief` is kept (see `ImageInfo.Brief.blocks`).
        var blocks: UInt32 = 0
        /// Index of its backing image in `nodes`, when the link resolves to one.
        public var parent: Int? {
            get { parentIndex < 0 ? nil : Int(parentIndex) }
            set { parentIndex = newValue.map { Int32(truncatingIfNeeded: $0) } ?? -1 }
        }

        init(image: Image) { self.image = image }

        /// The node of an image just read, with what printing it needs.
        init(_ info: ImageInfo) {
            image = Image(info)
            if let b = ImageInfo.Brief.blocks(info) { blocks = b } else { image.brief = .none }
        }

        /// The image as a report prints it, from what the scan kept; nil when the scan kept too little.
        var printed: ImageInfo? {
            image.brief.info(filename: image.filename, device: image.key.device, inode: image.key.inode, blocks: blocks,
                             virtualSize: image.virtualSize, backingFilename: image.backingFilename, backingFormat: image.backingFormat)
        }
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
