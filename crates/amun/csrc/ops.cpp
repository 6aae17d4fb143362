// Calls ATen operators by name through libtorch's dispatcher, for the
// interpreter of exported programs (src/model/program/): the graph names
// each operator (`aten::conv2d`) and its arguments by schema name, and the
// dispatcher runs it exactly as PyTorch eager does (same kernels, autograd,
// defaults from the schema). Nothing here parses files; the Rust side checks
// every node against the schema this file reports before anything runs.
// Every function catches C++ exceptions so that none crosses the FFI.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ScalarOps.h>
#include <cstring>
#include <string>
#include <vector>

namespace {

void set_error(char *err, size_t len, const char *msg) {
  if (err && len > 0) {
    std::strncpy(err, msg, len - 1);
    err[len - 1] = '\0';
  }
}

// c10 errors carry a C++ backtrace in what(); users get the message only.
void set_exception(char *err, size_t len, const std::exception &e) {
  if (auto *c = dynamic_cast<const c10::Error *>(&e)) {
    set_error(err, len, c->what_without_backtrace());
  } else {
    set_error(err, len, e.what());
  }
}

const c10::FunctionSchema &schema_of(void *op) {
  return static_cast<c10::OperatorHandle *>(op)->schema();
}

}  // namespace

extern "C" {

// One argument value as the Rust side builds it; `tag` says which fields
// hold it (see AmunArgTag in src/model/program/ops.rs).
struct AmunArg {
  int32_t tag;
  int64_t i;
  int64_t i2;
  double f;
  void *t;
  const int64_t *ints;
  const double *floats;
  void *const *tensors;
  size_t n;
  const char *s;
};

enum {
  TAG_DEFAULT = 0,
  TAG_NONE = 1,
  TAG_TENSOR = 2,
  TAG_INT = 3,
  TAG_FLOAT = 4,
  TAG_BOOL = 5,
  TAG_INTS = 6,
  TAG_FLOATS = 7,
  TAG_BOOLS = 8,
  TAG_TENSORS = 9,
  TAG_OPT_TENSORS = 10,
  TAG_STRING = 11,
  TAG_SCALAR_TYPE = 12,
  TAG_LAYOUT = 13,
  TAG_MEMORY_FORMAT = 14,
  TAG_DEVICE = 15,
};

// The operator `name` (`aten::conv2d`) with overload `overload` (`` for
// default), or null when libtorch has none. The handle lives as long as the
// process (operators are registered once).
void *amun_op_find(const char *name, const char *overload) {
  try {
    auto h = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!h.has_value()) {
      return nullptr;
    }
    return new c10::OperatorHandle(*h);
  } catch (...) {
    return nullptr;
  }
}

size_t amun_op_num_args(void *op) { return schema_of(op).arguments().size(); }

size_t amun_op_num_returns(void *op) { return schema_of(op).returns().size(); }

// How an argument or a return aliases: 0 not at all, 1 it may share
// storage with another (`Tensor(a)`: a view), 2 the operator writes into it
// (`Tensor(a!)`).
static int alias_of(const c10::Argument &a) {
  if (!a.alias_info()) return 0;
  return a.alias_info()->isWrite() ? 2 : 1;
}

// The i-th argument's name and type (`Tensor?`, `SymInt[]`, `Scalar`),
// whether it has a default, and how it aliases (see alias_of).
int amun_op_arg(void *op, size_t i, char *name, size_t nlen, char *type,
                size_t tlen, int *has_default, int *alias) {
  try {
    const auto &a = schema_of(op).arguments().at(i);
    set_error(name, nlen, a.name().c_str());
    set_error(type, tlen, a.type()->str().c_str());
    *has_default = a.default_value().has_value() ? 1 : 0;
    *alias = alias_of(a);
    return 0;
  } catch (...) {
    return 1;
  }
}

// The i-th return's type and how it aliases an argument (see alias_of).
int amun_op_return(void *op, size_t i, char *type, size_t tlen, int *alias) {
  try {
    const auto &r = schema_of(op).returns().at(i);
    set_error(type, tlen, r.type()->str().c_str());
    *alias = alias_of(r);
    return 0;
  } catch (...) {
    return 1;
  }
}

