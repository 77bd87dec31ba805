#!/bin/sh
# Build a copy of the package whose Cython twins and C kernels are compiled by clang
# with -fsanitize=address,fuzzer-no-link, so atheris gets coverage from (and ASan
# watches) the compiled code too. The copy lives in fuzz/work/native (not committed);
# the source tree's own extensions are left alone.
#
#   sh fuzz/build_native.sh
#   sh fuzz/run.sh native-diff 10      # uses it (LD_PRELOAD of atheris's ASan runtime)
set -e
cd "$(dirname "$0")/.."
OUT=fuzz/work/native
rm -rf "$OUT"
mkdir -p "$OUT"
tar cf - --exclude='*.so' --exclude='__pycache__' --exclude='mqttfast/codec/_*.c' \
    mqttfast csrc setup.py pyproject.toml MANIFEST.in README.md | tar xf - -C "$OUT"
cd "$OUT"
CC=clang CXX=clang++ LDSHARED="clang -shared" \
CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=address,fuzzer-no-link" \
LDFLAGS="-fsanitize=address,fuzzer-no-link" \
    python3 setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
ls mqttfast/codec/*.so
