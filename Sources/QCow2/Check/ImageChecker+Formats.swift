extension ImageChecker {
    /// QED, as QEMU 7.2's `bdrv_qed_co_check` (block/qed-check.c). (Being built: issue 22.)
    static func checkQED(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        throw .unsupported(path: info.filename, format: info.format)
    }

    /// VDI, as QEMU 7.2's `vdi_co_check`. (Being built: issue 22.)
    static func checkVDI(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        throw .unsupported(path: info.filename, format: info.format)
    }

    /// VHDX, as QEMU 7.2's `vhdx_co_check`. (Being built: issue 22.)
    static func checkVHDX(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        throw .unsupported(path: info.filename, format: info.format)
    }

    /// Parallels, as QEMU 7.2's `parallels_co_check`. (Being built: issue 22.)
    static func checkParallels(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        throw .unsupported(path: info.filename, format: info.format)
    }

    /// VMDK, as QEMU 7.2's `vmdk_co_check`. (Being built: issue 22.)
    static func checkVMDK(_ file: ImageFile, info: ImageInfo) throws(ImageCheck.Error) -> ImageCheck {
        throw .unsupported(path: info.filename, format: info.format)
    }
}
