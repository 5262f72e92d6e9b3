extension ImageChecker {
    /// qcow2, as QEMU 7.2's `qcow2_co_check` / `qcow2_check_refcounts` count. (Being built: issue 22.)
    static func checkQCow2(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        throw .unsupported(path: info.filename, format: info.format)
    }
}
