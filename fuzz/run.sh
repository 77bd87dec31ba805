#!/bin/sh
# Run one fuzz target for N minutes:  sh fuzz/run.sh TARGET [MINUTES] [extra libFuzzer flags]
#
# TARGET:
#   codec-python  atheris, pure-Python codec twin against its contract (coverage-guided)
#   codec-cython  atheris, Cython twin against its contract, built by clang with ASan and
#                 libFuzzer coverage (fuzz/build_native.sh, run first automatically)
#   diff          atheris, Cython vs pure-Python twins must agree (coverage from the pure twin)
#   native-diff   diff, with the Cython twins and C kernels built by clang with ASan and
#                 libFuzzer coverage (fuzz/build_native.sh, run first automatically)
#   kernels       libFuzzer + ASan + UBSan on the C kernels in csrc/ (needs clang)
#
# The growing corpus is kept in fuzz/work/<target>/ (not committed), seeded from
# fuzz/corpus/. Crashing inputs land in fuzz/work/crash-*; copy them to fuzz/regressions/
# and tests/robustness/test_fuzz_regressions.py replays them.
set -e
cd "$(dirname "$0")/.."
TARGET=${1:?target: codec-python codec-cython diff native-diff kernels}
MINUTES=${2:-5}
[ $# -ge 2 ] && shift 2 || shift $#
SECONDS_=$(awk "BEGIN{print int($MINUTES*60)}")
WORK=fuzz/work
mkdir -p "$WORK/$TARGET"
[ -d fuzz/corpus/codec ] || python3 fuzz/make_corpus.py
COMMON="-max_total_time=$SECONDS_ -artifact_prefix=$WORK/ -print_final_stats=1"
case "$TARGET" in
  codec-python) exec python3 fuzz/fuzz_codec.py --twin python $COMMON -max_len=4096 "$@" \
                    "$WORK/$TARGET" fuzz/corpus/codec ;;
  codec-cython)
    [ -n "$(ls $WORK/native/mqttfast/codec/_codec*.so 2>/dev/null)" ] || sh fuzz/build_native.sh
    ATHERIS=$(python3 -c "import atheris; print(atheris.path())")
    MQTTFAST_FUZZ_ROOT="$PWD/$WORK/native" LD_PRELOAD="$ATHERIS/asan_with_fuzzer.so" \
    ASAN_OPTIONS=detect_leaks=0 \
        exec python3 fuzz/fuzz_codec.py --twin cython $COMMON -max_len=4096 "$@" \
            "$WORK/$TARGET" fuzz/corpus/codec ;;
  diff)         exec python3 fuzz/fuzz_differential.py $COMMON -max_len=4096 "$@" \
                    "$WORK/$TARGET" fuzz/corpus/codec ;;
  native-diff)
    [ -n "$(ls $WORK/native/mqttfast/codec/_codec*.so 2>/dev/null)" ] || sh fuzz/build_native.sh
    ATHERIS=$(python3 -c "import atheris; print(atheris.path())")
    MQTTFAST_FUZZ_ROOT="$PWD/$WORK/native" LD_PRELOAD="$ATHERIS/asan_with_fuzzer.so" \
    ASAN_OPTIONS=detect_leaks=0 \
        exec python3 fuzz/fuzz_differential.py $COMMON -max_len=4096 "$@" \
            "$WORK/$TARGET" fuzz/corpus/codec ;;
  kernels)
    clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc \
        fuzz/fuzz_kernels.c csrc/mqttfast_kernels.c -o "$WORK/fuzz_kernels"
    exec "$WORK/fuzz_kernels" $COMMON "$@" "$WORK/$TARGET" fuzz/corpus/kernels ;;
  *) echo "unknown target $TARGET" >&2; exit 2 ;;
esac
