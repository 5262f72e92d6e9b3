/// # ImageOps: changing images, and what the host knows about them
///
/// The half of imgtool that acts. `Plans` turn a request (`fix-backing`, `overlay`, `create`, `resize`, `rebase`,
/// `undo`, `mbr-wrap`) into checked steps; `QemuImg` runs them as typed qemu-img command lines; `Host` holds what
/// the machine says about an image (who holds it and QEMU's locks, paths, the saved headers `undo` puts back);
/// `Store` scans a folder of images; `Reports` are the models the CLI renders; `Live` talks to a running QEMU.
///
/// It reads through `QCow2` and writes only through qemu-img or the QEMU that holds the image (the exceptions:
/// `undo` puts back bytes it saved, `mbr-wrap` writes a new file of its own). It never prints and never reads argv:
/// it returns values and typed errors, and the CLI decides how to show them.
