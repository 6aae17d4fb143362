//! Reading an exported program into a [`Program`], in passes: the graph
//! as a whole, its signature, its weights and constants, its nodes (each
//! lowered to a step that calls libtorch), then the frees.
use super::archive;
use super::ops::{self, OpInfo, SUPPORTED};
use super::schema::{
    self, Argument, ExportedProgram, Graph, GraphModule, InputSpec, Node, OptionalTensorArgument,
    OutputSpec, PayloadConfig, SymIntArgument,
};
use super::{Arith, Constant, IntSrc, Program, Role, Special, Src, Step, Weight, torch_msg};
use crate::error::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::path::Path;
use tch::{Kind, Tensor};

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

/// Reads, checks and lowers the exported program at `path` in passes: the
/// graph as a whole ([`check_graph`]), its signature ([`read_signature`]),
/// its weights and constants ([`lift_weights`], [`lift_constants`]), its
/// nodes ([`Lowering`]), then what the steps leave to decide
/// ([`finish_weights`], [`plan_frees`]).
pub(super) fn compile(path: &Path, sha256: String) -> Result<Program> {
    let mut ar = archive::Archive::open(path)?;
    let ep = ar.program()?;
    let wcfg = ar.weights_config()?;
    let ccfg = ar.constants_config()?;
    let used = check_graph(path, &ep)?;
    let mut c = Compiler {
        path,
        slots: HashMap::new(),
    };
    let sig = read_signature(&mut c, &ep.graph_module)?;
    let (weights, places) = lift_weights(&c, sig.weights, &wcfg)?;
    let constants = lift_constants(&c, sig.constants, &ccfg, &mut ar)?;
    let mut lower = Lowering::new(weights, &constants, sig.input);
    for (k, n) in ep.graph_module.graph.nodes.iter().enumerate() {
        lower.node(&mut c, k, n)?;
    }
    let Lowering {
        mut weights,
        mut steps,
        counters,
        input_written,
        ..
    } = lower;
    mark_unscaled_masks(&mut steps);
    finish_weights(&mut weights, &places);
    let output = c.get(&sig.output_name, "the output")?;
    let keep = weights
        .iter()
        .map(|w| w.slot)
        .chain(constants.iter().map(|k| k.slot))
        .chain([sig.input, output])
        .collect();
    let frees = plan_frees(&steps, &keep);
    Ok(Program {
        file: path.to_path_buf(),
        sha256,
        weights,
        constants,
        nslots: c.slots.len(),
        input: sig.input,
        output,
        input_written,
        steps,
        frees,
        counters,
        input_sizes: sig.input_sizes,
        input_name: sig.input_name,
        classes: sig.classes,
        ops: used,
    })
}

