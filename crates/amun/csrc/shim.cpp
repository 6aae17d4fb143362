// What tch 0.24 does not expose: bf16 autocast (tch::autocast is fp16-only),
// the TF32 switches, and channels-last memory format. Compiled by build.rs
// against the same libtorch headers as torch-sys. Every function catches C++
// exceptions so that none crosses the FFI boundary.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
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

} // extern "C"
