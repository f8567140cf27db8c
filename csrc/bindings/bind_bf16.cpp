// bfloat16 conversions and the name of the bfloat16 GEMM path. bfloat16 arrays are
// uint16 arrays holding the bit patterns (NumPy has no bfloat16 type).
#include "bindings/args.h"
#include "bindings/families.h"

namespace fastmlp::bind {
namespace {

// out = bfloat16(x), rounded to nearest even; a new uint16 array of x's shape, or `out`.
py::array f32_to_bf16(py::handle x_obj, py::handle out_obj) {
  const char* fn = "f32_to_bf16";
  View x = contiguous(x_obj, fn, "x", Dtype::F32, false);
  py::array out;
  if (out_obj.is_none()) {
    out = py::array_t<std::uint16_t>(std::vector<py::ssize_t>(x.shape.begin(), x.shape.end()));
  } else {
    View o = contiguous(out_obj, fn, "out", Dtype::U16, true);
    require_shape(o, x.shape, fn, "out");
    out = o.arr;
  }
  std::uint16_t* dst = static_cast<std::uint16_t*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    cpu::kernels().f32_to_bf16(dst, x.f32(), x.size);
  }
  return out;
}

// out = float32(x) for x holding bfloat16 bit patterns (uint16); exact.
py::array bf16_to_f32(py::handle x_obj, py::handle out_obj) {
  const char* fn = "bf16_to_f32";
  View x = contiguous(x_obj, fn, "x", Dtype::U16, false);
  py::array out;
  if (out_obj.is_none()) {
    out = py::array_t<float>(std::vector<py::ssize_t>(x.shape.begin(), x.shape.end()));
  } else {
    View o = contiguous(out_obj, fn, "out", Dtype::F32, true);
    require_shape(o, x.shape, fn, "out");
    out = o.arr;
  }
  float* dst = static_cast<float*>(out.mutable_data());
  {
    py::gil_scoped_release nogil;
    cpu::kernels().bf16_to_f32(dst, x.u16(), x.size);
  }
  return out;
}

}  // namespace

void bind_bf16(py::module_& m) {
  m.def("f32_to_bf16", &f32_to_bf16, py::arg("x"), py::arg("out") = py::none(),
        "bfloat16 bit patterns (uint16, x's shape) of a C-contiguous float32 array, rounded to "
        "nearest even (NaN stays a quiet NaN; overflow rounds to inf; denormals are kept).");
  m.def("bf16_to_f32", &bf16_to_f32, py::arg("x"), py::arg("out") = py::none(),
        "float32 values (exact) of a C-contiguous uint16 array of bfloat16 bit patterns.");
  m.def("bf16_path", [] { return std::string(cpu::kernels().bf16_path); },
        "How the bfloat16 GEMM of the kernel set in use multiplies: 'avx512bf16 (vdpbf16ps)', or "
        "float32 FMAs on operands rounded to bfloat16 where the CPU has no bfloat16 instructions.");
  m.def("peak_flops", [](const std::string& kind, std::int64_t iters) {
        const cpu::KernelTable& k = cpu::kernels();
        if (kind != "fma" && kind != "bf16")
          throw py::value_error(str_cat("peak_flops: kind must be 'fma' or 'bf16'; got '", kind, "'"));
        if (iters < 1) throw py::value_error(str_cat("peak_flops: iters must be >= 1; got ", iters));
        const cpu::PeakFn f = kind == "fma" ? k.peak_fma : k.peak_bf16;
        if (!f)
          throw py::value_error(str_cat("peak_flops: the '", k.isa, "' kernel set has no peak loop"));
        py::gil_scoped_release nogil;
        return f(iters);
      },
      py::arg("kind"), py::arg("iters"),
      "Run a register-only loop of the float32 FMA ('fma') or of the bfloat16 GEMM's instruction "
      "('bf16') for `iters` rounds on every thread; returns the flops done (time it to get the peak).");
  m.def("amx_status", [] { return std::string(cpu::amx_status()); },
        "Why the 'amx' kernel set is or is not available (the CPU, the build, or the OS's permission).");
  m.def("cpu_has_avx512bf16", [] {
#if defined(__x86_64__) || defined(__i386__)
        return static_cast<bool>(__builtin_cpu_supports("avx512bf16"));
#else
        return false;
#endif
      },
      "Whether this CPU reports AVX512-BF16 (vdpbf16ps) in CPUID.");
}

}  // namespace fastmlp::bind
