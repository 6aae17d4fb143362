// What tch 0.24 does not expose: bf16 autocast (tch::autocast is fp16-only),
// the TF32 switches, channels-last memory format, the multi-tensor
// `_foreach` kernels (tch's generator skips them) and setting a gradient to
// None. Compiled by build.rs
// against the same libtorch headers as torch-sys. Every function catches C++
// exceptions so that none crosses the FFI boundary.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <vector>
#include <cstring>
#include <string>

static void set_error(char *err, size_t len, const char *msg) {
  if (err && len > 0) {
    std::strncpy(err, msg, len - 1);
    err[len - 1] = '\0';
  }
}

extern "C" {

// Enters (enabled = 1) or leaves (enabled = 0) a bf16 autocast region on the
// given device type (0 = CPU, 1 = CUDA). Returns 0 on success.
int amun_autocast_bf16(int cuda, int enabled, char *err, size_t len) {
  try {
    at::DeviceType dev = cuda ? at::kCUDA : at::kCPU;
    if (enabled) {
      at::autocast::set_autocast_dtype(dev, at::kBFloat16);
      at::autocast::set_autocast_enabled(dev, true);
      at::autocast::increment_nesting();
    } else {
      at::autocast::set_autocast_enabled(dev, false);
      if (at::autocast::decrement_nesting() == 0) {
        at::autocast::clear_cache();
      }
    }
    return 0;
  } catch (const std::exception &e) {
    set_error(err, len, e.what());
    return 1;
  }
}

void amun_set_tf32(int allow) {
  at::globalContext().setAllowTF32CuDNN(allow != 0);
  at::globalContext().setAllowTF32CuBLAS(allow != 0);
}

// Returns a new tensor handle (owned by the caller, freed by tch) holding the
// channels-last contiguous version of a 4-D tensor, or null on error.
void *amun_channels_last(void *t, char *err, size_t len) {
  try {
    auto *src = static_cast<at::Tensor *>(t);
    return new at::Tensor(src->contiguous(at::MemoryFormat::ChannelsLast));
  } catch (const std::exception &e) {
    set_error(err, len, e.what());
    return nullptr;
  }
}

// Whether a tensor is laid out channels-last.
int amun_is_channels_last(void *t) {
  auto *src = static_cast<at::Tensor *>(t);
  return src->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
}

// Drops the gradients of n tensors (PyTorch's zero_grad(set_to_none=True)):
// the next backward writes them afresh instead of adding to zeros, and no
// kernel runs to clear them.
void amun_grads_to_none(void **tensors, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    static_cast<at::Tensor *>(tensors[i])->mutable_grad().reset();
  }
}

// One SGD step over n parameters with multi-tensor kernels, the update of
// torch.optim.SGD(foreach=True), dampening 0:
//   g = grad (· mask); g += wd·p; b = μ·b + g; g = nesterov ? g + μ·b : b; p -= lr·g.
// bufs must hold a tensor per parameter (zeros before the first step gives
// PyTorch's b = g); masks may be null. Gradients are never written.
int amun_sgd_foreach(void **params, void **grads, void **bufs, void **masks, size_t n,
                     double lr, double momentum, double wd, int nesterov, char *err,
                     size_t len) {
  try {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> p, g, b;
    p.reserve(n);
    g.reserve(n);
    b.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      p.push_back(*static_cast<at::Tensor *>(params[i]));
      g.push_back(*static_cast<at::Tensor *>(grads[i]));
    }
    if (masks) {
      std::vector<at::Tensor> m;
      m.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        m.push_back(*static_cast<at::Tensor *>(masks[i]));
      }
      g = at::_foreach_mul(g, m);
    }
    if (wd != 0.0) {
      g = at::_foreach_add(g, p, wd);
    }
    if (momentum != 0.0) {
      for (size_t i = 0; i < n; ++i) {
        b.push_back(*static_cast<at::Tensor *>(bufs[i]));
      }
      at::_foreach_mul_(b, momentum);
      at::_foreach_add_(b, g);
      if (nesterov) {
        g = at::_foreach_add(g, b, momentum);
      } else {
        g = b;
      }
    }
    at::_foreach_add_(p, g, -lr);
    return 0;
  } catch (const std::exception &e) {
    set_error(err, len, e.what());
    return 1;
  }
}

} // extern "C"
