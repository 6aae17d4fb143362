//! A user's own classifier as a program exported with `torch.export`: the
//! `.pt2` archive is read without running any of its code (see
//! [`archive`]), its graph of ATen operators is checked against the list
//! amun runs ([`SUPPORTED`]) and against libtorch's own operator schemas,
//! then interpreted: each node calls its operator through libtorch's
//! dispatcher, as PyTorch eager does, over the model's parameters and
//! buffers, which live in the classifier's `VarStore` under the model's own
//! `state_dict()` names. So every part of amun (SGD, masks, checkpoints,
//! fingerprints) works on it unchanged.
//!
//! The graph's mode is not the model's: BatchNorm and dropout follow the
//! `train` flag of each forward pass (running statistics and
//! `num_batches_tracked` are updated in train mode only, as in PyTorch;
//! `momentum=None` keeps a cumulative average), and stochastic depth
//! exported in train mode (`bernoulli_`) is the identity in eval mode, as in
//! PyTorch. A tensor the state dict holds under two names (a module
//! registered twice) is one variable.
mod archive;
mod compile;
mod ops;
mod schema;

pub use archive::{AMUN_EXPORT, write_with_weights, written_by_amun};
pub use ops::SUPPORTED;

use crate::error::{Error, Result};
use compile::compile;
use ops::{OpInfo, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tch::{Device, Kind, Tensor, nn};

/// How a new model of an exported architecture starts (a retrain, a
/// reference model, `amun train`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProgramInit {
    /// PyTorch's default initialisation of each layer, drawn from the run's
    /// seed: convolutions and linear layers U(±1/√fan_in) (weight and
    /// bias), normalisation weights 1 and biases 0, running statistics 0
    /// and 1. A parameter no such layer uses (a class token, a position
    /// embedding) has no default: such a model needs `Weights`.
    #[default]
    Pytorch,
    /// The weights of an untrained copy of the model (a `.pt2` exported
    /// before training, or its `state_dict()` as `.pt`/`.safetensors`):
    /// the model's own initialisation, the same for every seed.
    Weights { file: PathBuf, sha256: String },
}

/// An exported program as a model spec records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramRef {
    /// The `.pt2` file (absolute).
    pub file: PathBuf,
    /// Its sha256: a spec is only ever rebuilt from the very same graph.
    pub sha256: String,
    #[serde(default)]
    pub init: ProgramInit,
}

/// What a parameter or buffer is to PyTorch's default initialisation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// Convolution or linear weight/bias: U(±1/√fan_in).
    FanIn(i64),
    One,
    Zero,
    Unknown,
}

/// A parameter or persistent buffer: an entry of the model's `state_dict()`.
#[derive(Debug, Clone)]
pub struct Weight {
    pub name: String,
    pub kind: Kind,
    pub size: Vec<i64>,
    /// A parameter that requires grad (buffers and frozen parameters don't).
    pub trainable: bool,
    /// Another name of the same tensor (a module registered twice): the
    /// index of the entry holding it. The two names are one variable.
    pub alias_of: Option<usize>,
    slot: usize,
    role: Role,
}

/// A tensor the graph reads but nobody trains or saves in a state dict
/// (lifted constants, non-persistent buffers), kept as contiguous bytes.
#[derive(Debug)]
struct Constant {
    slot: usize,
    kind: Kind,
    size: Vec<i64>,
    bytes: Vec<u8>,
}

