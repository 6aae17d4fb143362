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
mod ops;
mod schema;

pub use archive::write_with_weights;
pub use ops::SUPPORTED;

use crate::error::{Error, Result};
use ops::{OpInfo, Value};
use schema::{Argument, InputSpec, OptionalTensorArgument, OutputSpec, SymIntArgument};
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

/// The target of a node as amun names operators: `conv2d.default` for
/// `torch.ops.aten.conv2d.default`; `None` for anything but ATen.
fn aten_name(target: &str) -> Option<&str> {
    target.strip_prefix("torch.ops.aten.")
}

fn arith_of(target: &str) -> Option<Arith> {
    Some(match target {
        "_operator.add" => Arith::Add,
        "_operator.sub" => Arith::Sub,
        "_operator.mul" => Arith::Mul,
        "_operator.floordiv" => Arith::FloorDiv,
        "_operator.truediv" => Arith::TrueDiv,
        "_operator.mod" => Arith::Mod,
        "_operator.neg" => Arith::Neg,
        "_operator.eq" => Arith::Eq,
        "_operator.ne" => Arith::Ne,
        "_operator.lt" => Arith::Lt,
        "_operator.le" => Arith::Le,
        "_operator.gt" => Arith::Gt,
        "_operator.ge" => Arith::Ge,
        "torch.sym_max" => Arith::Max,
        "torch.sym_min" => Arith::Min,
        "torch.sym_float" => Arith::ToFloat,
        "torch.sym_int" => Arith::ToInt,
        "torch.sym_not" => Arith::Not,
        "math.ceil" => Arith::Ceil,
        "math.floor" => Arith::Floor,
        _ => return None,
    })
}

/// The supported list as one line, for errors.
fn supported_list() -> String {
    SUPPORTED.join(", ")
}

struct Compiler<'a> {
    path: &'a Path,
    slots: HashMap<String, usize>,
}