/// The graph as a whole: its schema version, not decomposed, and every
/// operator one amun runs (an unknown one is refused before anything
/// else). Returns the ATen operators it uses.
fn check_graph(path: &Path, ep: &ExportedProgram) -> Result<BTreeSet<String>> {
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
    // A decomposed graph's operators are not the ones amun runs.
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
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for n in &ep.graph_module.graph.nodes {
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
    Ok(used)
}

/// What the signature says: parameters and buffers (the state dict),
/// constants, one image input; one logits output.
#[derive(Debug)]
struct Signature {
    /// The state dict's entries: name, slot, whether a parameter.
    weights: Vec<(String, usize, bool)>,
    /// Lifted constants and non-persistent buffers: name, slot.
    constants: Vec<(String, usize)>,
    input_name: String,
    input: usize,
    input_sizes: Vec<Option<i64>>,
    output_name: String,
    classes: Option<i64>,
}

/// Defines a slot for each input of the graph, in the signature's order.
fn read_signature(c: &mut Compiler, gm: &GraphModule) -> Result<Signature> {
    let (g, sig) = (&gm.graph, &gm.signature);
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
                constants.push((b.buffer_name.clone(), slot));
            }
            InputSpec::TensorConstant(t) => {
                let slot = c.def(&t.arg.name);
                constants.push((t.tensor_constant_name.clone(), slot));
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
    let (input_name, input, input_sizes) = image_input(c, g, &user_inputs)?;
    let (output_name, classes) = logits_output(c, gm)?;
    Ok(Signature {
        weights,
        constants,
        input_name,
        input,
        input_sizes,
        output_name,
        classes,
    })
}

/// The one N×C×H×W float32 input: its name, slot and sizes as exported.
fn image_input(
    c: &Compiler,
    g: &Graph,
    user_inputs: &[(String, usize)],
) -> Result<(String, usize, Vec<Option<i64>>)> {
    let (input_name, input) = match user_inputs {
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
    Ok((input_name, input, input_sizes))
}

/// The one N×K logits output: its name and K as exported, if stated.
fn logits_output(c: &Compiler, gm: &GraphModule) -> Result<(String, Option<i64>)> {
    let g = &gm.graph;
    let mut user_outputs = Vec::new();
    for o in &gm.signature.output_specs {
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
    Ok((out_name, classes))
}

/// Where a weight's bytes are (payload file, kind, size, stride, offset):
/// the same place, the same tensor.
type Place = (String, Kind, Vec<i64>, Vec<i64>, i64);

/// The weights' shapes and kinds from their config (the bytes are read
/// when a model is made), and where each one's bytes are.
fn lift_weights(
    c: &Compiler,
    weights: Vec<(String, usize, bool)>,
    wcfg: &PayloadConfig,
) -> Result<(Vec<Weight>, Vec<Place>)> {
    let mut specs = Vec::new();
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
        specs.push(Weight {
            alias_of: None,
            trainable: is_param && tm.requires_grad,
            name,
            kind,
            size,
            slot,
            role: Role::Unknown,
        });
    }
    Ok((specs, places))
}

/// The constants, read now.
fn lift_constants(
    c: &Compiler,
    constants: Vec<(String, usize)>,
    ccfg: &PayloadConfig,
    ar: &mut archive::Archive,
) -> Result<Vec<Constant>> {
    let mut storages = HashMap::new();
    let mut out = Vec::new();
    for (name, slot) in constants {
        let meta = ccfg.config.get(&name).ok_or_else(|| {
            c.err(format!(
                "{name} is in the signature but not in {}",
                archive::CONSTANTS_CONFIG
            ))
        })?;
        let t = ar.tensor(archive::CONSTANTS_DIR, &name, meta, &mut storages)?;
        out.push(constant(slot, &t).map_err(|e| c.err(format!("{name}: {}", torch_msg(&e))))?);
    }
    Ok(out)
}

/// A constant tensor as contiguous bytes.
fn constant(slot: usize, t: &Tensor) -> std::result::Result<Constant, tch::TchError> {
    let mut bytes = vec![0u8; t.numel() * archive::elem_size(t.kind())];
    if !bytes.is_empty() {
        let n = bytes.len();
        t.f_flatten(0, -1)
            .and_then(|f| f.f_view_dtype(Kind::Uint8))
            .and_then(|b| b.f_copy_data_u8(&mut bytes, n))?;
    }
    Ok(Constant {
        slot,
        kind: t.kind(),
        size: t.size(),
        bytes,
    })
}

/// The nodes lowered to steps, one at a time, with what lowering learns on
/// the way: the weights' roles for PyTorch's default initialisation, the
/// BatchNorm counters, whether the graph writes into its input.
#[derive(Debug)]
struct Lowering {
    weights: Vec<Weight>,
    /// The index in `weights` of each weight's slot.
    weight_of: HashMap<usize, usize>,
    const_slots: BTreeSet<usize>,
    input: usize,
    steps: Vec<Step>,
    counters: Vec<usize>,
    input_written: bool,
    /// Which input, weight or constant each view shares its storage with: a
    /// write into a view of the input is a write into the input.
    root_of: HashMap<usize, usize>,
}

/// The slot of a node's first input, when it is a tensor.
fn first_tensor(c: &Compiler, n: &Node, node: &str) -> Result<Option<usize>> {
    match n.inputs.first().map(|a| &a.arg) {
        Some(Argument::AsTensor(t)) => Ok(Some(c.get(&t.name, node)?)),
        _ => Ok(None),
    }
}

/// The name a node's output `i` defines (a tensor or a symbolic value).
fn out_name(n: &Node, i: usize) -> Option<&str> {
    match n.outputs.get(i)? {
        Argument::AsTensor(t) => Some(&t.name),
        Argument::AsSymInt(SymIntArgument::AsName(s)) => Some(s),
        Argument::AsSymFloat(schema::SymFloatArgument::AsName(s)) => Some(s),
        Argument::AsSymBool(schema::SymBoolArgument::AsName(s)) => Some(s),
        _ => None,
    }
}

/// The slot a node's first output defines.
fn def_out(c: &mut Compiler, n: &Node, node: &str) -> Result<usize> {
    let out = out_name(n, 0).ok_or_else(|| c.err(format!("node '{node}': no output")))?;
    Ok(c.def(out))
}

/// `_operator.add` and kin: arithmetic on symbolic sizes.
fn lower_arith(c: &mut Compiler, f: Arith, n: &Node, node: &str) -> Result<Step> {
    let a = n
        .inputs
        .first()
        .ok_or_else(|| c.err(format!("node '{node}': no operand")))?;
    let a = c.src(&a.arg, "Scalar", node, &a.name)?;
    let b = match n.inputs.get(1) {
        Some(b) => Some(c.src(&b.arg, "Scalar", node, &b.name)?),
        None => None,
    };
    let out = def_out(c, n, node)?;
    Ok(Step::Arith { f, a, b, out })
}

/// `sym_size`, `sym_numel`, `sym_stride`: a symbolic size of a tensor.
fn lower_size(c: &mut Compiler, op_name: &str, n: &Node, node: &str) -> Result<Step> {
    let x = first_tensor(c, n, node)?
        .ok_or_else(|| c.err(format!("node '{node}': no tensor operand")))?;
    let dim = match n.inputs.iter().find(|a| a.name == "dim").map(|a| &a.arg) {
        Some(Argument::AsInt(d)) => Some(*d),
        _ => None,
    };
    let out = def_out(c, n, node)?;
    Ok(match (op_name, dim) {
        ("sym_numel.default", _) => Step::Size { x, dim: None, out },
        ("sym_size.int", Some(d)) => Step::Size {
            x,
            dim: Some(d),
            out,
        },
        ("sym_stride.int", Some(d)) => Step::Stride { x, dim: d, out },
        _ => return Err(c.err(format!("node '{node}': no integer 'dim'"))),
    })
}

/// The special arguments of a node that follows amun's mode.
fn special_of(op_name: &str, op: &OpInfo) -> Special {
    let pos = |name: &str| op.args.iter().position(|a| a.name == name);
    if op_name == "batch_norm.default" {
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
    }
}

/// A call's outputs, per schema return: the slot of each returned tensor.
fn call_outputs(
    c: &mut Compiler,
    op: &OpInfo,
    op_name: &str,
    n: &Node,
    node: &str,
) -> Result<Vec<Vec<Option<usize>>>> {
    let mut outs: Vec<Vec<Option<usize>>> = Vec::new();
    let outputs: Vec<&Argument> = n.outputs.iter().collect();
    if op.returns.is_empty() {
        // Nothing returned; a stated output (as_none) binds nothing.
    } else if op.returns.len() == 1 && op.returns[0].ends_with("[]") {
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
        for r in 0..op.returns.len() {
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
    Ok(outs)
}

impl Lowering {
    fn new(weights: Vec<Weight>, constants: &[Constant], input: usize) -> Lowering {
        Lowering {
            weight_of: weights
                .iter()
                .enumerate()
                .map(|(i, w)| (w.slot, i))
                .collect(),
            const_slots: constants.iter().map(|k| k.slot).collect(),
            weights,
            input,
            steps: Vec::new(),
            counters: Vec::new(),
            input_written: false,
            root_of: HashMap::new(),
        }
    }

    /// The input, weight or constant whose storage slot `s` shares.
    fn root(&self, s: usize) -> usize {
        *self.root_of.get(&s).unwrap_or(&s)
    }

    /// Lowers node `k` of the graph to one step.
    fn node(&mut self, c: &mut Compiler, k: usize, n: &Node) -> Result<()> {
        let node = n.name.clone().unwrap_or_else(|| format!("node {k}"));
        let step = if let Some(f) = arith_of(&n.target) {
            lower_arith(c, f, n, &node)?
        } else {
            let op_name = aten_name(&n.target).expect("checked by check_graph");
            match op_name {
                "sym_size.int" | "sym_numel.default" | "sym_stride.int" => {
                    lower_size(c, op_name, n, &node)?
                }
                "_assert_tensor_metadata.default"
                | "_assert_scalar.default"
                | "sym_constrain_range_for_size.default" => Step::Skip { alias: None },
                _ => match self.counter_increment(c, op_name, n, &node)? {
                    Some(skip) => skip,
                    None => self.call(c, op_name, n, node)?,
                },
            }
        };
        self.steps.push(step);
        Ok(())
    }

    /// amun increments num_batches_tracked itself (in train mode only,
    /// whatever mode the graph was exported in): the graph's `add_` on it
    /// is skipped.
    fn counter_increment(
        &mut self,
        c: &mut Compiler,
        op_name: &str,
        n: &Node,
        node: &str,
    ) -> Result<Option<Step>> {
        if op_name.starts_with("add_.")
            && let Some(x) = first_tensor(c, n, node)?
            && let Some(&w) = self.weight_of.get(&x)
            && self.weights[w].name.ends_with("num_batches_tracked")
        {
            let alias = out_name(n, 0).map(|o| (x, c.def(o)));
            if let Some((_, o)) = alias {
                self.root_of.insert(o, self.root(x));
            }
            return Ok(Some(Step::Skip { alias }));
        }
        Ok(None)
    }

    /// A call of an ATen operator through libtorch's dispatcher.
    fn call(&mut self, c: &mut Compiler, op_name: &str, n: &Node, node: String) -> Result<Step> {
        let op = ops::find(op_name).ok_or_else(|| {
            c.err(format!(
                "libtorch {} has no operator aten::{op_name}",
                crate::LIBTORCH_VERSION
            ))
        })?;
        let args = self.call_args(c, &op, op_name, n, &node)?;
        // A returned view shares the storage of the argument it views.
        let viewed = op.args.iter().zip(&args).find_map(|(a, s)| match s {
            Src::Tensor(s) if a.is_alias => Some(self.root(*s)),
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
        let mut special = special_of(op_name, &op);
        self.set_roles(op_name, &op, &args);
        self.count_batch_norm(&mut special, &op, &args);
        let outs = call_outputs(c, &op, op_name, n, &node)?;
        if let Some(v) = viewed {
            for (r, slots) in outs.iter().enumerate() {
                if op.returns_alias.get(r).copied().unwrap_or(false) {
                    for s in slots.iter().flatten() {
                        self.root_of.insert(*s, v);
                    }
                }
            }
        }
        Ok(Step::Call {
            node,
            op,
            args,
            outs,
            special,
        })
    }

    /// A call's arguments in its schema's order; an in-place write into a
    /// weight or a constant is refused, one into the input noted.
    fn call_args(
        &mut self,
        c: &Compiler,
        op: &OpInfo,
        op_name: &str,
        n: &Node,
        node: &str,
    ) -> Result<Vec<Src>> {
        let mut args = Vec::with_capacity(op.args.len());
        for a in &op.args {
            let src = match n.inputs.iter().find(|x| x.name == a.name) {
                Some(g) => c.src(&g.arg, &a.ty, node, &a.name)?,
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
                self.check_write(c, *s, op_name, node)?;
            }
            args.push(src);
        }
        Ok(args)
    }

    fn check_write(&mut self, c: &Compiler, s: usize, op_name: &str, node: &str) -> Result<()> {
        let s = self.root(s);
        if s == self.input {
            self.input_written = true;
        } else if let Some(&w) = self.weight_of.get(&s) {
            let w = &self.weights[w];
            return Err(c.err(format!(
                "node '{node}' ({op_name}) writes into {} {} (or a view of it) in place; amun \
                 runs models whose forward changes no parameter or buffer other than \
                 BatchNorm's statistics",
                if w.trainable { "parameter" } else { "buffer" },
                w.name
            )));
        } else if self.const_slots.contains(&s) {
            return Err(c.err(format!(
                "node '{node}' ({op_name}) writes into a constant in place"
            )));
        }
        Ok(())
    }

    /// The weight a call reads as its argument `name`, if any.
    fn weight_arg(&self, op: &OpInfo, args: &[Src], name: &str) -> Option<usize> {
        match op
            .args
            .iter()
            .position(|a| a.name == name)
            .map(|i| &args[i])
        {
            Some(Src::Tensor(s)) => self.weight_of.get(s).copied(),
            _ => None,
        }
    }

    /// Roles for PyTorch's default initialisation: the first layer that
    /// reads a weight decides.
    fn set_roles(&mut self, op_name: &str, op: &OpInfo, args: &[Src]) {
        let arg = |name: &str| self.weight_arg(op, args, name);
        let roles = match op_name.split('.').next().unwrap_or("") {
            "conv1d" | "conv2d" | "convolution" | "conv_transpose2d" | "linear" => {
                match arg("weight") {
                    Some(w) => {
                        let s = &self.weights[w].size;
                        let fan_in = s.get(1).copied().unwrap_or(1)
                            * s[2.min(s.len())..].iter().product::<i64>();
                        vec![
                            (Some(w), Role::FanIn(fan_in)),
                            (arg("bias"), Role::FanIn(fan_in)),
                        ]
                    }
                    None => Vec::new(),
                }
            }
            "batch_norm" | "layer_norm" | "group_norm" | "instance_norm" | "rms_norm" => vec![
                (arg("weight"), Role::One),
                (arg("bias"), Role::Zero),
                (arg("running_mean"), Role::Zero),
                (arg("running_var"), Role::One),
            ],
            _ => Vec::new(),
        };
        for (w, r) in roles {
            if let Some(w) = w
                && self.weights[w].role == Role::Unknown
            {
                self.weights[w].role = r;
            }
        }
    }

    /// A BatchNorm whose module counts its batches: its counter is
    /// incremented by each train-mode forward, and `momentum=None` makes
    /// its statistics a cumulative average.
    fn count_batch_norm(&mut self, special: &mut Special, op: &OpInfo, args: &[Src]) {
        if let Special::BatchNorm {
            running_mean,
            ref mut cumulative,
            ..
        } = *special
            && let Src::Tensor(s) = &args[running_mean]
            && let Some(&w) = self.weight_of.get(s)
            && let Some(prefix) = self.weights[w].name.strip_suffix("running_mean")
        {
            let counter = format!("{prefix}num_batches_tracked");
            if let Some(i) = self.weights.iter().position(|w| w.name == counter) {
                self.counters.push(i);
                // An eval-mode export records `momentum=None` as 0 (a
                // train-mode export of it fails in PyTorch); a literal
                // momentum of 0 would freeze the statistics, which eval
                // mode does anyway.
                if let Some(m) = op.args.iter().position(|a| a.name == "momentum")
                    && matches!(args[m], Src::Float(v) if v == 0.0)
                {
                    *cumulative = Some((m, self.weights[i].slot));
                }
            }
        }
    }
}

/// What the nodes leave to decide about the weights: one tensor under two
/// names is one variable, and a counter no layer claimed starts at 0.
fn finish_weights(weights: &mut [Weight], places: &[Place]) {
    mark_aliases(weights, places);
    for w in weights.iter_mut() {
        if w.role == Role::Unknown && w.name.ends_with("num_batches_tracked") {
            w.role = Role::Zero;
        }
    }
}

/// Per step, the slots whose last reader it is, dropped after it
/// (intermediate values do not outlive their use); `keep` is never dropped.
fn plan_frees(steps: &[Step], keep: &BTreeSet<usize>) -> Vec<Vec<usize>> {
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
    frees
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
        // `bernoulli_(x)` without p is p = 0.5 (the schema's default, which
        // the export leaves out: timm's default drop_prob of 0.5).
        let p = match &args[*p] {
            Src::Default => Some(0.5),
            s => scalar(s),
        };
        let (Some(p), Some(Some(mask))) = (p, outs.first().and_then(|o| o.first())) else {
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

#[cfg(test)]
mod tests {
    //! Each pass on a tiny graph written as the export schema's JSON: a
    //! convolution, a BatchNorm that counts its batches (exported in eval
    //! mode with `momentum=None`), a lifted constant, a symbolic size.
    use super::*;
    use serde_json::{Value, json};

    fn t(name: &str) -> Value {
        json!({"as_tensor": {"name": name}})
    }

    fn node(target: &str, inputs: &[(&str, Value)], out: Value) -> Value {
        let inputs: Vec<Value> = inputs
            .iter()
            .map(|(n, a)| json!({"name": n, "arg": a}))
            .collect();
        json!({"target": target, "inputs": inputs, "outputs": [out], "name": null})
    }

    fn aten(op: &str, inputs: &[(&str, Value)], out: &str) -> Value {
        node(&format!("torch.ops.aten.{op}"), inputs, t(out))
    }

    fn tiny() -> Value {
        let param = |arg: &str, name: &str| json!({"parameter": {"arg": {"name": arg}, "parameter_name": name}});
        let buffer = |arg: &str, name: &str| json!({"buffer": {"arg": {"name": arg}, "buffer_name": name, "persistent": true}});
        let specs = vec![
            param("p_conv_weight", "conv.weight"),
            param("p_bn_weight", "bn.weight"),
            param("p_bn_bias", "bn.bias"),
            buffer("b_bn_running_mean", "bn.running_mean"),
            buffer("b_bn_running_var", "bn.running_var"),
            buffer("b_bn_num_batches_tracked", "bn.num_batches_tracked"),
            json!({"tensor_constant": {"arg": {"name": "c_scale"}, "tensor_constant_name": "scale"}}),
            json!({"user_input": {"arg": t("x")}}),
        ];
        let inputs: Vec<Value> = [
            "p_conv_weight",
            "p_bn_weight",
            "p_bn_bias",
            "b_bn_running_mean",
            "b_bn_running_var",
            "b_bn_num_batches_tracked",
            "c_scale",
            "x",
        ]
        .iter()
        .map(|n| t(n))
        .collect();
        let sym = |n: &str| json!({"as_sym_int": {"as_name": n}});
        let nodes = vec![
            aten(
                "add_.Tensor",
                &[
                    ("self", t("b_bn_num_batches_tracked")),
                    ("other", json!({"as_int": 1})),
                ],
                "add_",
            ),
            node(
                "torch.ops.aten.sym_size.int",
                &[("self", t("x")), ("dim", json!({"as_int": 0}))],
                sym("sym_size_int"),
            ),
            node(
                "_operator.mul",
                &[("a", sym("sym_size_int")), ("b", json!({"as_int": 2}))],
                sym("mul_1"),
            ),
            aten(
                "conv2d.default",
                &[("input", t("x")), ("weight", t("p_conv_weight"))],
                "conv2d",
            ),
            aten(
                "batch_norm.default",
                &[
                    ("input", t("conv2d")),
                    ("weight", t("p_bn_weight")),
                    ("bias", t("p_bn_bias")),
                    ("running_mean", t("b_bn_running_mean")),
                    ("running_var", t("b_bn_running_var")),
                    ("training", json!({"as_bool": false})),
                    ("momentum", json!({"as_float": 0.0})),
                    ("eps", json!({"as_float": 1e-5})),
                    ("cudnn_enabled", json!({"as_bool": true})),
                ],
                "batch_norm",
            ),
            aten(
                "mul.Tensor",
                &[("self", t("batch_norm")), ("other", t("c_scale"))],
                "mul",
            ),
            aten(
                "mean.dim",
                &[("self", t("mul")), ("dim", json!({"as_ints": [2, 3]}))],
                "mean",
            ),
        ];
        let n = json!({"as_expr": {"expr_str": "s0"}});
        json!({
            "graph_module": {
                "graph": {
                    "inputs": inputs,
                    "nodes": nodes,
                    "tensor_values": {
                        "x": {"dtype": 7, "sizes": [n, {"as_int": 3}, {"as_int": 8}, {"as_int": 8}]},
                        "mean": {"dtype": 7, "sizes": [n, {"as_int": 4}]},
                    },
                },
                "signature": {
                    "input_specs": specs,
                    "output_specs": [{"user_output": {"arg": t("mean")}}],
                },
            },
            "schema_version": {"major": 8, "minor": 3},
            "verifiers": ["TRAINING"],
        })
    }

    fn program(v: Value) -> ExportedProgram {
        serde_json::from_value(v).unwrap()
    }

    fn compiler() -> Compiler<'static> {
        Compiler {
            path: Path::new("tiny.pt2"),
            slots: HashMap::new(),
        }
    }

    /// A weights config: each name's payload file and sizes (float32).
    fn config(entries: &[(&str, &str, &[i64])]) -> PayloadConfig {
        let config: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(name, file, sizes)| {
                let sizes: Vec<Value> = sizes.iter().map(|s| json!({"as_int": s})).collect();
                let meta = json!({"dtype": 7, "sizes": sizes, "requires_grad": true});
                (
                    name.to_string(),
                    json!({"path_name": file, "tensor_meta": meta}),
                )
            })
            .collect();
        serde_json::from_value(json!({ "config": config })).unwrap()
    }

    fn tiny_weights() -> PayloadConfig {
        config(&[
            ("conv.weight", "weight_0", &[4, 3, 3, 3]),
            ("bn.weight", "weight_1", &[4]),
            ("bn.bias", "weight_2", &[4]),
            ("bn.running_mean", "weight_3", &[4]),
            ("bn.running_var", "weight_4", &[4]),
            ("bn.num_batches_tracked", "weight_5", &[]),
        ])
    }

    fn message<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    /// The tiny graph read and lowered: the compiler, the signature, the
    /// lowering and the weights' places.
    fn lowered(v: Value) -> Result<(Compiler<'static>, Signature, Lowering, Vec<Place>)> {
        let ep = program(v);
        let mut c = compiler();
        let sig = read_signature(&mut c, &ep.graph_module)?;
        let (weights, places) = lift_weights(&c, sig.weights.clone(), &tiny_weights())?;
        let scale = constant(sig.constants[0].1, &Tensor::from_slice(&[2.0f32])).unwrap();
        let mut lower = Lowering::new(weights, &[scale], sig.input);
        for (k, n) in ep.graph_module.graph.nodes.iter().enumerate() {
            lower.node(&mut c, k, n)?;
        }
        Ok((c, sig, lower, places))
    }

    #[test]
    fn check_graph_lists_its_operators_and_refuses_unknown_or_decomposed_ones() {
        let used = check_graph(Path::new("tiny.pt2"), &program(tiny())).unwrap();
        let want = [
            "add_.Tensor",
            "batch_norm.default",
            "conv2d.default",
            "mean.dim",
            "mul.Tensor",
            "sym_size.int",
        ];
        assert_eq!(used.iter().map(String::as_str).collect::<Vec<_>>(), want);

        let mut v = tiny();
        v["graph_module"]["graph"]["nodes"][3]["target"] =
            json!("torch.ops.aten.frobnicate.default");
        v["graph_module"]["graph"]["nodes"][4]["target"] = json!("my.custom_op");
        let e = message(check_graph(Path::new("tiny.pt2"), &program(v)));
        assert!(e.contains("tiny.pt2") && e.contains("2 operator(s)"), "{e}");
        assert!(e.contains("aten.frobnicate.default, my.custom_op"), "{e}");

        let mut v = tiny();
        v["verifiers"] = json!(["ATEN"]);
        let e = message(check_graph(Path::new("tiny.pt2"), &program(v)));
        assert!(e.contains("a decomposed graph (verifier ATEN)"), "{e}");

        let mut v = tiny();
        v["schema_version"]["major"] = json!(7);
        let e = message(check_graph(Path::new("tiny.pt2"), &program(v)));
        assert!(e.contains("export schema version 7.3"), "{e}");
    }

    #[test]
    fn read_signature_finds_the_state_dict_constants_image_input_and_logits() {
        let mut c = compiler();
        let sig = read_signature(&mut c, &program(tiny()).graph_module).unwrap();
        let names: Vec<(&str, usize, bool)> = sig
            .weights
            .iter()
            .map(|(n, s, p)| (n.as_str(), *s, *p))
            .collect();
        assert_eq!(
            names,
            [
                ("conv.weight", 0, true),
                ("bn.weight", 1, true),
                ("bn.bias", 2, true),
                ("bn.running_mean", 3, false),
                ("bn.running_var", 4, false),
                ("bn.num_batches_tracked", 5, false),
            ]
        );
        assert_eq!(sig.constants, [("scale".to_string(), 6)]);
        assert_eq!((sig.input_name.as_str(), sig.input), ("x", 7));
        assert_eq!(sig.input_sizes, [None, Some(3), Some(8), Some(8)]);
        assert_eq!((sig.output_name.as_str(), sig.classes), ("mean", Some(4)));

        // Two image inputs, a 3-dimensional output: not an image classifier.
        let mut v = tiny();
        let specs = v["graph_module"]["signature"]["input_specs"]
            .as_array_mut()
            .unwrap();
        specs[6] = json!({"user_input": {"arg": t("c_scale")}});
        let e = message(read_signature(&mut compiler(), &program(v).graph_module));
        assert!(e.contains("2 tensor inputs"), "{e}");
        let mut v = tiny();
        v["graph_module"]["graph"]["tensor_values"]["mean"]["sizes"] =
            json!([{"as_int": 2}, {"as_int": 4}, {"as_int": 1}]);
        let e = message(read_signature(&mut compiler(), &program(v).graph_module));
        assert!(
            e.contains("its output is a 3-dimensional Float tensor"),
            "{e}"
        );
    }

    #[test]
    fn lift_reads_shapes_from_the_config_and_one_tensor_under_two_names_is_one_weight() {
        let c = compiler();
        // A tied head: two names, the same payload.
        let cfg = config(&[
            ("embed.weight", "weight_0", &[10, 4]),
            ("head.weight", "weight_0", &[10, 4]),
            ("head.bias", "weight_1", &[10]),
        ]);
        let sig = vec![
            ("embed.weight".to_string(), 0, true),
            ("head.weight".to_string(), 1, true),
            ("head.bias".to_string(), 2, false),
        ];
        let (mut w, places) = lift_weights(&c, sig, &cfg).unwrap();
        assert_eq!(w[0].size, [10, 4]);
        assert_eq!((w[2].kind, w[2].trainable), (Kind::Float, false));
        finish_weights(&mut w, &places);
        let aliases: Vec<Option<usize>> = w.iter().map(|w| w.alias_of).collect();
        assert_eq!(aliases, [None, Some(0), None]);

        let e = message(lift_weights(&c, vec![("other".into(), 3, true)], &cfg));
        assert!(e.contains("other is in the signature but not in"), "{e}");

        let k = constant(6, &Tensor::from_slice(&[1.5f32, -2.0])).unwrap();
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|f| f.to_ne_bytes())
            .collect();
        assert_eq!(
            (k.slot, k.kind, &k.size[..], k.bytes),
            (6, Kind::Float, &[2i64][..], bytes)
        );
    }

    #[test]
    fn lowering_skips_the_counter_sets_roles_and_makes_batch_norm_cumulative() {
        let (_, _, lower, places) = lowered(tiny()).unwrap();
        let s = &lower.steps;
        assert_eq!(s.len(), 7);
        assert!(
            matches!(
                s[0],
                Step::Skip {
                    alias: Some((5, 8))
                }
            ),
            "{:?}",
            s[0]
        );
        assert!(
            matches!(
                s[1],
                Step::Size {
                    x: 7,
                    dim: Some(0),
                    out: 9
                }
            ),
            "{:?}",
            s[1]
        );
        assert!(
            matches!(
                s[2],
                Step::Arith {
                    f: Arith::Mul,
                    a: Src::Sym(9),
                    b: Some(Src::Int(2)),
                    out: 10
                }
            ),
            "{:?}",
            s[2]
        );
        // batch_norm's momentum is its argument 6; the counter is slot 5.
        assert!(
            matches!(
                s[4],
                Step::Call {
                    special: Special::BatchNorm {
                        training: 5,
                        running_mean: 3,
                        cumulative: Some((6, 5))
                    },
                    ..
                }
            ),
            "{:?}",
            s[4]
        );
        assert_eq!(lower.counters, [5]);
        assert!(!lower.input_written);
        let mut weights = lower.weights;
        finish_weights(&mut weights, &places);
        let roles: Vec<Role> = weights.iter().map(|w| w.role).collect();
        use Role::*;
        assert_eq!(roles, [FanIn(27), One, Zero, Zero, One, Zero]);
    }

    #[test]
    fn lowering_refuses_in_place_writes_into_weights_and_constants_and_notes_the_input() {
        let relu_ = |x: &str| aten("relu_.default", &[("self", t(x))], "relu_");
        let with = |extra: Value| {
            let mut v = tiny();
            let nodes = v["graph_module"]["graph"]["nodes"].as_array_mut().unwrap();
            nodes.insert(1, extra);
            lowered(v).map(|(_, _, lower, _)| lower)
        };
        let e = message(with(relu_("p_conv_weight")));
        assert!(e.contains("writes into parameter conv.weight"), "{e}");
        let e = message(with(relu_("b_bn_running_var")));
        assert!(e.contains("writes into buffer bn.running_var"), "{e}");
        let e = message(with(relu_("c_scale")));
        assert!(e.contains("writes into a constant"), "{e}");
        assert!(with(relu_("x")).unwrap().input_written);
        let e = message(with(aten("relu.default", &[("self", t("nowhere"))], "r")));
        assert!(e.contains("reads 'nowhere', which no earlier node"), "{e}");
    }

    #[test]
    fn plan_frees_drops_each_intermediate_after_its_last_reader() {
        let (mut c, sig, lower, _) = lowered(tiny()).unwrap();
        let output = c.get(&sig.output_name, "the output").unwrap();
        assert_eq!(c.def("mean"), output);
        let keep = lower
            .weights
            .iter()
            .map(|w| w.slot)
            .chain([6, sig.input, output])
            .collect();
        let mut frees = plan_frees(&lower.steps, &keep);
        frees.iter_mut().for_each(|f| f.sort());
        // sym_size after the arithmetic; conv2d, batch_norm and mul after
        // their readers; weights, the constant, input and output never.
        let want: [&[usize]; 7] = [&[], &[], &[9], &[], &[11], &[12], &[13]];
        assert_eq!(frees, want);
    }
}