/// Where an argument's value comes from when the node runs.
#[derive(Debug)]
enum Src {
    Default,
    None,
    Tensor(usize),
    Tensors(Vec<usize>),
    OptTensors(Vec<Option<usize>>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A symbolic int, float or bool computed by an earlier node.
    Sym(usize),
    Ints(Vec<IntSrc>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
    Str(CString),
    ScalarType(i64),
    Layout(i64),
    MemoryFormat(i64),
    /// The device the model runs on (whatever the graph was exported on).
    Device,
}

#[derive(Debug)]
enum IntSrc {
    Const(i64),
    Sym(usize),
}

/// Nodes whose arguments follow amun's mode.
#[derive(Debug, Clone, Copy)]
enum Special {
    None,
    /// `batch_norm`: `training` is the forward's flag (or batch statistics
    /// when there are no running ones, as in PyTorch).
    BatchNorm {
        training: usize,
        running_mean: usize,
        /// `momentum=None` (a cumulative moving average): the position of
        /// the `momentum` argument and the slot of the module's
        /// `num_batches_tracked`; in train mode momentum is
        /// 1/num_batches_tracked after its increment, as in PyTorch.
        cumulative: Option<(usize, usize)>,
    },
    /// `dropout` and kin: `train` is the forward's flag.
    Dropout {
        train: usize,
    },
    /// `bernoulli_(p)`: sampled in train mode; in eval mode the mask that
    /// makes the block the identity, as PyTorch's eval does: `p` when the
    /// graph divides by `p` (the expectation of a scaled mask), 1 when it
    /// does not (timm's `DropPath(scale_by_keep=False)`).
    Bernoulli {
        p: usize,
        scaled: bool,
    },
    /// `scaled_dot_product_attention`: its `dropout_p` is the graph's in
    /// train mode and 0 in eval (a train-mode export records the module's
    /// attention dropout as a constant).
    AttentionDropout {
        p: usize,
    },
    /// `instance_norm`: `use_input_stats` as `training` of batch_norm.
    InstanceNorm {
        use_input_stats: usize,
        running_mean: usize,
    },
}

#[derive(Debug, Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    FloorDiv,
    TrueDiv,
    Mod,
    Neg,
    Max,
    Min,
    ToFloat,
    ToInt,
    Ceil,
    Floor,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Not,
}

#[derive(Debug)]
enum Step {
    Call {
        node: String,
        op: Arc<OpInfo>,
        args: Vec<Src>,
        /// Per schema return, the slot of each returned tensor.
        outs: Vec<Vec<Option<usize>>>,
        special: Special,
    },
    Size {
        x: usize,
        dim: Option<i64>,
        out: usize,
    },
    Stride {
        x: usize,
        dim: i64,
        out: usize,
    },
    Arith {
        f: Arith,
        a: Src,
        b: Option<Src>,
        out: usize,
    },
    /// A node that computes nothing amun needs (an assertion, the
    /// `num_batches_tracked` increment amun does itself); its output, if
    /// any, is its first input.
    Skip {
        alias: Option<(usize, usize)>,
    },
}

#[derive(Debug)]
enum Val {
    Empty,
    T(Tensor),
    I(i64),
    F(f64),
    B(bool),
}

/// A checked, ready-to-run exported program (no weights: those live in
/// each model's `VarStore`).
#[derive(Debug)]
pub struct Program {
    pub file: PathBuf,
    pub sha256: String,
    /// The state dict in the graph's order.
    pub weights: Vec<Weight>,
    constants: Vec<Constant>,
    nslots: usize,
    input: usize,
    output: usize,
    /// The graph writes into its input (an in-place op on it): the input is
    /// copied first, so the caller's batch stays intact.
    input_written: bool,
    steps: Vec<Step>,
    /// Slots whose last reader is step i, dropped after it (intermediate
    /// values do not outlive their use).
    frees: Vec<Vec<usize>>,
    /// `num_batches_tracked` buffers (indices into `weights`) that each
    /// train-mode forward increments, one per BatchNorm call.
    counters: Vec<usize>,
    /// The input's sizes as exported: `None` where symbolic (the batch).
    pub input_sizes: Vec<Option<i64>>,
    /// The input's name (the forward's argument), for messages.
    pub input_name: String,
    /// The number of classes its output has as exported, if stated.
    pub classes: Option<i64>,
    /// The ATen operators the graph uses.
    pub ops: BTreeSet<String>,
}

// SAFETY: a Program holds no tensors (constants are bytes) and no interior
// mutability; OpInfo handles are process-wide and thread-safe.
unsafe impl Sync for Program {}

/// Reads and checks the program at `path`, once per process and file
/// content: later calls with the same file and sha256 share it. With
/// `expect`, the file's sha256 must be that one.
pub fn load(path: &Path, expect: Option<&str>) -> Result<Arc<Program>> {
    type Cache = Mutex<HashMap<(PathBuf, String), Arc<Program>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(want) = expect
        && let Some(p) = cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(path.to_path_buf(), want.to_string()))
    {
        return Ok(p.clone());
    }
    if !path.exists() {
        return Err(Error::format(
            path,
            match expect {
                Some(sha) => format!(
                    "no such file: the graph (an exported program, sha256 {}) the model was \
                     made from; put it back there, or beside the checkpoint",
                    sha.get(..12).unwrap_or(sha)
                ),
                None => "no such file".to_string(),
            },
        ));
    }
    let sha = crate::data::sha256_file(path)?;
    if let Some(want) = expect
        && want != sha
    {
        return Err(Error::format(
            path,
            format!(
                "sha256 {sha}, but the model was made from the graph with sha256 {want}: this \
                 file was changed or replaced since; put the original back"
            ),
        ));
    }
    let p = Arc::new(compile(path, sha.clone())?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((path.to_path_buf(), sha), p.clone());
    Ok(p)
}

impl Program {
    /// Logits for `x` with the model's `weights` (in [`Program::weights`]
    /// order) and `constants` (on `x`'s device).
    fn run(
        &self,
        x: &Tensor,
        train: bool,
        weights: &[Tensor],
        constants: &[Tensor],
    ) -> std::result::Result<Tensor, String> {
        let mut env: Vec<Val> = (0..self.nslots).map(|_| Val::Empty).collect();
        for (w, t) in self.weights.iter().zip(weights) {
            env[w.slot] = Val::T(t.shallow_clone());
        }
        for (k, t) in self.constants.iter().zip(constants) {
            env[k.slot] = Val::T(t.shallow_clone());
        }
        env[self.input] = Val::T(if self.input_written {
            x.copy()
        } else {
            x.shallow_clone()
        });
        if train {
            tch::no_grad(|| {
                for &c in &self.counters {
                    let _ = weights[c].shallow_clone().f_add_scalar_(1);
                }
            });
        }
        let device = match x.device() {
            Device::Cuda(i) => (1, i as i64),
            _ => (0, -1),
        };
        for (i, step) in self.steps.iter().enumerate() {
            self.exec(step, &mut env, train, device)?;
            for &s in &self.frees[i] {
                env[s] = Val::Empty;
            }
        }
        match std::mem::replace(&mut env[self.output], Val::Empty) {
            Val::T(t) => Ok(t),
            _ => Err("the output is not a tensor".into()),
        }
    }