// Runs the operator on `nargs` arguments (one per schema argument, in
// schema order). Returns written to `outs` flat (a Tensor[] return as its
// elements, an absent optional tensor as null), `counts[r]` the number of
// tensors return r gave. Returns 0 on success, else 1 with the message.
int amun_op_call(void *op, const AmunArg *args, size_t nargs, void **outs,
                 size_t max_outs, size_t *counts, size_t ncounts, char *err,
                 size_t len) {
  try {
    auto *h = static_cast<c10::OperatorHandle *>(op);
    const auto &schema = h->schema();
    const auto &formal = schema.arguments();
    if (nargs != formal.size()) {
      set_error(err, len, "wrong number of arguments");
      return 1;
    }
    torch::jit::Stack stack;
    stack.reserve(nargs);
    for (size_t k = 0; k < nargs; ++k) {
      const AmunArg &a = args[k];
      const auto &f = formal[k];
      // A number where the schema wants a tensor is a Python scalar: as
      // PyTorch's argument parser does, a wrapped-number tensor, so type
      // promotion treats it as a scalar.
      bool wants_tensor = f.type()->kind() == c10::TypeKind::TensorType;
      auto number = [&](const at::Scalar &s) {
        if (wants_tensor) {
          at::Tensor t = c10::scalar_to_tensor(s);
          t.unsafeGetTensorImpl()->set_wrapped_number(true);
          stack.emplace_back(std::move(t));
        } else {
          stack.emplace_back(s);
        }
      };
      switch (a.tag) {
        case TAG_DEFAULT:
          if (!f.default_value().has_value()) {
            set_error(err, len, ("argument '" + f.name() + "' has no default").c_str());
            return 1;
          }
          stack.push_back(*f.default_value());
          break;
        case TAG_NONE:
          stack.emplace_back();
          break;
        case TAG_TENSOR:
          stack.emplace_back(*static_cast<at::Tensor *>(a.t));
          break;
        case TAG_INT:
          number(at::Scalar(a.i));
          break;
        case TAG_FLOAT:
          number(at::Scalar(a.f));
          break;
        case TAG_BOOL:
          number(at::Scalar(a.i != 0));
          break;
        case TAG_INTS:
          stack.emplace_back(std::vector<int64_t>(a.ints, a.ints + a.n));
          break;
        case TAG_FLOATS:
          stack.emplace_back(std::vector<double>(a.floats, a.floats + a.n));
          break;
        case TAG_BOOLS: {
          c10::List<bool> l;
          for (size_t j = 0; j < a.n; ++j) l.push_back(a.ints[j] != 0);
          stack.emplace_back(std::move(l));
          break;
        }
        case TAG_TENSORS: {
          c10::List<at::Tensor> l;
          for (size_t j = 0; j < a.n; ++j) l.push_back(*static_cast<at::Tensor *>(a.tensors[j]));
          stack.emplace_back(std::move(l));
          break;
        }
        case TAG_OPT_TENSORS: {
          c10::List<std::optional<at::Tensor>> l;
          for (size_t j = 0; j < a.n; ++j) {
            if (a.tensors[j]) {
              l.push_back(*static_cast<at::Tensor *>(a.tensors[j]));
            } else {
              l.push_back(std::nullopt);
            }
          }
          stack.emplace_back(std::move(l));
          break;
        }
        case TAG_STRING:
          stack.emplace_back(std::string(a.s));
          break;
        case TAG_SCALAR_TYPE:
          stack.emplace_back(static_cast<c10::ScalarType>(a.i));
          break;
        case TAG_LAYOUT:
          stack.emplace_back(static_cast<c10::Layout>(a.i));
          break;
        case TAG_MEMORY_FORMAT:
          stack.emplace_back(static_cast<c10::MemoryFormat>(a.i));
          break;
        case TAG_DEVICE:
          stack.emplace_back(c10::Device(a.i == 1 ? c10::DeviceType::CUDA : c10::DeviceType::CPU,
                                         static_cast<c10::DeviceIndex>(a.i2)));
          break;
        default:
          set_error(err, len, "unknown argument tag");
          return 1;
      }
    }
    h->callBoxed(stack);
    if (stack.size() > ncounts) {
      set_error(err, len, "more returns than the schema declares");
      return 1;
    }
    size_t at = 0;
    auto put = [&](const at::Tensor *t) -> bool {
      if (at >= max_outs) return false;
      outs[at++] = (t && t->defined()) ? new at::Tensor(*t) : nullptr;
      return true;
    };
    for (size_t r = 0; r < stack.size(); ++r) {
      const c10::IValue &v = stack[r];
      size_t before = at;
      bool ok = true;
      if (v.isTensor()) {
        ok = put(&v.toTensor());
      } else if (v.isTensorList()) {
        for (const at::Tensor &t : v.toTensorVector()) ok = ok && put(&t);
      } else if (v.isNone()) {
        ok = put(nullptr);
      } else {
        set_error(err, len, ("return " + std::to_string(r) + " is a " + v.tagKind() +
                             ", not a tensor").c_str());
        for (size_t j = 0; j < at; ++j) delete static_cast<at::Tensor *>(outs[j]);
        return 1;
      }
      if (!ok) {
        set_error(err, len, "too many returned tensors");
        for (size_t j = 0; j < at; ++j) delete static_cast<at::Tensor *>(outs[j]);
        return 1;
      }
      counts[r] = at - before;
    }
    return 0;
  } catch (const std::exception &e) {
    set_exception(err, len, e);
    return 1;
  }
}

}  // extern "C"
