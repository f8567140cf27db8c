#!/usr/bin/env bash
# Build fastmlp._C with AddressSanitizer + UndefinedBehaviorSanitizer and run the kernel
# and nn tests against it; any sanitizer report fails the run (non-zero exit).
#
#   tools/sanitize.sh [pytest arguments...]      (default: tests/kernels tests/nn)
#
# Runs from a clean checkout with what the test suite already needs (a C++ compiler with
# libasan/libubsan, CMake, Ninja, pybind11, numpy, pytest): nothing is installed. The
# build goes to build/sanitize (FASTMLP_CUDA=OFF), the package is assembled in a
# temporary folder (the sources plus the instrumented extension) and put first on
# PYTHONPATH, so an in-place development build is neither used nor touched. The
# interpreter is not instrumented, so the ASan runtime is preloaded (LD_PRELOAD).
# Leak checking is off: CPython keeps its interned objects until exit by design.
# See docs/reliability.md for the wall time this takes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FASTMLP_SANITIZE_BUILD:-$root/build/sanitize}"
python="${PYTHON:-python3}"
cxx="${CXX:-c++}"
start=$(date +%s)

flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-sanitize=vptr -fno-omit-frame-pointer"
# vptr is off: pybind11's types cross shared objects with hidden visibility, which its
# check cannot follow (false reports); every other check of -fsanitize=undefined is on.
# Only the kernel set this CPU runs is instrumented (FASTMLP_SANITIZE_SETS overrides it,
# e.g. "generic;avx2;avx512"): each set is the same sources compiled again, and one set
# keeps the build inside the CI's time.
if [ -z "${FASTMLP_SANITIZE_SETS:-}" ]; then
  if grep -qw avx512f /proc/cpuinfo 2>/dev/null && grep -qw avx512bw /proc/cpuinfo; then
    FASTMLP_SANITIZE_SETS=avx512
  elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
    FASTMLP_SANITIZE_SETS=avx2
  else
    FASTMLP_SANITIZE_SETS=generic
  fi
fi
cmake -S "$root" -B "$build" -G Ninja -DFASTMLP_CUDA=OFF -DFASTMLP_INPLACE=OFF \
  -DFASTMLP_KERNEL_SETS="$FASTMLP_SANITIZE_SETS" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
  -DPython_EXECUTABLE="$(command -v "$python")" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build"
built=$(date +%s)

ext=$(find "$build" -maxdepth 1 -name '_C*.so' | head -n 1)
if [ -z "$ext" ]; then
  echo "sanitize.sh: the build produced no _C extension in $build" >&2
  exit 1
fi

pkg=$(mktemp -d "${TMPDIR:-/tmp}/fastmlp-sanitize.XXXXXX")
trap 'rm -rf "$pkg"' EXIT
# The Python sources without any prebuilt extension, plus the instrumented one.
(cd "$root" && find fastmlp -name '*.py' -o -name '*.pyi' -o -name 'py.typed') | while read -r f; do
  mkdir -p "$pkg/$(dirname "$f")"
  cp "$root/$f" "$pkg/$f"
done
cp "$ext" "$pkg/fastmlp/"

asan="$("$cxx" -print-file-name=libasan.so)"
if [ ! -e "$asan" ]; then
  echo "sanitize.sh: $cxx has no libasan.so (install the compiler's sanitizer runtime)" >&2
  exit 1
fi
# libstdc++ is preloaded too: ASan finds the real __cxa_throw when it starts, and the
# interpreter, which is C, has not loaded libstdc++ by then.
preload="$asan $("$cxx" -print-file-name=libstdc++.so)"

if [ "$#" -eq 0 ]; then
  set -- tests/kernels tests/nn
fi
cd "$root"
# PYTHONSAFEPATH keeps the checkout itself (and any in-place extension in it) off sys.path.
# A halted run cannot show what pytest captured, so pytest captures at the Python level
# only (--capture=sys: a runtime's report on file descriptor 2 reaches the terminal), and
# ASan writes its reports to files as well, printed below.
logs="$pkg/reports"
mkdir -p "$logs"
run() {
  env LD_PRELOAD="$preload" \
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:allocator_may_return_null=1:log_path=$logs/asan" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan" \
    PYTHONMALLOC=malloc PYTHONSAFEPATH=1 PYTHONPATH="$pkg${PYTHONPATH:+:$PYTHONPATH}" "$python" "$@"
}
run -c "import sys, fastmlp._C as C; sys.exit(0 if C.__file__.startswith('$pkg') else
  'sanitize.sh: imported ' + C.__file__ + ', not the instrumented build (Python >= 3.11 needed)')"
status=0
run -m pytest -q -p no:cacheprovider -x --capture=sys ${FASTMLP_SANITIZE_PYTEST_ARGS:-} "$@" || status=$?
for report in "$logs"/*; do
  [ -e "$report" ] || continue
  echo "sanitize.sh: sanitizer report $(basename "$report"):" >&2
  cat "$report" >&2
  status=1
done
end=$(date +%s)
echo "sanitize.sh: build $((built - start)) s, tests $((end - built)) s, total $((end - start)) s (status $status)"
exit $status