    fn exec(
        &self,
        step: &Step,
        env: &mut [Val],
        train: bool,
        device: (i64, i64),
    ) -> std::result::Result<(), String> {
        match step {
            Step::Size { x, dim, out } => {
                let t = tensor_at(env, *x)?;
                env[*out] = Val::I(match dim {
                    None => t.numel() as i64,
                    Some(d) => {
                        let sz = t.size();
                        let d = if *d < 0 { *d + sz.len() as i64 } else { *d };
                        *sz.get(d as usize)
                            .ok_or("sym_size: dimension out of range")?
                    }
                });
            }
            Step::Stride { x, dim, out } => {
                let t = tensor_at(env, *x)?;
                let st = t.stride();
                let d = if *dim < 0 {
                    *dim + st.len() as i64
                } else {
                    *dim
                };
                env[*out] = Val::I(
                    *st.get(d as usize)
                        .ok_or("sym_stride: dimension out of range")?,
                );
            }
            Step::Arith { f, a, b, out } => {
                let a = number(env, a)?;
                let b = match b {
                    Some(b) => Some(number(env, b)?),
                    None => None,
                };
                env[*out] = arith(*f, a, b)?;
            }
            Step::Skip { alias } => {
                if let Some((from, to)) = alias {
                    env[*to] = Val::T(tensor_at(env, *from)?);
                }
            }
            Step::Call {
                node,
                op,
                args,
                outs,
                special,
            } => exec_call(node, op, args, outs, *special, env, train, device)?,
        }
        Ok(())
    }

