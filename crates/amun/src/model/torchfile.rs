//! PyTorch `.pt` files (the zip format of `torch.save`, PyTorch ≥ 1.6),
//! read and written without Python and without ever executing pickle code.
//!
//! The reader is a restricted unpickler: it understands the opcodes a state
//! dict uses and resolves only an allowlist of globals (OrderedDict, tensor
//! rebuilding, typed storages). Anything else — a class, `os.system`, any
//! callable — is refused by name before anything could run, exactly as
//! `torch.load(weights_only=True)` refuses it.
use crate::error::{Error, IoContext, Result};
use crate::fsutil::TempPath;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use tch::{Kind, Tensor};

/// A value of the restricted pickle machine.
#[derive(Debug, Clone)]
enum V {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(String, String),
    Storage {
        kind: Kind,
        key: String,
        numel: usize,
    },
    Tensor(TensorRef),
    Mark,
}

/// Containers nested deeper than this are refused. A state dict nests a few
/// levels (dict → tensor arguments → size tuple); the bound keeps every
/// recursion over a value (drop included) shallow, whatever the file says.
const MAX_DEPTH: usize = 64;

/// Values the unpickler may copy (memo puts and gets; a string counts its
/// bytes) per byte of pickle. A state dict copies a few small values per
/// tensor; without a bound, a memo get of a value built from memo gets
/// doubles it at every step (a few hundred bytes would fill any memory).
const COPY_BUDGET_PER_BYTE: usize = 16;

/// Most dimensions a tensor may have.
const MAX_DIMS: usize = 64;

impl V {
    /// Nesting depth (1 for a scalar). No value on the unpickler's stack or
    /// memo is deeper than [`MAX_DEPTH`], so this recursion is bounded.
    fn depth(&self) -> usize {
        match self {
            V::Tuple(t) | V::List(t) => 1 + t.iter().map(V::depth).max().unwrap_or(0),
            V::Dict(d) => {
                1 + d
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0)
            }
            _ => 1,
        }
    }

    /// What a copy costs: one per value, plus string bytes.
    fn weight(&self) -> usize {
        match self {
            V::Str(s) => 1 + s.len(),
            V::Global(m, n) => 1 + m.len() + n.len(),
            V::Storage { key, .. } => 1 + key.len(),
            V::Tensor(t) => 1 + t.key.len() + t.size.len() + t.stride.len(),
            V::Tuple(t) | V::List(t) => 1 + t.iter().map(V::weight).sum::<usize>(),
            V::Dict(d) => {
                1 + d
                    .iter()
                    .map(|(k, v)| k.weight() + v.weight())
                    .sum::<usize>()
            }
            _ => 1,
        }
    }
}

/// A tensor as the pickle describes it: a view of a stored buffer.
#[derive(Debug, Clone)]
struct TensorRef {
    kind: Kind,
    key: String,
    numel: usize,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

const STORAGES: &[(&str, Kind)] = &[
    ("FloatStorage", Kind::Float),
    ("DoubleStorage", Kind::Double),
    ("HalfStorage", Kind::Half),
    ("BFloat16Storage", Kind::BFloat16),
    ("LongStorage", Kind::Int64),
    ("IntStorage", Kind::Int),
    ("ShortStorage", Kind::Int16),
    ("CharStorage", Kind::Int8),
    ("ByteStorage", Kind::Uint8),
    ("BoolStorage", Kind::Bool),
];

fn allowed(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("collections", "OrderedDict")
            | ("torch._utils", "_rebuild_tensor_v2")
            | ("torch._utils", "_rebuild_parameter")
    ) || (module == "torch" && STORAGES.iter().any(|(n, _)| *n == name))
}

