// fastmlp._C: the CPU kernels. One bind_<family>.cpp per kernel family; each
// binding checks its arguments (bindings/args.h), releases the GIL and calls the
// kernel chosen for this CPU (cpu/dispatch.cpp).
#include <omp.h>

#include "bindings/args.h"
#include "bindings/families.h"

namespace py = pybind11;
using namespace fastmlp;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastmlp CPU kernels (GEMM with fused epilogues, activations, softmax and losses, "
            "reductions, dropout, multi-tensor optimizer steps, joining arrays)";
  m.attr("__version__") = FASTMLP_VERSION;

  // Choosing the kernel set may fail (a bad FASTMLP_FORCE_ISA): fail the import with the reason.
  (void)cpu::kernels();

  m.def("isa", [] { return std::string(cpu::kernels().isa); },
        "Name of the CPU kernel set in use: 'generic', 'avx2', 'avx512', 'avx512bf16' (or 'reference').");
  m.def("available_isas", [] {
        int n = 0;
        const char* const* names = cpu::available_isas(&n);
        py::list out;
        for (int i = 0; i < n; ++i) out.append(names[i]);
        return out;
      },
      "Kernel sets this build has and this CPU runs, the naive 'reference' first and the best last.");
  m.def("set_isa", [](const std::string& name) {
        try {
          cpu::set_isa(name.c_str());
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("name"), "Switch the CPU kernel set (for tests and benchmarks).");
  m.def("get_num_threads", [] { return omp_get_max_threads(); },
        "Number of OpenMP threads the kernels may use.");
  m.def("set_num_threads", [](int n) {
        // An absurd count would have OpenMP start that many threads at the next parallel region.
        if (n < 1) throw py::value_error(str_cat("set_num_threads: n must be >= 1; got ", n));
        if (n > 4096) throw py::value_error(str_cat("set_num_threads: n must be <= 4096; got ", n));
        omp_set_num_threads(n);
      },
      py::arg("n"), "Set the number of OpenMP threads the kernels may use.");

  bind::bind_gemm(m);
  bind::bind_activation(m);
  bind::bind_loss(m);
  bind::bind_reduce(m);
  bind::bind_dropout(m);
  bind::bind_optim(m);
  bind::bind_mlp(m);
  bind::bind_join(m);
  bind::bind_bf16(m);
}
