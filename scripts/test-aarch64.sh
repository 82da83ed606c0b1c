#!/usr/bin/env bash
# Cross-builds libtern + tests/test_kernels for aarch64 with Debian's cross
# compiler and runs the kernel test under qemu-user twice: on a CPU model with
# the dotprod extension (`-cpu max`: the sdot path) and on one without
# (`-cpu cortex-a57`: the plain NEON path). test_kernels compares every
# implementation the CPU supports (here scalar and neon) bit for bit.
#
# Installs nothing. Needs: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
# (exits 0 with a "skipped" line when they are absent).
# Env: BUILD (default build-neon), CC_A64, QEMU, SYSROOT.
set -euo pipefail
cd "$(dirname "$0")/.."

CC_A64=${CC_A64:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
SYSROOT=${SYSROOT:-/usr/aarch64-linux-gnu}
BUILD=${BUILD:-build-neon}

if ! command -v "$CC_A64" >/dev/null 2>&1 || [[ ! -e $SYSROOT/lib/ld-linux-aarch64.so.1 ]]; then
    echo "test-aarch64: skipped: no cross compiler ($CC_A64 with $SYSROOT; apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)"
    exit 0
fi
if ! command -v "$QEMU" >/dev/null 2>&1; then
    echo "test-aarch64: skipped: no $QEMU (apt-get install qemu-user)"
    exit 0
fi

# TERN_PORTABLE: no -march=native (it would describe the build machine).
# OpenBLAS off and find paths rooted in the aarch64 sysroot, so nothing of the
# host's x86-64 libraries is picked up (MPI and libmicrohttpd off: FindMPI
# would take the host's mpicc, pkg-config the host's libmicrohttpd). OpenMP
# comes from the cross gcc.
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_C_COMPILER="$CC_A64" \
    -DCMAKE_FIND_ROOT_PATH="$SYSROOT" -DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER \
    -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY \
    -DTERN_PORTABLE=ON -DTERN_USE_OPENBLAS=OFF -DTERN_USE_MPI=OFF -DTERN_USE_MHD=OFF >/dev/null
cmake --build "$BUILD" --target test_kernels -j "$(nproc 2>/dev/null || echo 2)"

bin=$BUILD/tests/test_kernels
for cpu in max:dotprod cortex-a57:plain; do
    model=${cpu%%:*} want=${cpu##*:}
    echo "-- test_kernels on qemu-aarch64 -cpu $model (TERN_KERNEL=neon, expect the $want path)"
    log=$(TERN_KERNEL=neon OMP_WAIT_POLICY=passive "$QEMU" -L "$SYSROOT" -cpu "$model" "$bin" 2>&1) || {
        echo "$log" | tail -n 40
        echo "test-aarch64: FAILED on -cpu $model"
        exit 1
    }
    if ! grep -q "^neon kernel path: $want\$" <<<"$log" || ! grep -Eq '^neon: [1-9][0-9]* kernel cases compared$' <<<"$log"; then
        echo "$log" | tail -n 20
        echo "test-aarch64: FAILED on -cpu $model: NEON $want path not exercised"
        exit 1
    fi
    grep -E '^(cpu|neon kernel path|scalar|neon): |passed, ' <<<"$log"
done
echo "test-aarch64: passed"