impl Compiler<'_> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(self.path, msg)
    }

    /// The slot of a value the graph defines (a new one for a new name).
    fn def(&mut self, name: &str) -> usize {
        let n = self.slots.len();
        *self.slots.entry(name.to_string()).or_insert(n)
    }

    /// The slot of a value read by a node: it must be defined before.
    fn get(&self, name: &str, node: &str) -> Result<usize> {
        self.slots.get(name).copied().ok_or_else(|| {
            self.err(format!(
                "node '{node}' reads '{name}', which no earlier node or input defines"
            ))
        })
    }

    fn sym(&self, a: &SymIntArgument, node: &str) -> Result<IntSrc> {
        Ok(match a {
            SymIntArgument::AsInt(v) => IntSrc::Const(*v),
            SymIntArgument::AsName(n) => IntSrc::Sym(self.get(n, node)?),
        })
    }

    /// An argument as the node states it, for a schema argument of type `ty`.
    fn src(&self, a: &Argument, ty: &str, node: &str, arg: &str) -> Result<Src> {
        let ty = ty.trim_end_matches('?');
        if ty == "Device" {
            return Ok(Src::Device);
        }
        Ok(match a {
            Argument::AsNone(_) => Src::None,
            Argument::AsTensor(t) => Src::Tensor(self.get(&t.name, node)?),
            Argument::AsOptionalTensor(OptionalTensorArgument::AsTensor(t)) => {
                Src::Tensor(self.get(&t.name, node)?)
            }
            Argument::AsOptionalTensor(OptionalTensorArgument::AsNone(_)) => Src::None,
            Argument::AsTensors(v) => {
                let slots = v
                    .iter()
                    .map(|t| self.get(&t.name, node))
                    .collect::<Result<Vec<_>>>()?;
                if ty.contains("Tensor?") {
                    Src::OptTensors(slots.into_iter().map(Some).collect())
                } else {
                    Src::Tensors(slots)
                }
            }
            Argument::AsOptionalTensors(v) => Src::OptTensors(
                v.iter()
                    .map(|o| match o {
                        OptionalTensorArgument::AsTensor(t) => self.get(&t.name, node).map(Some),
                        OptionalTensorArgument::AsNone(_) => Ok(None),
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Argument::AsInt(v) => Src::Int(*v),
            Argument::AsFloat(v) => Src::Float(*v),
            Argument::AsBool(v) => Src::Bool(*v),
            Argument::AsInts(v) => Src::Ints(v.iter().map(|i| IntSrc::Const(*i)).collect()),
            Argument::AsFloats(v) => Src::Floats(v.clone()),
            Argument::AsBools(v) => Src::Bools(v.clone()),
            Argument::AsSymInt(s) => match self.sym(s, node)? {
                IntSrc::Const(v) => Src::Int(v),
                IntSrc::Sym(s) => Src::Sym(s),
            },
            Argument::AsSymInts(v) => Src::Ints(
                v.iter()
                    .map(|s| self.sym(s, node))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Argument::AsSymFloat(schema::SymFloatArgument::AsFloat(v)) => Src::Float(*v),
            Argument::AsSymFloat(schema::SymFloatArgument::AsName(n)) => {
                Src::Sym(self.get(n, node)?)
            }
            Argument::AsSymBool(schema::SymBoolArgument::AsBool(v)) => Src::Bool(*v),
            Argument::AsSymBool(schema::SymBoolArgument::AsName(n)) => Src::Sym(self.get(n, node)?),
            Argument::AsString(s) => Src::Str(
                CString::new(s.as_str())
                    .map_err(|_| self.err(format!("node '{node}': a string with a NUL byte")))?,
            ),
            Argument::AsScalarType(c) => {
                Src::ScalarType(schema::c10_scalar_type(*c).ok_or_else(|| {
                    self.err(format!(
                        "node '{node}': unsupported dtype code {c} for '{arg}'"
                    ))
                })?)
            }
            Argument::AsMemoryFormat(m) => Src::MemoryFormat(match m {
                1 => 0,
                4 => 1,
                2 => 2,
                3 => 3,
                _ => {
                    return Err(self.err(format!("node '{node}': unknown memory format {m}")));
                }
            }),
            Argument::AsLayout(7) => Src::Layout(0),
            Argument::AsLayout(l) => {
                return Err(self.err(format!(
                    "node '{node}': layout {l} (sparse or mkldnn); amun runs dense tensors only"
                )));
            }
            Argument::AsDevice(_) => Src::Device,
            other => {
                return Err(self.err(format!(
                    "node '{node}': argument '{arg}' is {}, which amun does not run (control \
                     flow, custom objects and other higher-order constructs are not supported)",
                    other.kind()
                )));
            }
        })
    }
}

fn compile(path: &Path, sha256: String) -> Result<Program> {
    let mut ar = archive::Archive::open(path)?;
    let ep = ar.program()?;
    let wcfg = ar.weights_config()?;
    let ccfg = ar.constants_config()?;
    if let Some(v) = &ep.schema_version
        && v.major != 8
    {
        return Err(Error::format(
            path,
            format!(
                "export schema version {}.{}; amun reads version 8 (PyTorch 2.6 to 2.11): \
                 export with torch 2.11",
                v.major, v.minor
            ),
        ));
    }
    let gm = &ep.graph_module;
    let g = &gm.graph;
    let mut c = Compiler {
        path,
        slots: HashMap::new(),
    };

    // A decomposed graph first: its operators are not the ones amun runs.
    if !ep.verifiers.is_empty() && !ep.verifiers.iter().any(|v| v == "TRAINING") {
        return Err(Error::format(
            path,
            format!(
                "a decomposed graph (verifier {}): amun runs the graph torch.export.export \
                 returns, before run_decompositions (its BatchNorm and dropout follow amun's \
                 train/eval mode; decomposed ones are fixed to the mode of export)",
                ep.verifiers.join(", ")
            ),
        ));
    }

    // Every operator next: an unknown one is refused before anything else.
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for n in &g.nodes {
        match aten_name(&n.target) {
            Some(op) if SUPPORTED.contains(&op) => {
                used.insert(op.to_string());
            }
            Some(op) => {
                unknown.insert(format!("aten.{op}"));
            }
            None if arith_of(&n.target).is_some() => {}
            None => {
                unknown.insert(n.target.clone());
            }
        }
    }
    if !unknown.is_empty() {
        return Err(Error::format(
            path,
            format!(
                "the graph uses {} operator(s) amun does not run: {}. Supported (aten.): {}",
                unknown.len(),
                unknown.into_iter().collect::<Vec<_>>().join(", "),
                supported_list()
            ),
        ));
    }

    // The signature: parameters and buffers (the state dict), constants, one
    // image input; one logits output.
    let sig = &gm.signature;
    if sig.input_specs.len() != g.inputs.len() {
        return Err(c.err(format!(
            "the signature lists {} inputs, the graph has {}",
            sig.input_specs.len(),
            g.inputs.len()
        )));
    }
    let mut weights = Vec::new();
    let mut constants = Vec::new();
    let mut user_inputs = Vec::new();
    let mut storages = HashMap::new();
    let mut const_names = Vec::new();
    for spec in &sig.input_specs {
        match spec {
            InputSpec::Parameter(p) => {
                let slot = c.def(&p.arg.name);
                weights.push((p.parameter_name.clone(), slot, true));
            }
            InputSpec::Buffer(b) if b.persistent => {
                let slot = c.def(&b.arg.name);
                weights.push((b.buffer_name.clone(), slot, false));
            }
            InputSpec::Buffer(b) => {
                let slot = c.def(&b.arg.name);
                const_names.push((b.buffer_name.clone(), slot));
            }
            InputSpec::TensorConstant(t) => {
                let slot = c.def(&t.arg.name);
                const_names.push((t.tensor_constant_name.clone(), slot));
            }
            InputSpec::UserInput(u) => match &u.arg {
                Argument::AsTensor(t) => {
                    let slot = c.def(&t.name);
                    user_inputs.push((t.name.clone(), slot));
                }
                other => {
                    return Err(c.err(format!(
                        "not an image classifier: an input that is {} rather than an image \
                         tensor; amun runs models of one N×C×H×W input",
                        other.kind()
                    )));
                }
            },
            InputSpec::CustomObj(_) | InputSpec::Token(_) | InputSpec::ConstantInput(_) => {
                return Err(c.err(
                    "the graph takes a custom object, an effect token or a constant input; \
                     amun runs models of one N×C×H×W input",
                ));
            }
        }
    }
    let (input_name, input) = match user_inputs.as_slice() {
        [one] => one.clone(),
        v => {
            return Err(c.err(format!(
                "not an image classifier: {} tensor inputs; amun runs models of one N×C×H×W \
                 input",
                v.len()
            )));
        }
    };
    let meta = g
        .tensor_values
        .get(&input_name)
        .ok_or_else(|| c.err(format!("no tensor metadata for the input '{input_name}'")))?;
    let input_sizes: Vec<Option<i64>> = meta.sizes.iter().map(|s| s.as_int()).collect();
    if input_sizes.len() != 4 || meta.dtype != 7 {
        return Err(c.err(format!(
            "not an image classifier: its input is a {}-dimensional {} tensor; amun runs models \
             of one N×C×H×W float32 input",
            input_sizes.len(),
            schema::kind_of(meta.dtype).map_or("other".into(), |k| format!("{k:?}"))
        )));
    }
    let mut user_outputs = Vec::new();
    for o in &sig.output_specs {
        match o {
            OutputSpec::UserOutput(u) => user_outputs.push(&u.arg),
            other => {
                return Err(c.err(format!(
                    "the signature has a {} output: amun runs the graph torch.export.export \
                     returns (one logits output, parameters and buffers updated in place)",
                    other.kind()
                )));
            }
        }
    }
    let out_name = match user_outputs.as_slice() {
        [Argument::AsTensor(t)] => t.name.clone(),
        v => {
            return Err(c.err(format!(
                "not a classifier: {} outputs{}; amun runs models whose forward returns one \
                 N×K logits tensor (a model with auxiliary outputs in train mode: export it in \
                 eval mode, or without them)",
                v.len(),
                v.first()
                    .map(|a| format!(" (the first is {})", a.kind()))
                    .unwrap_or_default()
            )));
        }
    };
    let classes = g
        .tensor_values
        .get(&out_name)
        .and_then(|m| m.sizes.get(1))
        .and_then(|s| s.as_int());
    if let Some(m) = g.tensor_values.get(&out_name)
        && (m.sizes.len() != 2 || m.dtype != 7)
    {
        return Err(c.err(format!(
            "not a classifier: its output is a {}-dimensional {} tensor; amun runs models that \
             return N×K float32 logits",
            m.sizes.len(),
            schema::kind_of(m.dtype).map_or("other".into(), |k| format!("{k:?}"))
        )));
    }

    // The weights' shapes and kinds from their configs (the bytes are read
    // when a model is made); constants are read now.
    let mut weight_specs = Vec::new();
    // Where each weight's bytes are: the same place, the same tensor.
    let mut places = Vec::new();
    for (name, slot, is_param) in weights {
        let meta = wcfg.config.get(&name).ok_or_else(|| {
            c.err(format!(
                "{name} is in the signature but not in {}",
                archive::WEIGHTS_CONFIG
            ))
        })?;
        let tm = meta
            .tensor_meta
            .as_ref()
            .ok_or_else(|| c.err(format!("{name}: no tensor_meta")))?;
        let (kind, size, stride, offset) =
            archive::layout(tm).map_err(|m| c.err(format!("{name}: {m}")))?;
        places.push((meta.path_name.clone(), kind, size.clone(), stride, offset));
        weight_specs.push(Weight {
            alias_of: None,
            trainable: is_param && tm.requires_grad,
            name,
            kind,
            size,
            slot,
            role: Role::Unknown,
        });
    }
    for (name, slot) in const_names {
        let meta = ccfg.config.get(&name).ok_or_else(|| {
            c.err(format!(
                "{name} is in the signature but not in {}",
                archive::CONSTANTS_CONFIG
            ))
        })?;
        let t = ar.tensor(archive::CONSTANTS_DIR, &name, meta, &mut storages)?;
        let mut bytes = vec![0u8; t.numel() * archive::elem_size(t.kind())];
        if !bytes.is_empty() {
            let n = bytes.len();
            t.f_flatten(0, -1)
                .and_then(|f| f.f_view_dtype(Kind::Uint8))
                .and_then(|b| b.f_copy_data_u8(&mut bytes, n))
                .map_err(|e| c.err(format!("{name}: {}", torch_msg(&e))))?;
        }
        constants.push(Constant {
            slot,
            kind: t.kind(),
            size: t.size(),
            bytes,
        });
    }

    // The nodes.
    let weight_of: HashMap<usize, usize> = weight_specs
        .iter()
        .enumerate()
        .map(|(i, w)| (w.slot, i))
        .collect();
    let const_slots: BTreeSet<usize> = constants.iter().map(|k| k.slot).collect();
    let mut steps = Vec::new();
    let mut counters = Vec::new();
    let mut input_written = false;
    // Which input, weight or constant each view shares its storage with: a
    // write into a view of the input is a write into the input.
    let mut root_of: HashMap<usize, usize> = HashMap::new();
    let root = |root_of: &HashMap<usize, usize>, s: usize| *root_of.get(&s).unwrap_or(&s);
    for (k, n) in g.nodes.iter().enumerate() {
        let node = n.name.clone().unwrap_or_else(|| format!("node {k}"));
        let named = |want: &str| n.inputs.iter().find(|a| a.name == want).map(|a| &a.arg);
        let first_tensor = |c: &Compiler| -> Result<Option<usize>> {
            match n.inputs.first().map(|a| &a.arg) {
                Some(Argument::AsTensor(t)) => Ok(Some(c.get(&t.name, &node)?)),
                _ => Ok(None),
            }
        };
        let out_name = |i: usize| -> Option<&str> {
            match n.outputs.get(i)? {
                Argument::AsTensor(t) => Some(&t.name),
                Argument::AsSymInt(SymIntArgument::AsName(s)) => Some(s),
                Argument::AsSymFloat(schema::SymFloatArgument::AsName(s)) => Some(s),
                Argument::AsSymBool(schema::SymBoolArgument::AsName(s)) => Some(s),
                _ => None,
            }
        };
        if let Some(f) = arith_of(&n.target) {
            let a = n
                .inputs
                .first()
                .ok_or_else(|| c.err(format!("node '{node}': no operand")))?;
            let a = c.src(&a.arg, "Scalar", &node, &a.name)?;
            let b = match n.inputs.get(1) {
                Some(b) => Some(c.src(&b.arg, "Scalar", &node, &b.name)?),
                None => None,
            };
            let out = out_name(0).ok_or_else(|| c.err(format!("node '{node}': no output")))?;
            let out = c.def(out);
            steps.push(Step::Arith { f, a, b, out });
            continue;
        }
        let op_name = aten_name(&n.target).expect("checked above");
        match op_name {
            "sym_size.int" | "sym_numel.default" | "sym_stride.int" => {
                let x = first_tensor(&c)?
                    .ok_or_else(|| c.err(format!("node '{node}': no tensor operand")))?;
                let dim = match named("dim") {
                    Some(Argument::AsInt(d)) => Some(*d),
                    _ => None,
                };
                let out = out_name(0).ok_or_else(|| c.err(format!("node '{node}': no output")))?;
                let out = c.def(out);
                steps.push(match (op_name, dim) {
                    ("sym_numel.default", _) => Step::Size { x, dim: None, out },
                    ("sym_size.int", Some(d)) => Step::Size {
                        x,
                        dim: Some(d),
                        out,
                    },
                    ("sym_stride.int", Some(d)) => Step::Stride { x, dim: d, out },
                    _ => return Err(c.err(format!("node '{node}': no integer 'dim'"))),
                });
                continue;
            }
            "_assert_tensor_metadata.default"
            | "_assert_scalar.default"
            | "sym_constrain_range_for_size.default" => {
                steps.push(Step::Skip { alias: None });
                continue;
            }
            _ => {}
        }
        // amun increments num_batches_tracked itself (in train mode only,
        // whatever mode the graph was exported in).
        if op_name.starts_with("add_.")
            && let Some(x) = first_tensor(&c)?
            && let Some(&w) = weight_of.get(&x)
            && weight_specs[w].name.ends_with("num_batches_tracked")
        {
            let alias = out_name(0).map(|o| (x, c.def(o)));
            if let Some((_, o)) = alias {
                root_of.insert(o, root(&root_of, x));
            }
            steps.push(Step::Skip { alias });
            continue;
        }
        let op = ops::find(op_name).ok_or_else(|| {
            c.err(format!(
                "libtorch {} has no operator aten::{op_name}",
                crate::LIBTORCH_VERSION
            ))
        })?;
        let mut args = Vec::with_capacity(op.args.len());
        for a in &op.args {
            let given = n.inputs.iter().find(|x| x.name == a.name);
            let src = match given {
                Some(g) => c.src(&g.arg, &a.ty, &node, &a.name)?,
                None if a.ty.trim_end_matches('?') == "Device" => Src::Device,
                None if a.has_default => Src::Default,
                None => {
                    return Err(c.err(format!(
                        "node '{node}' ({op_name}) lacks its argument '{}'",
                        a.name
                    )));
                }
            };
            if a.is_write
                && let Src::Tensor(s) = &src
            {
                let s = &root(&root_of, *s);
                if *s == input {
                    input_written = true;
                } else if let Some(&w) = weight_of.get(s) {
                    return Err(c.err(format!(
                        "node '{node}' ({op_name}) writes into {} {} (or a view of it) in place; \
                         amun runs models whose forward changes no parameter or buffer other \
                         than BatchNorm's statistics",
                        if weight_specs[w].trainable {
                            "parameter"
                        } else {
                            "buffer"
                        },
                        weight_specs[w].name
                    )));
                } else if const_slots.contains(s) {
                    return Err(c.err(format!(
                        "node '{node}' ({op_name}) writes into a constant in place"
                    )));
                }
            }
            args.push(src);
        }
        // A returned view shares the storage of the argument it views.
        let viewed = op.args.iter().zip(&args).find_map(|(a, s)| match s {
            Src::Tensor(s) if a.is_alias => Some(root(&root_of, *s)),
            _ => None,
        });
        for g in &n.inputs {
            if !op.args.iter().any(|a| a.name == g.name) {
                return Err(c.err(format!(
                    "node '{node}': aten::{op_name} has no argument '{}' in libtorch {}",
                    g.name,
                    crate::LIBTORCH_VERSION
                )));
            }
        }
        let pos = |name: &str| op.args.iter().position(|a| a.name == name);
        let special = if op_name == "batch_norm.default" {
            match (pos("training"), pos("running_mean")) {
                (Some(training), Some(running_mean)) => Special::BatchNorm {
                    training,
                    running_mean,
                    cumulative: None,
                },
                _ => Special::None,
            }
        } else if op_name.contains("dropout") {
            pos("train").map_or(Special::None, |train| Special::Dropout { train })
        } else if op_name == "bernoulli_.float" {
            pos("p").map_or(Special::None, |p| Special::Bernoulli { p, scaled: true })
        } else if op_name == "scaled_dot_product_attention.default" {
            pos("dropout_p").map_or(Special::None, |p| Special::AttentionDropout { p })
        } else if op_name == "instance_norm.default" {
            match (pos("use_input_stats"), pos("running_mean")) {
                (Some(use_input_stats), Some(running_mean)) => Special::InstanceNorm {
                    use_input_stats,
                    running_mean,
                },
                _ => Special::None,
            }
        } else {
            Special::None
        };
        // Roles for PyTorch's default initialisation.
        let weight_arg = |name: &str| match pos(name).map(|i| &args[i]) {
            Some(Src::Tensor(s)) => weight_of.get(s).copied(),
            _ => None,
        };
        let set_role = |specs: &mut Vec<Weight>, w: Option<usize>, r: Role| {
            if let Some(w) = w
                && specs[w].role == Role::Unknown
            {
                specs[w].role = r;
            }
        };
        match op_name.split('.').next().unwrap_or("") {
            "conv1d" | "conv2d" | "convolution" | "conv_transpose2d" | "linear" => {
                if let Some(w) = weight_arg("weight") {
                    let s = &weight_specs[w].size;
                    let fan_in = s.get(1).copied().unwrap_or(1)
                        * s[2.min(s.len())..].iter().product::<i64>();
                    set_role(&mut weight_specs, Some(w), Role::FanIn(fan_in));
                    set_role(&mut weight_specs, weight_arg("bias"), Role::FanIn(fan_in));
                }
            }
            "batch_norm" | "layer_norm" | "group_norm" | "instance_norm" | "rms_norm" => {
                set_role(&mut weight_specs, weight_arg("weight"), Role::One);
                set_role(&mut weight_specs, weight_arg("bias"), Role::Zero);
                set_role(&mut weight_specs, weight_arg("running_mean"), Role::Zero);
                set_role(&mut weight_specs, weight_arg("running_var"), Role::One);
            }
            _ => {}
        }
        let mut special = special;
        if let Special::BatchNorm {
            running_mean,
            ref mut cumulative,
            ..
        } = special
            && let Src::Tensor(s) = &args[running_mean]
            && let Some(&w) = weight_of.get(s)
            && let Some(prefix) = weight_specs[w].name.strip_suffix("running_mean")
        {
            let counter = format!("{prefix}num_batches_tracked");
            if let Some(i) = weight_specs.iter().position(|w| w.name == counter) {
                counters.push(i);
                // An eval-mode export records `momentum=None` as 0 (a
                // train-mode export of it fails in PyTorch); a literal
                // momentum of 0 would freeze the statistics, which eval
                // mode does anyway.
                if let Some(m) = pos("momentum")
                    && matches!(args[m], Src::Float(v) if v == 0.0)
                {
                    *cumulative = Some((m, weight_specs[i].slot));
                }
            }
        }
        // Outputs, per schema return.
        let mut outs: Vec<Vec<Option<usize>>> = Vec::new();
        let outputs: Vec<&Argument> = n.outputs.iter().collect();
        let single_list = op.returns.len() == 1 && op.returns[0].ends_with("[]");
        if op.returns.is_empty() {
            // Nothing returned; a stated output (as_none) binds nothing.
        } else if single_list {
            let names = match outputs.as_slice() {
                [Argument::AsTensors(v)] => v.iter().map(|t| Some(c.def(&t.name))).collect(),
                [] => Vec::new(),
                _ => {
                    return Err(c.err(format!(
                        "node '{node}' ({op_name}): outputs do not match its list return"
                    )));
                }
            };
            outs.push(names);
        } else {
            for (r, _) in op.returns.iter().enumerate() {
                let slot = match outputs.get(r) {
                    Some(Argument::AsTensor(t)) => Some(c.def(&t.name)),
                    Some(Argument::AsNone(_)) | None => None,
                    Some(other) => {
                        return Err(c.err(format!(
                            "node '{node}' ({op_name}): output {r} is {}, not a tensor",
                            other.kind()
                        )));
                    }
                };
                outs.push(vec![slot]);
            }
            if outputs.len() > op.returns.len() {
                return Err(c.err(format!(
                    "node '{node}' ({op_name}): {} outputs for {} returns",
                    outputs.len(),
                    op.returns.len()
                )));
            }
        }
        if let Some(v) = viewed {
            for (r, slots) in outs.iter().enumerate() {
                if op.returns_alias.get(r).copied().unwrap_or(false) {
                    for s in slots.iter().flatten() {
                        root_of.insert(*s, v);
                    }
                }
            }
        }
        steps.push(Step::Call {
            node,
            op,
            args,
            outs,
            special,
        });
    }
    mark_unscaled_masks(&mut steps);
    mark_aliases(&mut weight_specs, &places);
    for w in weight_specs.iter_mut() {
        if w.role == Role::Unknown && w.name.ends_with("num_batches_tracked") {
            w.role = Role::Zero;
        }
    }
    let output = c.get(&out_name, "the output")?;

    // Free every intermediate value after its last reader.
    let keep: BTreeSet<usize> = weight_specs
        .iter()
        .map(|w| w.slot)
        .chain(constants.iter().map(|k| k.slot))
        .chain([input, output])
        .collect();
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        for r in reads(s) {
            last.insert(r, i);
        }
    }
    let mut frees = vec![Vec::new(); steps.len()];
    for (slot, i) in last {
        if !keep.contains(&slot) {
            frees[i].push(slot);
        }
    }
    Ok(Program {
        file: path.to_path_buf(),
        sha256,
        weights: weight_specs,
        constants,
        nslots: c.slots.len(),
        input,
        output,
        input_written,
        steps,
        frees,
        counters,
        input_sizes,
        input_name,
        classes,
        ops: used,
    })
}

/// Entries of the state dict that are one tensor under two names (their
/// bytes at the same place of the same payload) become aliases of the
/// first (the name PyTorch's `named_parameters()` keeps); the graph reads
/// that one under either name.
fn mark_aliases(weights: &mut [Weight], places: &[impl PartialEq]) {
    for j in 0..weights.len() {
        if let Some(i) = (0..j).find(|&i| places[i] == places[j]) {
            weights[j].alias_of = Some(i);
            // The graph may read either name: one role for both.
            if weights[i].role == Role::Unknown {
                weights[i].role = weights[j].role;
            }
            weights[j].role = weights[i].role;
        }
    }
}

/// Decides, for each stochastic-depth mask (`bernoulli_(p)`), whether the
/// graph scales it by 1/p: the mask divided by `p` (torchvision, timm), or
/// multiplied with a tensor divided by `p` (older timm). An unscaled mask
/// (timm's `scale_by_keep=False`) is 1 in eval mode, not its expectation.
fn mark_unscaled_masks(steps: &mut [Step]) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let scalar = |s: &Src| match s {
        Src::Float(v) => Some(*v),
        Src::Int(v) => Some(*v as f64),
        _ => None,
    };
    // Each call's name, arguments and first output slot.
    fn call(st: &Step) -> Option<(&str, &[Src], Option<usize>)> {
        match st {
            Step::Call { op, args, outs, .. } => {
                let out = outs.first().and_then(|o| o.first()).copied().flatten();
                Some((op.name.split('.').next().unwrap_or(""), args, out))
            }
            _ => None,
        }
    }
    // Whether the call divides its first tensor by p (or multiplies it by 1/p).
    let divides_by = |name: &str, args: &[Src], p: f64| {
        let by = args.get(1).and_then(scalar);
        match name {
            "div" | "div_" => by.is_some_and(|d| close(d, p)),
            "mul" | "mul_" => by.is_some_and(|m| p != 0.0 && close(m, 1.0 / p)),
            _ => false,
        }
    };
    let mut found = Vec::new();
    for (i, st) in steps.iter().enumerate() {
        let Step::Call {
            args,
            outs,
            special: Special::Bernoulli { p, .. },
            ..
        } = st
        else {
            continue;
        };
        let (Some(p), Some(Some(mask))) = (scalar(&args[*p]), outs.first().and_then(|o| o.first()))
        else {
            continue;
        };
        let divided = |slot: usize| {
            steps
                .iter()
                .filter_map(call)
                .any(|(name, args, out)| out == Some(slot) && divides_by(name, args, p))
        };
        let scaled = steps[i + 1..]
            .iter()
            .filter_map(call)
            .any(|(name, args, _)| {
                let reads_mask = matches!(args.first(), Some(Src::Tensor(s)) if s == mask)
                    || matches!(args.get(1), Some(Src::Tensor(s)) if s == mask);
                reads_mask
                    && (divides_by(name, args, p)
                        || (name.starts_with("mul")
                            && args
                                .iter()
                                .take(2)
                                .any(|a| matches!(a, Src::Tensor(s) if s != mask && divided(*s)))))
            });
        found.push((i, scaled));
    }
    for (i, now) in found {
        if let Step::Call {
            special: Special::Bernoulli { scaled, .. },
            ..
        } = &mut steps[i]
        {
            *scaled = now;
        }
    }
}

/// The slots a step reads.
fn reads(s: &Step) -> Vec<usize> {
    fn of(src: &Src, v: &mut Vec<usize>) {
        match src {
            Src::Tensor(s) | Src::Sym(s) => v.push(*s),
            Src::Tensors(l) => v.extend(l),
            Src::OptTensors(l) => v.extend(l.iter().flatten()),
            Src::Ints(l) => v.extend(l.iter().filter_map(|i| match i {
                IntSrc::Sym(s) => Some(*s),
                IntSrc::Const(_) => None,
            })),
            _ => {}
        }
    }
    let mut v = Vec::new();
    match s {
        Step::Call { args, .. } => args.iter().for_each(|a| of(a, &mut v)),
        Step::Size { x, .. } | Step::Stride { x, .. } => v.push(*x),
        Step::Arith { a, b, .. } => {
            of(a, &mut v);
            if let Some(b) = b {
                of(b, &mut v);
            }
        }
        Step::Skip { alias } => v.extend(alias.map(|(from, _)| from)),
    }
    v
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
        let tensor = |env: &[Val], s: usize| -> std::result::Result<Tensor, String> {
            match &env[s] {
                Val::T(t) => Ok(t.shallow_clone()),
                _ => Err("a tensor operand is not a tensor".into()),
            }
        };
        let num = |env: &[Val], src: &Src| -> std::result::Result<Val, String> {
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
        };
        match step {
            Step::Size { x, dim, out } => {
                let t = tensor(env, *x)?;
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
                let t = tensor(env, *x)?;
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
                let a = num(env, a)?;
                let b = match b {
                    Some(b) => Some(num(env, b)?),
                    None => None,
                };
                env[*out] = arith(*f, a, b)?;
            }
            Step::Skip { alias } => {
                if let Some((from, to)) = alias {
                    env[*to] = Val::T(tensor(env, *from)?);
                }
            }
            Step::Call {
                node,
                op,
                args,
                outs,
                special,
            } => {
                let fail = |e: String| format!("node '{node}' (aten.{}): {e}", op.name);
                // Owned temporaries the argument list borrows.
                let held: Vec<Option<Tensor>> = args
                    .iter()
                    .map(|a| match a {
                        Src::Tensor(s) => tensor(env, *s).ok(),
                        _ => None,
                    })
                    .collect();
                let lists: Vec<Vec<Tensor>> = args
                    .iter()
                    .map(|a| match a {
                        Src::Tensors(l) => l.iter().filter_map(|s| tensor(env, *s).ok()).collect(),
                        Src::OptTensors(l) => l
                            .iter()
                            .flatten()
                            .filter_map(|s| tensor(env, *s).ok())
                            .collect(),
                        _ => Vec::new(),
                    })
                    .collect();
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
                match *special {
                    Special::BatchNorm {
                        training,
                        running_mean,
                        cumulative,
                    } => {
                        let no_stats = matches!(vals[running_mean], Value::None);
                        vals[training] = Value::Bool(train || no_stats);
                        if let (true, Some((m, counter))) = (train, cumulative) {
                            // The counter was incremented before the pass.
                            let n = tensor(env, counter)?
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
                        // Stochastic depth in eval mode: the identity
                        // PyTorch's eval gives (`x * p / p` when scaled).
                        let p = match vals[p] {
                            _ if !scaled => 1.0,
                            Value::Float(v) => v,
                            Value::Int(v) => v as f64,
                            _ => 0.5,
                        };
                        let Value::Tensor(t) = vals[0] else {
                            return Err(fail("bernoulli_ of a non-tensor".into()));
                        };
                        let r = tch::no_grad(|| t.shallow_clone().f_fill_(p))
                            .map_err(|e| fail(torch_msg(&e)))?;
                        if let Some(Some(s)) = outs.first().and_then(|o| o.first()) {
                            env[*s] = Val::T(r);
                        }
                        return Ok(());
                    }
                    _ => {}
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
            }
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
