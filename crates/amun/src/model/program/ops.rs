//! ATen operators by name: the list amun runs, their schemas as libtorch
//! states them, and the boxed call through the dispatcher (csrc/ops.cpp).
use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::sync::{Arc, Mutex, OnceLock};
use tch::Tensor;

/// The ATen operators (`name.overload`) an exported program may use. Each
/// runs through libtorch's dispatcher exactly as PyTorch eager runs it; the
/// list keeps out what cannot be an image classifier's forward pass or
/// would break amun's guarantees: random operators other than dropout and
/// stochastic depth (every random draw must follow amun's mode and seed),
/// operators returning Python numbers (data-dependent control), I/O.
pub const SUPPORTED: &[&str] = &[
    // convolutions, pooling, normalisation, linear layers, attention
    "conv1d.default",
    "conv2d.default",
    "conv2d.padding",
    "conv_transpose2d.input",
    "convolution.default",
    "linear.default",
    "bilinear.default",
    "matmul.default",
    "mm.default",
    "bmm.default",
    "addmm.default",
    "baddbmm.default",
    "einsum.default",
    "batch_norm.default",
    "layer_norm.default",
    "group_norm.default",
    "instance_norm.default",
    "rms_norm.default",
    "max_pool2d.default",
    "max_pool1d.default",
    "avg_pool2d.default",
    "avg_pool1d.default",
    "adaptive_avg_pool2d.default",
    "adaptive_avg_pool1d.default",
    "adaptive_max_pool2d.default",
    "scaled_dot_product_attention.default",
    "pixel_shuffle.default",
    "pixel_unshuffle.default",
    "upsample_nearest2d.vec",
    "upsample_bilinear2d.vec",
    "embedding.default",
    // dropout and stochastic depth (follow amun's mode)
    "dropout.default",
    "dropout_.default",
    "feature_dropout.default",
    "feature_dropout_.default",
    "alpha_dropout.default",
    "feature_alpha_dropout.default",
    "bernoulli_.float",
    // activations
    "relu.default",
    "relu_.default",
    "relu6.default",
    "leaky_relu.default",
    "leaky_relu_.default",
    "elu.default",
    "elu_.default",
    "selu.default",
    "selu_.default",
    "celu.default",
    "gelu.default",
    "gelu_.default",
    "silu.default",
    "silu_.default",
    "mish.default",
    "mish_.default",
    "hardtanh.default",
    "hardtanh_.default",
    "hardswish.default",
    "hardswish_.default",
    "hardsigmoid.default",
    "hardsigmoid_.default",
    "sigmoid.default",
    "sigmoid_.default",
    "tanh.default",
    "tanh_.default",
    "softplus.default",
    "prelu.default",
    "glu.default",
    "softmax.int",
    "log_softmax.int",
    "_softmax.default",
    "_log_softmax.default",
    // pointwise arithmetic and math
    "add.Tensor",
    "add.Scalar",
    "add_.Tensor",
    "add_.Scalar",
    "sub.Tensor",
    "sub.Scalar",
    "sub_.Tensor",
    "rsub.Scalar",
    "rsub.Tensor",
    "mul.Tensor",
    "mul.Scalar",
    "mul_.Tensor",
    "mul_.Scalar",
    "div.Tensor",
    "div.Scalar",
    "div.Tensor_mode",
    "div_.Tensor",
    "div_.Scalar",
    "floor_divide.default",
    "remainder.Scalar",
    "remainder.Tensor",
    "pow.Tensor_Scalar",
    "pow.Tensor_Tensor",
    "pow.Scalar",
    "neg.default",
    "abs.default",
    "exp.default",
    "log.default",
    "log1p.default",
    "sqrt.default",
    "rsqrt.default",
    "square.default",
    "reciprocal.default",
    "sin.default",
    "cos.default",
    "erf.default",
    "floor.default",
    "ceil.default",
    "round.default",
    "sign.default",
    "clamp.default",
    "clamp.Tensor",
    "clamp_.default",
    "clamp_min.default",
    "clamp_max.default",
    "clip.default",
    "addcmul.default",
    "lerp.Scalar",
    "maximum.default",
    "minimum.default",
    "where.self",
    "where.ScalarOther",
    "masked_fill.Scalar",
    "masked_fill.Tensor",
    "masked_fill_.Scalar",
    "eq.Scalar",
    "eq.Tensor",
    "ne.Scalar",
    "ne.Tensor",
    "lt.Scalar",
    "lt.Tensor",
    "le.Scalar",
    "gt.Scalar",
    "gt.Tensor",
    "ge.Scalar",
    "logical_not.default",
    "logical_and.default",
    "bitwise_not.default",
    "bitwise_and.Tensor",
    "cumsum.default",
    "linalg_vector_norm.default",
    "norm.ScalarOpt_dim",
    // reductions
    "mean.default",
    "mean.dim",
    "sum.default",
    "sum.dim_IntList",
    "amax.default",
    "amin.default",
    "max.dim",
    "min.dim",
    "max.default",
    "var.correction",
    "var_mean.correction",
    "std.correction",
    "logsumexp.default",
    "argmax.default",
    // shapes, views, copies
    "view.default",
    "reshape.default",
    "reshape_as.default",
    "view_as.default",
    "flatten.using_ints",
    "unflatten.int",
    "permute.default",
    "transpose.int",
    "swapaxes.default",
    "t.default",
    "contiguous.default",
    "clone.default",
    "alias.default",
    "detach.default",
    // `torch.tensor(...)` in a forward: lift_fresh_copy, then detach_ of the copy
    "detach_.default",
    "expand.default",
    "expand_as.default",
    "repeat.default",
    "repeat_interleave.self_int",
    "tile.default",
    "unsqueeze.default",
    "squeeze.default",
    "squeeze.dim",
    "squeeze.dims",
    "select.int",
    "slice.Tensor",
    "narrow.default",
    "index.Tensor",
    "index_select.default",
    "gather.default",
    "cat.default",
    "concat.default",
    "stack.default",
    "split.Tensor",
    "split_with_sizes.default",
    "chunk.default",
    "unbind.int",
    "tensor_split.sections",
    "roll.default",
    "flip.default",
    "pad.default",
    "constant_pad_nd.default",
    "movedim.int",
    "diagonal.default",
    "tril.default",
    "triu.default",
    "type_as.default",
    "to.dtype",
    "to.device",
    "to.dtype_layout",
    "_to_copy.default",
    "lift_fresh_copy.default",
    "fill_.Scalar",
    "fill_.Tensor",
    "zero_.default",
    "copy_.default",
    // constants made inside the graph
    "arange.default",
    "arange.start",
    "arange.start_step",
    "zeros.default",
    "ones.default",
    "full.default",
    "empty.memory_format",
    "zeros_like.default",
    "ones_like.default",
    "full_like.default",
    "empty_like.default",
    "new_zeros.default",
    "new_ones.default",
    "new_empty.default",
    "new_full.default",
    "scalar_tensor.default",
    "meshgrid.indexing",
    "linspace.default",
    // sizes of a dynamic batch, asserts (no computation)
    "sym_size.int",
    "sym_numel.default",
    "sym_stride.int",
    "_assert_tensor_metadata.default",
    "_assert_scalar.default",
    "sym_constrain_range_for_size.default",
];

