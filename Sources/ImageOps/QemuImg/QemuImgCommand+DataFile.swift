extension QemuImgCommand {
    /// A file handed to qemu-img by descriptor beside an image: a qcow2's external data file. QEMU resolves a relative
    /// data file name from the image's name, and a `/proc/self/fd/N` name has no folder: left to itself, qemu-img
    /// would open (and resize, or write) a file of that name in its working folder. Given as the qcow2 driver's
    /// `data-file` option (QEMU's BlockdevOptionsQcow2), the name recorded in the header is not opened at all.
    public struct HeldFile: Sendable, Equatable {
        /// `/proc/PID/fd/N`: the descriptor imgtool checked and holds.
        public var path: String
        /// True for a block device (QEMU's `host_device` driver).
        public var onDevice: Bool

        /// A held file.
        public init(path: String, onDevice: Bool) {
            self.path = path
            self.onDevice = onDevice
        }
    }

    /// The `,"data-file":{…}` member for a qcow2 object, or nothing.
    static func dataFileKey(_ file: HeldFile?) -> String {
        guard let file else { return "" }
        return #","data-file":{"driver":"\#(file.onDevice ? "host_device" : "file")","filename":\#(jsonString(file.path))}"#
    }

    /// The name qemu-img opens the held image by in a command that does not open its backing chain (`rebase -u`):
    /// `heldImage` itself, or a `json:` name around it giving its held data file.
    public static func heldImage(format: String, onDevice: Bool, dataFile: HeldFile?) -> String {
        guard let dataFile else { return heldImage }
        let file = #"{"driver":"\#(onDevice ? "host_device" : "file")","filename":"\#(heldImage)"}"#
        return #"json:{"driver":\#(jsonString(format)),"file":\#(file)"# + dataFileKey(dataFile) + "}"
    }
}
