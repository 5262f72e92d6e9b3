extension ImageChecker {
    /// Checks one image (not its backing chain) as `qemu-img check` would, by the format `info` detected.
    /// Formats QEMU 7.2 has no `bdrv_co_check` for are refused with `.unsupported`, as qemu-img refuses them.
    public static func check(_ info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        let file: ImageFile
        do { file = try ImageFile.open(info.filename) } catch { throw .read(path: info.filename, reason: "\(error)") }
        switch info.format {
        case .qcow2: return try checkQCow2(file, info: info)
        case .qed: return try checkQED(file, info: info)
        case .vdi: return try checkVDI(file, info: info)
        case .vhdx: return try checkVHDX(file, info: info)
        case .parallels: return try checkParallels(file, info: info)
        case .vmdk: return try checkVMDK(file, info: info)
        default: throw .unsupported(path: info.filename, format: info.format)
        }
    }
}
