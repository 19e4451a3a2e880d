// stylegan_bias_act's arguments (NVlabs' bias_act: x, b, dim, act, alpha, gain, clamp): their
// checks (the same words as fastgan/_checks.py's) and the preparation the CPU and CUDA ops share.
#pragma once

#include "../fastgan.h"
#include "../stylegan_activations.h"

namespace fastgan {

// dim, wrapped as Python wraps an index, and checked against x when a bias is added along it.
inline int64_t stylegan_bias_dim(const at::Tensor& x, const c10::optional<at::Tensor>& b, int64_t dim) {
  if (!b.has_value() || !b->defined()) return dim;
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  TORCH_CHECK_INDEX(d >= 0 && d < x.dim(), "fastgan: bias_act: dim ", dim, " is out of range for x of shape ",
                    py_shape(x.sizes()));
  return d;
}

// b: None, or 1-D with x.shape[d] elements of x's dtype and device. op: the op's name, for the message.
inline void check_stylegan_bias(const at::Tensor& x, const c10::optional<at::Tensor>& b, int64_t d,
                                const char* op = "bias_act") {
  if (!b.has_value() || !b->defined()) return;
  check_float_tensor(*b, "b");
  TORCH_CHECK_VALUE(b->dim() == 1 && b->size(0) == x.size(d), "fastgan: ", op, ": b must be a 1-D tensor of x.shape[",
                    d, "] = ", x.size(d), " elements, got shape ", py_shape(b->sizes()));
  check_same_device(*b, x, "b");
  TORCH_CHECK_TYPE(b->scalar_type() == x.scalar_type(), "fastgan: ", op, ": b dtype ", py_dtype(b->scalar_type()),
                   " does not match x dtype ", py_dtype(x.scalar_type()));
}

// The walk both ops share: x dense in its own memory format (the outputs take the same
// strides), so the channel of storage element i is (i / run) % C, run = x's stride along dim
// (1 when there is no bias: every element its own run of channel 0).
struct StyleganBiasActTensors {
  at::Tensor x, b, grad_out, out;
  StyleganAct act = StyleganAct::Linear;
  int64_t numel = 0, run = 1, C = 1;
};

inline StyleganBiasActTensors stylegan_bias_act_tensors(const at::Tensor& x, const c10::optional<at::Tensor>& b,
                                                        int64_t dim, c10::string_view act,
                                                        const at::Tensor& grad_out = at::Tensor()) {
  check_float_tensor(x, "x");
  StyleganBiasActTensors t;
  t.act = parse_stylegan_act(act);
  const int64_t d = stylegan_bias_dim(x, b, dim);
  check_stylegan_bias(x, b, d);
  const auto fmt = layout_of(x);
  t.x = x.contiguous(fmt);
  if (grad_out.defined()) {
    check_grad_out(grad_out, x, "x");
    t.grad_out = in_dtype(grad_out, x.scalar_type()).contiguous(fmt);
  }
  t.out = at::empty_like(t.x, t.x.options(), fmt);
  t.numel = t.x.numel();
  if (b.has_value() && b->defined()) {
    t.b = b->contiguous();
    t.C = t.b.numel();
    t.run = t.x.stride(d);
  }
  return t;
}

}  // namespace fastgan
