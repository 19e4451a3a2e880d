// The compiled module: TORCH_LIBRARY(fastgan) with every op of the list (op_list.inc), the
// eager entry points, and build_info. CPU and CUDA kernels register implementations under the
// same names in cpu/ and cuda/; the layer ops are composed once for every device in
// layers.cpp; autograd is registered once, in C++ (autograd_layers.cpp, autograd_elementwise.cpp,
// autograd_stylegan.cpp), and each fake kernel beside its op's Python function (fastgan/_fake.py).
#include <torch/extension.h>

#include "cpu/isa.h"
#include "logit_losses.h"
#include "op_list.h"
#include "stylegan_activations.h"

#include <string>
#include <type_traits>

#ifndef FASTGAN_CUDA_ARCH_LIST
#define FASTGAN_CUDA_ARCH_LIST ""
#endif

TORCH_LIBRARY(fastgan, m) { fastgan::op::define_ops(m, /*with_layers=*/true); }

static pybind11::dict build_info() {
  pybind11::dict info;
#ifdef FASTGAN_WITH_CUDA
  info["cuda"] = true;
#else
  info["cuda"] = false;
#endif
  info["cuda_arch_list"] = std::string(FASTGAN_CUDA_ARCH_LIST);
  info["torch_version"] = std::string(TORCH_VERSION);
  // Whether at::parallel_for spreads the CPU kernels' loops over torch's threads (it needs
  // OpenMP at compile time; without it every loop runs on the calling thread).
#ifdef _OPENMP
  info["cpu_parallel"] = true;
#else
  info["cpu_parallel"] = false;
#endif
  return info;
}

// Eager entry points: the ops the list marks `eager`, called through their typed dispatcher
// handles. A call through torch.ops parses its arguments against the schema in Python-facing
// C++ and costs about 5 us; these cost about 1 us, which on a GPU is a large part of a layer's
// host time. torch.compile traces torch.ops instead (fastgan/functional.py picks).
namespace {

// pybind11 has no caster for c10::string_view; a std::string converts to one.
template <class T>
struct PyArg {
  using type = T;
};
template <>
struct PyArg<c10::string_view> {
  using type = const std::string&;
};

template <class R>
auto first_output(R&& outputs) {
  if constexpr (std::is_same_v<std::decay_t<R>, at::Tensor>)
    return outputs;
  else
    return std::get<0>(std::forward<R>(outputs));
}

template <class Sig>
struct EagerEntry;
template <class R, class... Args>
struct EagerEntry<R(Args...)> {
  template <const c10::TypedOperatorHandle<R(Args...)>& (*handle)()>
  static auto make() {
    return [](typename PyArg<Args>::type... args) { return first_output(handle().call(args...)); };
  }
};

template <fastgan::op::Entry entry, class Sig, const c10::TypedOperatorHandle<Sig>& (*handle)()>
void bind_eager(pybind11::module& m, const char* name) {
  if constexpr (entry == fastgan::op::Entry::eager)
    m.def(name, EagerEntry<Sig>::template make<handle>(), pybind11::call_guard<pybind11::gil_scoped_release>());
}

// Looks every handle up, so that a signature that does not match its schema fails the import
// with the op's name rather than the first call that happens to use it.
void bind_ops(pybind11::module& m) {
  using namespace fastgan::op;
#define FASTGAN_OP(library, entry, name, schema, ...) \
  name();                                             \
  bind_eager<Entry::entry, sig::name, &name>(m, #name);
#include "op_list.inc"
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastgan compiled kernels; the ops live in torch.ops.fastgan";
  m.def("build_info", &build_info, "How this module was built");
  m.def("cpu_capability", &fastgan::cpu::capability, "The instruction set the CPU kernels run with");
  m.def("set_cpu_capability", &fastgan::cpu::set_capability,
        "Run the CPU kernels with 'default' (baseline) or 'avx2' instructions (for tests)");
  bind_ops(m);
  // The C++ tables, for the test that holds the Python fallback's copies to them.
  m.def(
      "activations",
      [] {
        pybind11::dict d;
        for (const fastgan::ActivationEntry& e : fastgan::kActivations) d[e.name] = e.module;
        return d;
      },
      "Activation names the kernels accept, with the stock module each stands for");
  m.def(
      "logit_losses",
      [] {
        pybind11::list names;
        for (const fastgan::LossKindEntry& e : fastgan::kLogitLosses) names.append(e.name);
        return names;
      },
      "The logit losses' names the kernels accept");
  m.def(
      "stylegan_activations",
      [] {
        pybind11::dict d;
        for (const fastgan::StyleganActEntry& e : fastgan::kStyleganActs)
          d[e.name] = pybind11::make_tuple(e.def_alpha, e.def_gain);
        return d;
      },
      "StyleGAN bias_act's activations: name -> (default alpha, default gain)");
  m.def(
      "reductions",
      [] {
        pybind11::dict d;
        for (const fastgan::ReductionEntry& e : fastgan::kReductions) d[e.name] = static_cast<int64_t>(e.reduction);
        return d;
      },
      "The loss ops' reduction numbers");
}
