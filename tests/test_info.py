"""The package imports, reports what it runs on, and honours FASTMLP_FORCE_ISA."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

import fastmlp
from fastmlp import _C


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter, outside the source tree (so the installed package is imported)."""
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120,
                          cwd=tempfile.gettempdir())


def test_info_cli_reports_version_isa_threads_cuda():
    out = subprocess.run([sys.executable, "-m", "fastmlp", "info"], capture_output=True, text=True, timeout=120,
                         cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr
    assert f"fastmlp {fastmlp.__version__}" in out.stdout
    assert f"CPU kernels: {_C.isa()}" in out.stdout
    assert "OpenMP threads:" in out.stdout
    assert f"bfloat16 GEMM: {_C.bf16_path()}" in out.stdout
    if not _C.cpu_has_avx512bf16():
        assert "this CPU has no AVX512-BF16" in out.stdout
    assert "CUDA:" in out.stdout


def test_best_isa_is_chosen_by_default():
    assert _C.isa() == _C.available_isas()[-1]
    assert _C.available_isas()[0] == "reference"


@pytest.mark.parametrize("isa", [i for i in _C.available_isas()])
def test_force_isa_env(isa):
    out = run_python("from fastmlp import _C; print(_C.isa())", FASTMLP_FORCE_ISA=isa)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == isa


def test_force_isa_unknown_fails_import_with_reason():
    out = run_python("import fastmlp", FASTMLP_FORCE_ISA="sse9")
    assert out.returncode != 0
    assert "FASTMLP_FORCE_ISA=sse9 is not an instruction set" in out.stderr


def test_cuda_extension_imports_without_a_device():
    try:
        from fastmlp import _cuda
    except ImportError:
        pytest.skip("fastmlp was built without the CUDA extension (no CUDA compiler at build time)")
    n = _cuda.device_count()
    assert n >= 0
    if n == 0:
        assert _cuda.no_device_reason() != ""


def test_thread_count_round_trips():
    previous = fastmlp.get_num_threads()
    try:
        fastmlp.set_num_threads(1)
        assert fastmlp.get_num_threads() == 1
    finally:
        fastmlp.set_num_threads(previous)
    with pytest.raises(ValueError, match="n must be >= 1"):
        fastmlp.set_num_threads(0)


def test_force_isa_chooses_the_bf16_path():
    for isa in _C.available_isas():
        out = run_python("from fastmlp import _C; print(_C.bf16_path())", FASTMLP_FORCE_ISA=isa)
        assert out.returncode == 0, out.stderr
        assert ("vdpbf16ps" in out.stdout) == (isa == "avx512bf16"), (isa, out.stdout)
        assert ("TDPBF16PS" in out.stdout) == (isa == "amx"), (isa, out.stdout)


def test_amx_status_says_why():
    status = _C.amx_status()
    assert status in ("available", "not in this build", "this CPU has no AMX-BF16", "AMX needs x86-64 Linux") \
        or status.startswith("the kernel refused the AMX tile state")
    assert (status == "available") == ("amx" in _C.available_isas())


@pytest.mark.skipif(_C.cpu_has_avx512bf16(), reason="this CPU has AVX512-BF16")
def test_forcing_avx512bf16_without_it_is_a_clear_error():
    out = run_python("import fastmlp", FASTMLP_FORCE_ISA="avx512bf16")
    assert out.returncode != 0
    assert "FASTMLP_FORCE_ISA=avx512bf16 is not an instruction set that this build has and this CPU runs" \
        in out.stderr