    /// Reads the archive's own weights (the trained model's state dict).
    pub fn read_weights(&self) -> Result<HashMap<String, Tensor>> {
        read_state_dict(&self.file)
    }

    /// The weights that have no PyTorch default initialisation (used by no
    /// convolution, linear or normalisation layer).
    pub fn without_default_init(&self) -> Vec<String> {
        self.weights
            .iter()
            .filter(|w| w.role == Role::Unknown && w.alias_of.is_none())
            .map(|w| w.name.clone())
            .collect()
    }
}

/// The tensor in slot `s` (a shallow clone).
fn tensor_at(env: &[Val], s: usize) -> std::result::Result<Tensor, String> {
    match &env[s] {
        Val::T(t) => Ok(t.shallow_clone()),
        _ => Err("a tensor operand is not a tensor".into()),
    }
}

/// An operand of symbolic arithmetic: a constant or a computed number.
fn number(env: &[Val], src: &Src) -> std::result::Result<Val, String> {
    Ok(match src {
        Src::Int(v) => Val::I(*v),
        Src::Float(v) => Val::F(*v),
        Src::Bool(v) => Val::B(*v),
        Src::Sym(s) => match &env[*s] {
            Val::I(v) => Val::I(*v),
            Val::F(v) => Val::F(*v),
            Val::B(v) => Val::B(*v),
            _ => return Err("a symbolic operand is not a number".into()),
        },
        _ => return Err("an operand is not a number".into()),
    })
}

/// Runs one call: its arguments from `env`, those that follow amun's mode
/// set, the operator through libtorch's dispatcher, its outputs into `env`.
#[allow(clippy::too_many_arguments)]
fn exec_call(
    node: &str,
    op: &OpInfo,
    args: &[Src],
    outs: &[Vec<Option<usize>>],
    special: Special,
    env: &mut [Val],
    train: bool,
    device: (i64, i64),
) -> std::result::Result<(), String> {
    let fail = |e: String| format!("node '{node}' (aten.{}): {e}", op.name);
    // Owned temporaries the argument list borrows.
    let held: Vec<Option<Tensor>> = args
        .iter()
        .map(|a| match a {
            Src::Tensor(s) => tensor_at(env, *s).ok(),
            _ => None,
        })
        .collect();
    let lists: Vec<Vec<Tensor>> = args
        .iter()
        .map(|a| match a {
            Src::Tensors(l) => l.iter().filter_map(|s| tensor_at(env, *s).ok()).collect(),
            Src::OptTensors(l) => l
                .iter()
                .flatten()
                .filter_map(|s| tensor_at(env, *s).ok())
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut vals = call_values(args, &held, &lists, env, device, &fail)?;
    if let Some(mask) = follow_mode(special, &mut vals, env, train, &fail)? {
        if let Some(Some(s)) = outs.first().and_then(|o| o.first()) {
            env[*s] = Val::T(mask);
        }
        return Ok(());
    }
    let returned = ops::call(op, &vals).map_err(fail)?;
    drop(vals);
    for (slots, tensors) in outs.iter().zip(returned) {
        if slots.len() != tensors.len() && !slots.is_empty() {
            return Err(fail(format!(
                "returned {} tensors where the graph expects {}",
                tensors.len(),
                slots.len()
            )));
        }
        for (s, t) in slots.iter().zip(tensors) {
            if let (Some(s), Some(t)) = (s, t) {
                env[*s] = Val::T(t);
            }
        }
    }
    Ok(())
}

/// A call's arguments as the dispatcher takes them; tensors borrowed from
/// `held` (one per argument) and `lists` (one list per argument).
fn call_values<'a>(
    args: &'a [Src],
    held: &'a [Option<Tensor>],
    lists: &'a [Vec<Tensor>],
    env: &[Val],
    device: (i64, i64),
    fail: &dyn Fn(String) -> String,
) -> std::result::Result<Vec<Value<'a>>, String> {
    let mut vals: Vec<Value> = Vec::with_capacity(args.len());
    for (k, a) in args.iter().enumerate() {
        vals.push(match a {
            Src::Default => Value::Default,
            Src::None => Value::None,
            Src::Tensor(_) => Value::Tensor(
                held[k]
                    .as_ref()
                    .ok_or_else(|| fail("a tensor operand is not a tensor".into()))?,
            ),
            Src::Tensors(l) => {
                if lists[k].len() != l.len() {
                    return Err(fail("a list operand holds a non-tensor".into()));
                }
                Value::Tensors(lists[k].iter().collect())
            }
            Src::OptTensors(l) => {
                let mut it = lists[k].iter();
                Value::OptTensors(l.iter().map(|s| s.and_then(|_| it.next())).collect())
            }
            Src::Int(v) => Value::Int(*v),
            Src::Float(v) => Value::Float(*v),
            Src::Bool(v) => Value::Bool(*v),
            Src::Sym(s) => match &env[*s] {
                Val::I(v) => Value::Int(*v),
                Val::F(v) => Value::Float(*v),
                Val::B(v) => Value::Bool(*v),
                _ => return Err(fail("a symbolic operand is not a number".into())),
            },
            Src::Ints(l) => Value::Ints(
                l.iter()
                    .map(|i| match i {
                        IntSrc::Const(v) => Ok(*v),
                        IntSrc::Sym(s) => match &env[*s] {
                            Val::I(v) => Ok(*v),
                            _ => Err(fail("a size is not an integer".into())),
                        },
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            ),
            Src::Floats(v) => Value::Floats(v.clone()),
            Src::Bools(v) => Value::Bools(v.clone()),
            Src::Str(s) => Value::Str(s),
            Src::ScalarType(v) => Value::ScalarType(*v),
            Src::Layout(v) => Value::Layout(*v),
            Src::MemoryFormat(v) => Value::MemoryFormat(*v),
            Src::Device => Value::Device(device.0, device.1),
        });
    }
    Ok(vals)
}

/// Sets the arguments of a call that follow amun's mode (BatchNorm's
/// `training`, dropout's `train`, …). Stochastic depth in eval mode is not
/// called: the mask it returns instead is the result.
fn follow_mode(
    special: Special,
    vals: &mut [Value],
    env: &[Val],
    train: bool,
    fail: &dyn Fn(String) -> String,
) -> std::result::Result<Option<Tensor>, String> {
    match special {
        Special::BatchNorm {
            training,
            running_mean,
            cumulative,
        } => {
            let no_stats = matches!(vals[running_mean], Value::None);
            vals[training] = Value::Bool(train || no_stats);
            if let (true, Some((m, counter))) = (train, cumulative) {
                // The counter was incremented before the pass.
                let n = tensor_at(env, counter)?
                    .f_double_value(&[])
                    .map_err(|e| fail(torch_msg(&e)))?;
                vals[m] = Value::Float(1.0 / n.max(1.0));
            }
        }
        Special::Dropout { train: at } => vals[at] = Value::Bool(train),
        Special::AttentionDropout { p } if !train => vals[p] = Value::Float(0.0),
        Special::InstanceNorm {
            use_input_stats,
            running_mean,
        } => {
            let no_stats = matches!(vals[running_mean], Value::None);
            vals[use_input_stats] = Value::Bool(train || no_stats);
        }
        Special::Bernoulli { p, scaled } if !train => {
            // Stochastic depth in eval mode: the identity PyTorch's eval
            // gives (`x * p / p` when scaled).
            let p = match vals[p] {
                _ if !scaled => 1.0,
                Value::Float(v) => v,
                Value::Int(v) => v as f64,
                _ => 0.5,
            };
            let Value::Tensor(t) = vals[0] else {
                return Err(fail("bernoulli_ of a non-tensor".into()));
            };
            let r =
                tch::no_grad(|| t.shallow_clone().f_fill_(p)).map_err(|e| fail(torch_msg(&e)))?;
            return Ok(Some(r));
        }
        _ => {}
    }
    Ok(None)
}

fn arith(f: Arith, a: Val, b: Option<Val>) -> std::result::Result<Val, String> {
    let fl = |v: &Val| match v {
        Val::I(i) => *i as f64,
        Val::F(x) => *x,
        Val::B(b) => f64::from(u8::from(*b)),
        _ => f64::NAN,
    };
    let both_int = matches!((&a, &b), (Val::I(_), Some(Val::I(_))));
    let (x, y) = (fl(&a), b.as_ref().map(fl).unwrap_or(0.0));
    let (i, j) = match (&a, &b) {
        (Val::I(i), Some(Val::I(j))) => (*i, *j),
        (Val::I(i), None) => (*i, 0),
        _ => (0, 0),
    };
    let num = |v: f64, iv: i64| if both_int { Val::I(iv) } else { Val::F(v) };
    Ok(match f {
        Arith::Add => num(x + y, i.wrapping_add(j)),
        Arith::Sub => num(x - y, i.wrapping_sub(j)),
        Arith::Mul => num(x * y, i.wrapping_mul(j)),
        Arith::FloorDiv => {
            if both_int {
                if j == 0 {
                    return Err("integer division by zero".into());
                }
                Val::I(i.div_euclid(j) - i64::from(j < 0 && i.rem_euclid(j) != 0))
            } else {
                Val::F((x / y).floor())
            }
        }
        Arith::Mod => {
            if both_int {
                if j == 0 {
                    return Err("integer modulo by zero".into());
                }
                // Python's %: the sign of the divisor.
                Val::I(((i % j) + j) % j)
            } else {
                Val::F(x - y * (x / y).floor())
            }
        }
        Arith::TrueDiv => Val::F(x / y),
        Arith::Neg => match a {
            Val::I(i) => Val::I(-i),
            _ => Val::F(-x),
        },
        Arith::Max => num(x.max(y), i.max(j)),
        Arith::Min => num(x.min(y), i.min(j)),
        Arith::ToFloat => Val::F(x),
        Arith::ToInt => Val::I(x.trunc() as i64),
        Arith::Ceil => Val::I(x.ceil() as i64),
        Arith::Floor => Val::I(x.floor() as i64),
        Arith::Eq => Val::B(x == y),
        Arith::Ne => Val::B(x != y),
        Arith::Lt => Val::B(x < y),
        Arith::Le => Val::B(x <= y),
        Arith::Gt => Val::B(x > y),
        Arith::Ge => Val::B(x >= y),
        Arith::Not => Val::B(x == 0.0),
    })
}

/// A libtorch error's message without the C++ backtrace libtorch appends.
pub(crate) fn torch_msg(e: &tch::TchError) -> String {
    let s = e.to_string();
    let s = s.split("\nException raised from").next().unwrap_or(&s);
    s.trim_start_matches("Internal torch error: ").to_string()
}

/// The state dict of the `.pt2` at `path` (its weights config's tensors),
/// on the CPU.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let mut ar = archive::Archive::open(path)?;
    let cfg = ar.weights_config()?;
    let mut storages = HashMap::new();
    let mut out = HashMap::new();
    for (name, meta) in &cfg.config {
        let t = ar.tensor(archive::WEIGHTS_DIR, name, meta, &mut storages)?;
        out.insert(name.clone(), t);
    }
    Ok(out)
}

/// An exported program bound to one model's variables.
pub struct ExportedNet {
    program: Arc<Program>,
    weights: Vec<Tensor>,
    constants: Vec<Tensor>,
}

impl std::fmt::Debug for ExportedNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExportedNet({})", self.program.file.display())
    }
}