/// An argument of an operator's schema.
#[derive(Debug, Clone)]
pub struct ArgInfo {
    pub name: String,
    /// As libtorch prints it: `Tensor?`, `SymInt[]`, `Scalar`, `bool`, …
    pub ty: String,
    pub has_default: bool,
    /// The operator writes into it (`Tensor(a!)`).
    pub is_write: bool,
    /// A return may share its storage (`Tensor(a)`: a view's source;
    /// `Tensor(a!)`).
    pub is_alias: bool,
}

/// An operator found in libtorch, with its schema.
#[derive(Debug)]
pub struct OpInfo {
    /// `conv2d.default`.
    pub name: String,
    handle: *mut c_void,
    pub args: Vec<ArgInfo>,
    pub returns: Vec<String>,
    /// Per return: it is a view of (or the written) argument marked
    /// `is_alias` (`-> Tensor(a)`), not a new tensor.
    pub returns_alias: Vec<bool>,
}

// SAFETY: the handle is a heap copy of a c10::OperatorHandle, which refers
// to the process-wide operator registry and is safe to use from any thread.
unsafe impl Send for OpInfo {}
unsafe impl Sync for OpInfo {}

unsafe extern "C" {
    fn amun_op_find(name: *const i8, overload: *const i8) -> *mut c_void;
    fn amun_op_num_args(op: *mut c_void) -> usize;
    fn amun_op_num_returns(op: *mut c_void) -> usize;
    fn amun_op_arg(
        op: *mut c_void,
        i: usize,
        name: *mut u8,
        nlen: usize,
        ty: *mut u8,
        tlen: usize,
        has_default: *mut i32,
        alias: *mut i32,
    ) -> i32;
    fn amun_op_return(op: *mut c_void, i: usize, ty: *mut u8, tlen: usize, alias: *mut i32) -> i32;
    fn amun_op_call(
        op: *mut c_void,
        args: *const RawArg,
        nargs: usize,
        outs: *mut *mut c_void,
        max_outs: usize,
        counts: *mut usize,
        ncounts: usize,
        err: *mut u8,
        len: usize,
    ) -> i32;
}

