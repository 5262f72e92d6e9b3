extension ImageFile {
    /// The file's length as QEMU's drivers see it (`bdrv_getlength`): whole 512-byte sectors, rounded up. A file of
    /// 49,112 bytes is 49,152 long to every driver's checks (and reads zeros in between).
    var qemuLength: UInt64 {
        let (end, o) = stat.size.addingReportingOverflow(511)
        return o ? stat.size / 512 * 512 : end / 512 * 512
    }
}
