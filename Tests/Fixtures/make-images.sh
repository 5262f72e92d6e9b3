#!/usr/bin/env bash
# Makes the committed fixture images with the real qemu-img (and sfdisk). Run from anywhere; it writes into
# Tests/Fixtures/images beside this script. The images are tiny on purpose (small clusters, small disks).
set -euo pipefail
cd "$(dirname "$0")/images"
rm -f ./*.raw ./*.qcow2 ./*.cow
qemu-img create -q -f raw base.raw 1M
qemu-img create -q -f qcow2 -o cluster_size=512 -b base.raw -F raw overlay.cow
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=512 v2.qcow2 1M
qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on,compression_type=zstd,lazy_refcounts=on features.qcow2 1M
qemu-img create -q -f qcow2 -o cluster_size=512 -b overlay.cow -F qcow2 top.qcow2
qemu-img --version | head -1 > MADE-WITH
