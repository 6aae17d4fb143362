//! The part of PyTorch's export schema (`torch/_export/serde/schema.py`,
//! schema version 8) that an image classifier's exported program uses, as
//! serde types. Fields amun does not read (node metadata, the module call
//! graph) are skipped; every union that decides what runs (an argument,
//! an input or output spec) lists all of the schema's variants, so an
//! unsupported one is refused by name rather than misread.
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;

/// `models/<name>.json`.
#[derive(Debug, Deserialize)]
pub struct ExportedProgram {
    pub graph_module: GraphModule,
    #[serde(default)]
    pub schema_version: Option<SchemaVersion>,
    #[serde(default)]
    pub verifiers: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct SchemaVersion {
    pub major: i64,
    pub minor: i64,
}

#[derive(Debug, Deserialize)]
pub struct GraphModule {
    pub graph: Graph,
    pub signature: GraphSignature,
}

#[derive(Debug, Deserialize)]
pub struct Graph {
    pub inputs: Vec<Argument>,
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub tensor_values: BTreeMap<String, TensorMeta>,
}

#[derive(Debug, Deserialize)]
pub struct Node {
    pub target: String,
    pub inputs: Vec<NamedArgument>,
    pub outputs: Vec<Argument>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NamedArgument {
    pub name: String,
    pub arg: Argument,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TensorArgument {
    pub name: String,
}

/// A size, an int inside a list, or a symbolic int by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymIntArgument {
    AsName(String),
    AsInt(i64),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymFloatArgument {
    AsName(String),
    AsFloat(f64),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymBoolArgument {
    AsName(String),
    AsBool(bool),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionalTensorArgument {
    AsTensor(TensorArgument),
    AsNone(IgnoredAny),
}

/// An argument or an output: the schema's `Argument` union (its variants
/// are named as the file spells them).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Argument {
    AsNone(IgnoredAny),
    AsTensor(TensorArgument),
    AsTensors(Vec<TensorArgument>),
    AsInt(i64),
    AsInts(Vec<i64>),
    AsFloat(f64),
    AsFloats(Vec<f64>),
    AsString(String),
    AsStrings(IgnoredAny),
    AsSymInt(SymIntArgument),
    AsSymInts(Vec<SymIntArgument>),
    AsScalarType(i64),
    AsMemoryFormat(i64),
    AsLayout(i64),
    AsDevice(IgnoredAny),
    AsBool(bool),
    AsBools(Vec<bool>),
    AsSymBool(SymBoolArgument),
    AsSymBools(IgnoredAny),
    AsGraph(IgnoredAny),
    AsOptionalTensors(Vec<OptionalTensorArgument>),
    AsCustomObj(IgnoredAny),
    AsOperator(IgnoredAny),
    AsSymFloat(SymFloatArgument),
    AsSymFloats(IgnoredAny),
    AsOptionalTensor(OptionalTensorArgument),
    AsComplex(IgnoredAny),
    AsNestedTensors(IgnoredAny),
    AsIntLists(IgnoredAny),
    AsStringToArgument(IgnoredAny),
}

impl Argument {
    /// The variant's name as the file spells it, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Argument::AsNone(_) => "as_none",
            Argument::AsTensor(_) => "as_tensor",
            Argument::AsTensors(_) => "as_tensors",
            Argument::AsInt(_) => "as_int",
            Argument::AsInts(_) => "as_ints",
            Argument::AsFloat(_) => "as_float",
            Argument::AsFloats(_) => "as_floats",
            Argument::AsString(_) => "as_string",
            Argument::AsStrings(_) => "as_strings",
            Argument::AsSymInt(_) => "as_sym_int",
            Argument::AsSymInts(_) => "as_sym_ints",
            Argument::AsScalarType(_) => "as_scalar_type",
            Argument::AsMemoryFormat(_) => "as_memory_format",
            Argument::AsLayout(_) => "as_layout",
            Argument::AsDevice(_) => "as_device",
            Argument::AsBool(_) => "as_bool",
            Argument::AsBools(_) => "as_bools",
            Argument::AsSymBool(_) => "as_sym_bool",
            Argument::AsSymBools(_) => "as_sym_bools",
            Argument::AsGraph(_) => "as_graph",
            Argument::AsOptionalTensors(_) => "as_optional_tensors",
            Argument::AsCustomObj(_) => "as_custom_obj",
            Argument::AsOperator(_) => "as_operator",
            Argument::AsSymFloat(_) => "as_sym_float",
            Argument::AsSymFloats(_) => "as_sym_floats",
            Argument::AsOptionalTensor(_) => "as_optional_tensor",
            Argument::AsComplex(_) => "as_complex",
            Argument::AsNestedTensors(_) => "as_nested_tensors",
            Argument::AsIntLists(_) => "as_int_lists",
            Argument::AsStringToArgument(_) => "as_string_to_argument",
        }
    }
}

/// A size or stride: a constant or a symbolic expression with a hint.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymInt {
    AsExpr(IgnoredAny),
    AsInt(i64),
}

impl SymInt {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            SymInt::AsInt(v) => Some(*v),
            SymInt::AsExpr(_) => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TensorMeta {
    pub dtype: i64,
    pub sizes: Vec<SymInt>,
    #[serde(default)]
    pub requires_grad: bool,
    #[serde(default)]
    pub strides: Vec<SymInt>,
    #[serde(default)]
    pub storage_offset: Option<SymInt>,
    #[serde(default)]
    pub layout: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct GraphSignature {
    pub input_specs: Vec<InputSpec>,
    pub output_specs: Vec<OutputSpec>,
}

#[derive(Debug, Deserialize)]
pub struct UserInputSpec {
    pub arg: Argument,
}

#[derive(Debug, Deserialize)]
pub struct ParameterSpec {
    pub arg: TensorArgument,
    pub parameter_name: String,
}

#[derive(Debug, Deserialize)]
pub struct BufferSpec {
    pub arg: TensorArgument,
    pub buffer_name: String,
    #[serde(default = "yes")]
    pub persistent: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct TensorConstantSpec {
    pub arg: TensorArgument,
    pub tensor_constant_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputSpec {
    UserInput(UserInputSpec),
    Parameter(ParameterSpec),
    Buffer(BufferSpec),
    TensorConstant(TensorConstantSpec),
    CustomObj(IgnoredAny),
    Token(IgnoredAny),
    ConstantInput(IgnoredAny),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputSpec {
    UserOutput(UserInputSpec),
    LossOutput(IgnoredAny),
    BufferMutation(IgnoredAny),
    GradientToParameter(IgnoredAny),
    GradientToUserInput(IgnoredAny),
    UserInputMutation(IgnoredAny),
    Token(IgnoredAny),
    ParameterMutation(IgnoredAny),
}

impl OutputSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            OutputSpec::UserOutput(_) => "user_output",
            OutputSpec::LossOutput(_) => "loss_output",
            OutputSpec::BufferMutation(_) => "buffer_mutation",
            OutputSpec::GradientToParameter(_) => "gradient_to_parameter",
            OutputSpec::GradientToUserInput(_) => "gradient_to_user_input",
            OutputSpec::UserInputMutation(_) => "user_input_mutation",
            OutputSpec::Token(_) => "token",
            OutputSpec::ParameterMutation(_) => "parameter_mutation",
        }
    }
}

/// `data/weights/<name>_weights_config.json` and the constants' twin.
#[derive(Debug, Deserialize)]
pub struct PayloadConfig {
    pub config: BTreeMap<String, PayloadMeta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PayloadMeta {
    pub path_name: String,
    #[serde(default)]
    pub use_pickle: bool,
    #[serde(default)]
    pub tensor_meta: Option<TensorMeta>,
}

/// The schema's `ScalarType` codes (not c10's) → libtorch kinds.
pub fn kind_of(code: i64) -> Option<tch::Kind> {
    use tch::Kind::*;
    Some(match code {
        1 => Uint8,
        2 => Int8,
        3 => Int16,
        4 => Int,
        5 => Int64,
        6 => Half,
        7 => Float,
        8 => Double,
        12 => Bool,
        13 => BFloat16,
        _ => return None,
    })
}

/// The schema's `ScalarType` code → c10's `ScalarType` number.
pub fn c10_scalar_type(code: i64) -> Option<i64> {
    Some(match code {
        1 => 0,   // Byte
        2 => 1,   // Char
        3 => 2,   // Short
        4 => 3,   // Int
        5 => 4,   // Long
        6 => 5,   // Half
        7 => 6,   // Float
        8 => 7,   // Double
        9 => 8,   // ComplexHalf
        10 => 9,  // ComplexFloat
        11 => 10, // ComplexDouble
        12 => 11, // Bool
        13 => 15, // BFloat16
        _ => return None,
    })
}