impl ExportedNet {
    /// Makes the program's parameters and buffers variables of `root`
    /// (under their state-dict names), zero-filled, and its constants. A
    /// second name of one tensor is a variable sharing its storage (not
    /// trained itself: it sees every update of the one the graph reads).
    pub fn new(root: &nn::Path, program: Arc<Program>) -> Result<ExportedNet> {
        let device = root.device();
        let mut weights: Vec<Option<Tensor>> = program.weights.iter().map(|_| None).collect();
        let order = program.weights.iter().enumerate();
        let (aliases, primaries): (Vec<_>, Vec<_>) = order.partition(|(_, w)| w.alias_of.is_some());
        for (i, w) in primaries.into_iter().chain(aliases) {
            let (t, trainable) = match w.alias_of.and_then(|a| weights[a].as_ref()) {
                Some(primary) => (primary.detach(), false),
                None => (
                    Tensor::f_zeros(&w.size, (w.kind, device))
                        .map_err(|e| Error::format(&program.file, format!("{}: {e}", w.name)))?,
                    w.trainable,
                ),
            };
            let parts: Vec<&str> = w.name.split('.').collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(Error::format(
                    &program.file,
                    format!("'{}' is not a state-dict name", w.name),
                ));
            }
            let (last, path) = parts.split_last().expect("split gives one part at least");
            let mut p = root.clone();
            for part in path {
                p = &p / *part;
            }
            let var = p.add(last, t, trainable);
            // The graph reads the primary (where gradients go) under both names.
            weights[i] = Some(match w.alias_of.and_then(|a| weights[a].as_ref()) {
                Some(primary) => primary.shallow_clone(),
                None => var,
            });
        }
        let weights: Vec<Tensor> = weights.into_iter().flatten().collect();
        let mut constants = Vec::with_capacity(program.constants.len());
        for k in &program.constants {
            let t = if k.bytes.is_empty() {
                Tensor::f_zeros(&k.size, (k.kind, device))
            } else {
                Tensor::f_from_data_size(&k.bytes, &k.size, k.kind)
                    .and_then(|t| t.f_to_device(device))
            }
            .map_err(|e| Error::format(&program.file, torch_msg(&e)))?;
            constants.push(t);
        }
        Ok(ExportedNet {
            program,
            weights,
            constants,
        })
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// PyTorch's default initialisation of each layer's weights; draws
    /// from libtorch's generator (seeded by the caller).
    pub fn init_pytorch(&self) -> Result<()> {
        let missing = self.program.without_default_init();
        if !missing.is_empty() {
            return Err(Error::format(
                &self.program.file,
                format!(
                    "{} parameter(s) have no PyTorch default initialisation (no convolution, \
                     linear or normalisation layer uses them): {}{}; give the weights of the \
                     untrained model (--init FILE: a .pt2 exported before training, or its \
                     state_dict as .pt/.safetensors)",
                    missing.len(),
                    missing
                        .iter()
                        .take(6)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if missing.len() > 6 { ", …" } else { "" }
                ),
            ));
        }
        tch::no_grad(|| -> Result<()> {
            for (w, t) in self.program.weights.iter().zip(&self.weights) {
                if w.alias_of.is_some() {
                    continue;
                }
                let mut t = t.shallow_clone();
                let r = match w.role {
                    Role::FanIn(n) => {
                        let b = if n > 0 { 1.0 / (n as f64).sqrt() } else { 0.0 };
                        t.f_uniform_(-b, b)
                    }
                    Role::One => t.f_fill_(1.0),
                    Role::Zero | Role::Unknown => t.f_zero_(),
                };
                r.map_err(|e| Error::format(&self.program.file, format!("{}: {e}", w.name)))
                    .map(drop)?;
            }
            Ok(())
        })
    }

    /// Logits, or the node that failed and why (and a graph whose output
    /// is not one row per image: never logits taken for a batch's).
    pub fn try_forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let y = self
            .program
            .run(xs, train, &self.weights, &self.constants)
            .map_err(|e| Error::format(&self.program.file, e))?;
        let b = xs.size().first().copied();
        if y.dim() != 2 || y.size().first().copied() != b {
            return Err(Error::format(
                &self.program.file,
                format!(
                    "a batch of {} image(s) gave {:?} outputs, not one row of logits per image",
                    b.unwrap_or(0),
                    y.size()
                ),
            ));
        }
        Ok(y)
    }
}

impl nn::ModuleT for ExportedNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // Every node was checked and run once when the model was opened
        // (see `model::open`); a failure here is a libtorch fault.
        self.try_forward(xs, train)
            .unwrap_or_else(|e| panic!("running the exported program: {e}"))
    }
}