fn elem_size(k: Kind) -> usize {
    match k {
        Kind::Double | Kind::Int64 => 8,
        Kind::Float | Kind::Int => 4,
        Kind::Half | Kind::BFloat16 | Kind::Int16 => 2,
        _ => 1,
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: HashMap<u32, V>,
    path: &'a Path,
    /// What memo puts and gets may still copy ([`COPY_BUDGET_PER_BYTE`]).
    budget: usize,
}

impl<'a> Unpickler<'a> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(
            self.path,
            format!("{} (pickle byte {})", msg.into(), self.pos),
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        // (`pos + n` could overflow: lengths come from the file.)
        if n > self.data.len() - self.pos {
            return Err(self.err("truncated pickle"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String> {
        let start = self.pos;
        while self.pos < self.data.len() && self.data[self.pos] != b'\n' {
            self.pos += 1;
        }
        let s = String::from_utf8_lossy(&self.data[start..self.pos]).into_owned();
        self.take(1)?;
        Ok(s)
    }

    fn pop(&mut self) -> Result<V> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<V>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, V::Mark))
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    /// Charges a copy of weight `w` to the copy budget.
    fn charge(&mut self, w: usize) -> Result<()> {
        if w > self.budget {
            return Err(self.err(format!(
                "the pickle copies more than {COPY_BUDGET_PER_BYTE} values per byte of pickle \
                 (memo references that multiply a value); not a state dict"
            )));
        }
        self.budget -= w;
        Ok(())
    }

    /// Memoises a copy of the top of the stack under `i`.
    fn memo_put(&mut self, i: u32) -> Result<()> {
        let w = self
            .stack
            .last()
            .map(V::weight)
            .ok_or_else(|| self.err("empty stack"))?;
        self.charge(w)?;
        if let Some(top) = self.stack.last().cloned() {
            self.memo.insert(i, top);
        }
        Ok(())
    }

    /// Pushes a copy of memo entry `i`.
    fn memo_get(&mut self, i: u32) -> Result<()> {
        let w = self
            .memo
            .get(&i)
            .map(V::weight)
            .ok_or_else(|| self.err(format!("memo {i} unset")))?;
        self.charge(w)?;
        if let Some(v) = self.memo.get(&i).cloned() {
            self.stack.push(v);
        }
        Ok(())
    }

    /// Refuses a container of `items` nested deeper than [`MAX_DEPTH`].
    fn check_nesting<'v>(&self, items: impl IntoIterator<Item = &'v V>) -> Result<()> {
        let inner = items.into_iter().map(V::depth).max().unwrap_or(0);
        if inner + 1 > MAX_DEPTH {
            return Err(self.err(format!(
                "containers nested more than {MAX_DEPTH} deep; not a state dict"
            )));
        }
        Ok(())
    }

    fn str(&mut self, n: usize) -> Result<V> {
        let b = self.take(n)?;
        Ok(V::Str(
            String::from_utf8(b.to_vec()).map_err(|_| self.err("invalid UTF-8 string"))?,
        ))
    }

    fn global(&mut self, module: String, name: String) -> Result<V> {
        if !allowed(&module, &name) {
            return Err(self.err(format!(
                "refusing to load `{module}.{name}`: amun reads only tensors, numbers and dicts from .pt files \
                 (weights-only); nothing in the file was executed"
            )));
        }
        Ok(V::Global(module, name))
    }

    fn run(mut self) -> Result<V> {
        loop {
            let op = self.u8()?;
            if op == b'.' {
                return self.pop();
            }
            // Each group handles its own opcodes and passes on the others.
            let known = self.framing_op(op)?
                || self.memo_op(op)?
                || self.sequence_op(op)?
                || self.dict_op(op)?
                || self.scalar_op(op)?
                || self.string_op(op)?
                || self.object_op(op)?;
            if !known {
                return Err(self.err(format!(
                    "unsupported pickle opcode 0x{op:02x}; amun reads state dicts saved by torch.save"
                )));
            }
        }
    }

    /// PROTO, FRAME (skipped), GLOBAL and STACK_GLOBAL (allowlisted).
    fn framing_op(&mut self, op: u8) -> Result<bool> {
        match op {
            0x80 => {
                self.u8()?;
            }
            0x95 => {
                self.take(8)?;
            }
            b'c' => {
                let (m, n) = (self.line()?, self.line()?);
                let g = self.global(m, n)?;
                self.stack.push(g);
            }
            0x93 => {
                let (n, m) = (self.pop()?, self.pop()?);
                let (V::Str(m), V::Str(n)) = (m, n) else {
                    return Err(self.err("STACK_GLOBAL without strings"));
                };
                let g = self.global(m, n)?;
                self.stack.push(g);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The memo: BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET.
    fn memo_op(&mut self, op: u8) -> Result<bool> {
        match op {
            b'q' => {
                let i = u32::from(self.u8()?);
                self.memo_put(i)?;
            }
            b'r' => {
                let i = self.u32()?;
                self.memo_put(i)?;
            }
            0x94 => {
                let i = self.memo.len() as u32;
                self.memo_put(i)?;
            }
            b'h' | b'j' => {
                let i = if op == b'h' {
                    u32::from(self.u8()?)
                } else {
                    self.u32()?
                };
                self.memo_get(i)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Marks, tuples and lists.
    fn sequence_op(&mut self, op: u8) -> Result<bool> {
        match op {
            b'(' => self.stack.push(V::Mark),
            b')' => self.stack.push(V::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.check_nesting(&items)?;
                self.stack.push(V::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if self.stack.len() < n {
                    return Err(self.err("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.check_nesting(&items)?;
                self.stack.push(V::Tuple(items));
            }
            b']' => self.stack.push(V::List(Vec::new())),
            b'a' => {
                let v = self.pop()?;
                self.check_nesting([&v])?;
                match self.stack.last_mut() {
                    Some(V::List(l)) => l.push(v),
                    _ => return Err(self.err("APPEND to a non-list")),
                }
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.check_nesting(&items)?;
                match self.stack.last_mut() {
                    Some(V::List(l)) => l.extend(items),
                    _ => return Err(self.err("APPENDS to a non-list")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// EMPTY_DICT, SETITEM and SETITEMS.
    fn dict_op(&mut self, op: u8) -> Result<bool> {
        match op {
            b'}' => self.stack.push(V::Dict(Vec::new())),
            b's' => {
                let (v, k) = (self.pop()?, self.pop()?);
                self.check_nesting([&k, &v])?;
                match self.stack.last_mut() {
                    Some(V::Dict(d)) => d.push((k, v)),
                    _ => return Err(self.err("SETITEM on a non-dict")),
                }
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.check_nesting(&items)?;
                if items.len() % 2 != 0 {
                    return Err(self.err("SETITEMS with an odd number of items"));
                }
                let mut it = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                match self.stack.last_mut() {
                    Some(V::Dict(d)) => d.extend(pairs),
                    _ => return Err(self.err("SETITEMS on a non-dict")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Integers, floats (their value is not kept), booleans and None.
    fn scalar_op(&mut self, op: u8) -> Result<bool> {
        match op {
            b'J' => {
                let b = self.take(4)?;
                self.stack.push(V::Int(i64::from(i32::from_le_bytes([
                    b[0], b[1], b[2], b[3],
                ]))));
            }
            b'K' => {
                let v = self.u8()?;
                self.stack.push(V::Int(i64::from(v)));
            }
            b'M' => {
                let b = self.take(2)?;
                self.stack
                    .push(V::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
            }
            0x8a => {
                let n = usize::from(self.u8()?);
                let b = self.take(n)?;
                if n > 8 {
                    return Err(self.err("integer wider than 64 bits"));
                }
                let mut buf = if b.last().is_some_and(|x| x & 0x80 != 0) {
                    [0xffu8; 8]
                } else {
                    [0u8; 8]
                };
                buf[..n].copy_from_slice(b);
                self.stack.push(V::Int(i64::from_le_bytes(buf)));
            }
            b'G' => {
                self.take(8)?;
                self.stack.push(V::Float);
            }
            0x88 => self.stack.push(V::Bool),
            0x89 => self.stack.push(V::Bool),
            b'N' => self.stack.push(V::None),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// BINUNICODE, SHORT_BINUNICODE and BINUNICODE8.
    fn string_op(&mut self, op: u8) -> Result<bool> {
        let n = match op {
            b'X' => self.u32()? as usize,
            0x8c => usize::from(self.u8()?),
            0x8d => {
                let b = self.take(8)?;
                u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize
            }
            _ => return Ok(false),
        };
        let s = self.str(n)?;
        self.stack.push(s);
        Ok(true)
    }

    /// BINPERSID (a tensor's storage), REDUCE (allowlisted calls) and BUILD.
    fn object_op(&mut self, op: u8) -> Result<bool> {
        match op {
            b'Q' => {
                let pid = self.pop()?;
                let storage = self.persistent(pid)?;
                self.stack.push(storage);
            }
            b'R' => {
                let (args, f) = (self.pop()?, self.pop()?);
                let v = self.reduce(f, args)?;
                self.stack.push(v);
            }
            b'b' => {
                // BUILD: a state dict's `_metadata`; nothing to keep.
                self.pop()?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn persistent(&self, pid: V) -> Result<V> {
        let V::Tuple(t) = pid else {
            return Err(self.err("persistent id is not a tuple"));
        };
        match t.as_slice() {
            [
                V::Str(tag),
                V::Global(_, ty),
                V::Str(key),
                _loc,
                V::Int(numel),
            ] if tag == "storage" => {
                let kind = STORAGES
                    .iter()
                    .find(|(n, _)| n == ty)
                    .map(|(_, k)| *k)
                    .ok_or_else(|| self.err(format!("unsupported storage type {ty}")))?;
                Ok(V::Storage {
                    kind,
                    key: key.clone(),
                    numel: usize::try_from(*numel)
                        .map_err(|_| self.err("negative storage size"))?,
                })
            }
            _ => {
                Err(self
                    .err("persistent id is not a ('storage', type, key, location, numel) tuple"))
            }
        }
    }

    fn reduce(&self, f: V, args: V) -> Result<V> {
        let V::Global(m, n) = f else {
            return Err(self.err("REDUCE of a non-callable"));
        };
        let V::Tuple(args) = args else {
            return Err(self.err("REDUCE arguments are not a tuple"));
        };
        let ints = |v: &V| -> Result<Vec<i64>> {
            match v {
                V::Tuple(t) => t
                    .iter()
                    .map(|x| match x {
                        V::Int(i) => Ok(*i),
                        _ => Err(self.err("tensor size/stride is not a tuple of ints")),
                    })
                    .collect(),
                _ => Err(self.err("tensor size/stride is not a tuple")),
            }
        };
        match (m.as_str(), n.as_str()) {
            ("collections", "OrderedDict") => Ok(V::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2") => match args.as_slice() {
                [
                    V::Storage { kind, key, numel },
                    V::Int(offset),
                    size,
                    stride,
                    ..,
                ] => Ok(V::Tensor(TensorRef {
                    kind: *kind,
                    key: key.clone(),
                    numel: *numel,
                    offset: *offset,
                    size: ints(size)?,
                    stride: ints(stride)?,
                })),
                _ => Err(self.err("unexpected _rebuild_tensor_v2 arguments")),
            },
            ("torch._utils", "_rebuild_parameter") => match args.into_iter().next() {
                Some(t @ V::Tensor(_)) => Ok(t),
                _ => Err(self.err("unexpected _rebuild_parameter arguments")),
            },
            _ => Err(self.err(format!("refusing to call `{m}.{n}`"))),
        }
    }
}

/// Reads the tensors of a `torch.save(state_dict)` file (also a dict that
/// holds one under `state_dict`, `model` or `net`), by name, on the CPU.
/// As with `torch.load`, tensors that share a storage are views of one copy
/// of it. Everything the file states (lengths, element counts, sizes,
/// strides, nesting) is checked before it is used or allocated.
pub fn read_pt(path: &Path) -> Result<Vec<(String, Tensor)>> {
    crate::fsutil::require_regular(path, "PyTorch weights (a torch.save file)")?;
    let file = std::fs::File::open(path).at(path)?;
    let mut magic = [0u8; 4];
    let _ = (&file).read(&mut magic);
    if magic != *b"PK\x03\x04" {
        return Err(Error::format(
            path,
            "not a zip-format .pt file: the legacy (PyTorch < 1.6) format is not read; re-save it with \
             torch.save(model.state_dict(), f) in PyTorch ≥ 1.6, or as .safetensors",
        ));
    }
    let file = std::fs::File::open(path).at(path)?;
    let zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::format(path, format!("not a readable zip (truncated?): {e}")))?;
    read_pt_zip(zip, path, false)
}

/// Reads a tensor pickled with `torch.save(tensor)` inside another file (a
/// `.pt2` payload), through the same restricted unpickler; `what` names it
/// in errors.
pub(crate) fn read_pt_tensor(bytes: &[u8], what: &Path) -> Result<Tensor> {
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(Error::format(
            what,
            "a pickled payload that is not in torch.save's zip format",
        ));
    }
    let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::format(what, format!("not a readable zip (truncated?): {e}")))?;
    let mut v = read_pt_zip(zip, what, true)?;
    match v.pop() {
        Some((_, t)) if v.is_empty() => Ok(t),
        _ => Err(Error::format(what, "the pickle holds no single tensor")),
    }
}

fn read_pt_zip<R: Read + std::io::Seek>(
    mut zip: zip::ZipArchive<R>,
    path: &Path,
    bare_tensor: bool,
) -> Result<Vec<(String, Tensor)>> {
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("/data.pkl") || n == "data.pkl")
        .ok_or_else(|| Error::format(path, "no data.pkl inside; not a torch.save file"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)
        .map_err(|e| Error::format(path, e.to_string()))?
        .read_to_end(&mut pkl)
        .map_err(|e| Error::format(path, format!("reading {pkl_name}: {e}")))?;
    let root = Unpickler {
        data: &pkl,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        path,
        budget: pkl
            .len()
            .saturating_mul(COPY_BUDGET_PER_BYTE)
            .saturating_add(4096),
    }
    .run()?;
    let entries = match root {
        V::Tensor(t) if bare_tensor => vec![(String::new(), t)],
        root => tensor_dict(root, path)?,
    };
    // Each storage is read once and shared by the tensors that view it, as
    // torch.load does: many tensors over one storage cost one copy of it.
    let mut storages: HashMap<String, (Kind, usize, Tensor)> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (name, r) in entries {
        let bad = |msg: String| Error::format(path, format!("{name}: {msg}"));
        let want = r.numel.checked_mul(elem_size(r.kind)).ok_or_else(|| {
            bad(format!(
                "a storage of {} elements of {:?} is larger than any file",
                r.numel, r.kind
            ))
        })?;
        check_view(&r).map_err(&bad)?;
        let flat = match storages.get(&r.key) {
            Some((kind, numel, t)) => {
                if (*kind, *numel) != (r.kind, r.numel) {
                    return Err(bad(format!(
                        "storage {} is described twice, as {numel} {kind:?} and as {} {:?}",
                        r.key, r.numel, r.kind
                    )));
                }
                t.shallow_clone()
            }
            None => {
                let rec = format!("{prefix}data/{}", r.key);
                let mut entry = zip
                    .by_name(&rec)
                    .map_err(|e| bad(format!("storage {rec}: {e}")))?;
                // Read what the storage needs (and one byte more, so a
                // record of exactly that size is read to its end and its
                // CRC-32 checked), never what the record claims.
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(want as u64 + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(format!("storage {rec} is unreadable or truncated: {e}")))?;
                if bytes.len() < want {
                    return Err(bad(format!(
                        "storage {rec} has {} bytes, needs {want} (truncated)",
                        bytes.len()
                    )));
                }
                let t = Tensor::f_from_data_size(&bytes[..want], &[r.numel as i64], r.kind)
                    .map_err(|e| bad(e.to_string()))?;
                storages.insert(r.key.clone(), (r.kind, r.numel, t.shallow_clone()));
                t
            }
        };
        let t = flat
            .f_as_strided(r.size.as_slice(), r.stride.as_slice(), r.offset)
            .map_err(|e| bad(e.to_string()))?;
        out.push((name, t));
    }
    Ok(out)
}

/// Checks that the view `r` describes lies inside its storage and holds no
/// more elements than it (views that repeat elements, such as `expand`,
/// would multiply the storage when copied: refused). Sizes, strides and
/// the offset come from the file, so the arithmetic is checked.
fn check_view(r: &TensorRef) -> std::result::Result<(), String> {
    view_fits(&r.size, &r.stride, r.offset, r.numel)
}

/// Whether a view of `size`/`stride` at `offset` lies inside a storage of
/// `numel` elements and holds no more elements than it.
pub(crate) fn view_fits(
    size: &[i64],
    stride: &[i64],
    offset: i64,
    numel: usize,
) -> std::result::Result<(), String> {
    let r = TensorRef {
        kind: Kind::Uint8,
        key: String::new(),
        numel,
        offset,
        size: size.to_vec(),
        stride: stride.to_vec(),
    };
    if r.size.len() != r.stride.len() {
        return Err(format!(
            "{} sizes but {} strides",
            r.size.len(),
            r.stride.len()
        ));
    }
    if r.size.len() > MAX_DIMS {
        return Err(format!(
            "{} dimensions; at most {MAX_DIMS} are read",
            r.size.len()
        ));
    }
    if r.offset < 0 || r.size.iter().chain(&r.stride).any(|v| *v < 0) {
        return Err(format!(
            "negative size, stride or offset (size {:?}, stride {:?}, offset {})",
            r.size, r.stride, r.offset
        ));
    }
    let too_big = || {
        format!(
            "a view of size {:?} and stride {:?} does not fit its storage of {} elements",
            r.size, r.stride, r.numel
        )
    };
    let mut numel: u128 = 1;
    for s in &r.size {
        numel = numel.checked_mul(*s as u128).ok_or_else(too_big)?;
    }
    if numel == 0 {
        return Ok(());
    }
    // The last element the view reaches, which must lie in the storage.
    let mut last = r.offset as u128;
    for (s, st) in r.size.iter().zip(&r.stride) {
        let reach = (*s as u128 - 1)
            .checked_mul(*st as u128)
            .ok_or_else(too_big)?;
        last = last.checked_add(reach).ok_or_else(too_big)?;
    }
    if last >= r.numel as u128 || numel > r.numel as u128 {
        return Err(too_big());
    }
    Ok(())
}

fn tensor_dict(v: V, path: &Path) -> Result<Vec<(String, TensorRef)>> {
    let V::Dict(items) = v else {
        return Err(Error::format(path, "the file holds no dict of tensors"));
    };
    if items.iter().all(|(_, v)| matches!(v, V::Tensor(_))) {
        return items
            .into_iter()
            .map(|(k, v)| match (k, v) {
                (V::Str(k), V::Tensor(t)) => Ok((k, t)),
                _ => Err(Error::format(path, "a state-dict key is not a string")),
            })
            .collect();
    }
    let keys: Vec<String> = items
        .iter()
        .filter_map(|(k, _)| {
            if let V::Str(s) = k {
                Some(s.clone())
            } else {
                None
            }
        })
        .collect();
    for want in ["state_dict", "model", "net", "model_state_dict"] {
        if let Some((_, inner)) = items
            .iter()
            .find(|(k, _)| matches!(k, V::Str(s) if s == want))
        {
            return tensor_dict(inner.clone(), path);
        }
    }
    Err(Error::format(
        path,
        format!(
            "a dict without tensors under the usual keys (found {}); save model.state_dict()",
            keys.join(", ")
        ),
    ))
}

fn storage_name(k: Kind) -> Result<&'static str> {
    STORAGES
        .iter()
        .find(|(_, kk)| *kk == k)
        .map(|(n, _)| *n)
        .ok_or_else(|| Error::invalid("export", format!("no PyTorch storage type for {k:?}")))
}

/// Writes `tensors` as `torch.save(OrderedDict)` would (zip, protocol-2
/// pickle), loadable with `torch.load(..., weights_only=True)`.
pub fn write_pt(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    fn put_str(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    }
    fn put_int(p: &mut Vec<u8>, v: i64) {
        p.push(b'J');
        p.extend((v as i32).to_le_bytes());
    }
    let mut p: Vec<u8> = vec![0x80, 2];
    p.extend(b"ccollections\nOrderedDict\n)R(");
    let mut blobs = Vec::new();
    for (i, (name, t)) in tensors.iter().enumerate() {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let numel = t.numel();
        let size = t.size();
        let mut stride = vec![1i64; size.len()];
        for d in (0..size.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * size[d + 1].max(1);
        }
        put_str(&mut p, name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        put_str(&mut p, "storage");
        p.extend(format!("ctorch\n{}\n", storage_name(t.kind())?).as_bytes());
        put_str(&mut p, &i.to_string());
        put_str(&mut p, "cpu");
        put_int(&mut p, numel as i64);
        p.extend(b"tQ");
        put_int(&mut p, 0);
        p.push(b'(');
        for s in &size {
            put_int(&mut p, *s);
        }
        p.extend(b"t(");
        for s in &stride {
            put_int(&mut p, *s);
        }
        p.extend(b"t\x89ccollections\nOrderedDict\n)RtR");
        let mut bytes = vec![0u8; numel * elem_size(t.kind())];
        if numel > 0 {
            t.flatten(0, -1)
                .view_dtype(Kind::Uint8)
                .f_copy_data_u8(&mut bytes, numel * elem_size(t.kind()))
                .map_err(|e| Error::invalid("export", format!("{name}: {e}")))?;
        }
        blobs.push(bytes);
    }
    p.extend(b"u.");
    let tmp = TempPath::beside(path)?;
    {
        let f = std::fs::File::create(tmp.path()).at(path)?;
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64);
        let io = |e: zip::result::ZipError| Error::invalid("export", e.to_string());
        z.start_file("archive/data.pkl", opts).map_err(io)?;
        z.write_all(&p).at(path)?;
        z.start_file("archive/byteorder", opts).map_err(io)?;
        z.write_all(b"little").at(path)?;
        for (i, b) in blobs.iter().enumerate() {
            z.start_file(format!("archive/data/{i}"), opts)
                .map_err(io)?;
            z.write_all(b).at(path)?;
        }
        z.start_file("archive/version", opts).map_err(io)?;
        z.write_all(b"3\n").at(path)?;
        z.finish().map_err(io)?.sync_all().at(path)?;
    }
    tmp.commit()
}