/// `struct AmunArg` of csrc/ops.cpp.
#[repr(C)]
pub struct RawArg {
    tag: i32,
    i: i64,
    i2: i64,
    f: f64,
    t: *mut c_void,
    ints: *const i64,
    floats: *const f64,
    tensors: *const *mut c_void,
    n: usize,
    s: *const i8,
}

/// An argument value for [`call`].
#[derive(Debug)]
pub enum Value<'a> {
    Default,
    None,
    Tensor(&'a Tensor),
    Int(i64),
    Float(f64),
    Bool(bool),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
    Tensors(Vec<&'a Tensor>),
    OptTensors(Vec<Option<&'a Tensor>>),
    Str(&'a CString),
    /// c10's ScalarType number.
    ScalarType(i64),
    /// c10's Layout number.
    Layout(i64),
    /// c10's MemoryFormat number.
    MemoryFormat(i64),
    /// (0 = CPU, 1 = CUDA, index).
    Device(i64, i64),
}

fn text(buf: &[u8]) -> String {
    crate::device::shim_error(buf)
}

/// The operator `aten::name.overload`, looked up once per process.
pub fn find(qualified: &str) -> Option<Arc<OpInfo>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<OpInfo>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = map.get(qualified) {
        return v.clone();
    }
    let found = lookup(qualified);
    map.insert(qualified.to_string(), found.clone());
    found
}

fn lookup(qualified: &str) -> Option<Arc<OpInfo>> {
    let (name, overload) = qualified.split_once('.')?;
    let overload = if overload == "default" { "" } else { overload };
    let name = CString::new(format!("aten::{name}")).ok()?;
    let overload = CString::new(overload).ok()?;
    // SAFETY: NUL-terminated strings owned here; the shim returns a heap
    // handle or null.
    let handle = unsafe { amun_op_find(name.as_ptr(), overload.as_ptr()) };
    if handle.is_null() {
        return None;
    }
    // SAFETY: `handle` is a valid operator handle for the calls below;
    // buffers are owned here and the shim NUL-terminates what it writes.
    unsafe {
        let mut args = Vec::new();
        for i in 0..amun_op_num_args(handle) {
            let (mut n, mut t) = ([0u8; 128], [0u8; 256]);
            let (mut d, mut w) = (0i32, 0i32);
            if amun_op_arg(
                handle,
                i,
                n.as_mut_ptr(),
                n.len(),
                t.as_mut_ptr(),
                t.len(),
                &mut d,
                &mut w,
            ) != 0
            {
                return None;
            }
            args.push(ArgInfo {
                name: text(&n),
                ty: text(&t),
                has_default: d != 0,
                is_write: w == 2,
                is_alias: w != 0,
            });
        }
        let mut returns = Vec::new();
        let mut returns_alias = Vec::new();
        for i in 0..amun_op_num_returns(handle) {
            let mut t = [0u8; 256];
            let mut a = 0i32;
            if amun_op_return(handle, i, t.as_mut_ptr(), t.len(), &mut a) != 0 {
                return None;
            }
            returns.push(text(&t));
            returns_alias.push(a != 0);
        }
        Some(Arc::new(OpInfo {
            name: qualified.to_string(),
            handle,
            args,
            returns,
            returns_alias,
        }))
    }
}

/// Tensors an operator returned: per schema return, its tensors (one for a
/// `Tensor`, the elements of a `Tensor[]`, `None` for an absent optional).
pub type Returns = Vec<Vec<Option<Tensor>>>;

/// Calls `op` on `args` (one per schema argument, in schema order).
pub fn call(op: &OpInfo, args: &[Value<'_>]) -> Result<Returns, String> {
    let ptr = |t: &Tensor| t.as_ptr() as *mut c_void;
    let mut ptr_lists: Vec<Vec<*mut c_void>> = Vec::new();
    let mut bool_lists: Vec<Vec<i64>> = Vec::new();
    let mut raw = Vec::with_capacity(args.len());
    for a in args {
        let mut r = RawArg {
            tag: 0,
            i: 0,
            i2: 0,
            f: 0.0,
            t: std::ptr::null_mut(),
            ints: std::ptr::null(),
            floats: std::ptr::null(),
            tensors: std::ptr::null(),
            n: 0,
            s: std::ptr::null(),
        };
        match a {
            Value::Default => r.tag = 0,
            Value::None => r.tag = 1,
            Value::Tensor(t) => {
                r.tag = 2;
                r.t = ptr(t);
            }
            Value::Int(v) => {
                r.tag = 3;
                r.i = *v;
            }
            Value::Float(v) => {
                r.tag = 4;
                r.f = *v;
            }
            Value::Bool(v) => {
                r.tag = 5;
                r.i = i64::from(*v);
            }
            Value::Ints(v) => {
                r.tag = 6;
                r.ints = v.as_ptr();
                r.n = v.len();
            }
            Value::Floats(v) => {
                r.tag = 7;
                r.floats = v.as_ptr();
                r.n = v.len();
            }
            Value::Bools(v) => {
                bool_lists.push(v.iter().map(|b| i64::from(*b)).collect());
                let l = bool_lists.last().expect("just pushed");
                r.tag = 8;
                r.ints = l.as_ptr();
                r.n = l.len();
            }
            Value::Tensors(v) => {
                ptr_lists.push(v.iter().map(|t| ptr(t)).collect());
                let l = ptr_lists.last().expect("just pushed");
                r.tag = 9;
                r.tensors = l.as_ptr();
                r.n = l.len();
            }
            Value::OptTensors(v) => {
                ptr_lists.push(
                    v.iter()
                        .map(|t| t.map_or(std::ptr::null_mut(), ptr))
                        .collect(),
                );
                let l = ptr_lists.last().expect("just pushed");
                r.tag = 10;
                r.tensors = l.as_ptr();
                r.n = l.len();
            }
            Value::Str(s) => {
                r.tag = 11;
                r.s = s.as_ptr();
            }
            Value::ScalarType(v) => {
                r.tag = 12;
                r.i = *v;
            }
            Value::Layout(v) => {
                r.tag = 13;
                r.i = *v;
            }
            Value::MemoryFormat(v) => {
                r.tag = 14;
                r.i = *v;
            }
            Value::Device(kind, index) => {
                r.tag = 15;
                r.i = *kind;
                r.i2 = *index;
            }
        }
        raw.push(r);
    }
    const MAX_OUTS: usize = 4096;
    let mut outs: Vec<*mut c_void> = vec![std::ptr::null_mut(); MAX_OUTS];
    let mut counts = vec![0usize; op.returns.len()];
    let mut err = [0u8; 1024];
    // SAFETY: every pointer in `raw` points into `args`, `ptr_lists` or
    // `bool_lists`, alive until the call returns; the shim writes at most
    // MAX_OUTS owned tensor handles and one count per declared return.
    let rc = unsafe {
        amun_op_call(
            op.handle,
            raw.as_ptr(),
            raw.len(),
            outs.as_mut_ptr(),
            outs.len(),
            counts.as_mut_ptr(),
            counts.len(),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        return Err(text(&err));
    }
    let mut at = 0;
    let mut result = Vec::with_capacity(counts.len());
    for c in counts {
        let mut v = Vec::with_capacity(c);
        for p in &outs[at..at + c] {
            // SAFETY: each non-null pointer is a fresh at::Tensor* the shim
            // allocated for us; tch frees it on drop.
            v.push((!p.is_null()).then(|| unsafe { Tensor::from_ptr(*p as *mut _) }));
        }
        at += c;
        result.push(v);
    }
    Ok(result)
}
