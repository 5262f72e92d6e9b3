#!/usr/bin/env bash
# Makes the committed fixture images with the real qemu-img (and sfdisk). Run from anywhere; it writes into
# Tests/Fixtures/images beside this script. The images are tiny on purpose (small clusters, small disks).
set -euo pipefail
cd "$(dirname "$0")/images"
rm -f base.raw mbr.raw gpt.raw ./*.qcow2 ./*.cow
qemu-img create -q -f raw base.raw 1M
qemu-img create -q -f qcow2 -o cluster_size=512 -b base.raw -F raw overlay.cow
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=512 v2.qcow2 1M
qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on,compression_type=zstd,lazy_refcounts=on features.qcow2 1M
qemu-img create -q -f qcow2 -o cluster_size=512 -b overlay.cow -F qcow2 top.qcow2
qemu-img --version | head -1 > MADE-WITH
# Partition tables made by sfdisk, tiny disks (seeds for the partition fuzz target too).
qemu-img create -q -f raw mbr.raw 1M
printf 'label: dos\nstart=63, size=500, type=83, bootable\nstart=600, size=1400, type=5\nstart=700, size=300, type=83\nstart=1100, size=800, type=82\n' | sfdisk -q mbr.raw
qemu-img create -q -f raw gpt.raw 1M
printf 'label: gpt\nstart=40, size=1000, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"\n' | sfdisk -q gpt.raw
# GPT on 4096-byte sectors: Debian's sfdisk has no --sector-size, so the table is written through a loop device
# with 4 KiB logical blocks (root and the loop module needed), and sfdisk's own reading of that device is kept
# beside it as the reference (gpt4k.sfdisk.json). Skipped, keeping the committed pair, where loop devices are absent.
make_gpt4k() {
  rm -f gpt4k.raw gpt4k.sfdisk.json
  qemu-img create -q -f raw gpt4k.raw 1M
  local dev
  dev=$(losetup -f --show --sector-size 4096 gpt4k.raw) || return 1
  printf 'label: gpt\nstart=8, size=64, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI"\nstart=80, size=160, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"\n' \
    | sfdisk -q --no-reread "$dev" || { losetup -d "$dev"; return 1; }
  sfdisk -J "$dev" > gpt4k.sfdisk.json
  losetup -d "$dev"
}
if [ "${1:-}" = gpt4k ] || [ ! -e gpt4k.raw ]; then make_gpt4k || echo "no loop device with 4 KiB sectors here: gpt4k.raw kept as committed" >&2; fi
