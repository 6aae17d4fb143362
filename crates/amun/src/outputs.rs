//! Every file a command writes, checked against every file it reads before
//! any work: an output (or a file written beside it: a sidecar, an
//! adversarial set's metadata, a resume state, a lock) never replaces an
//! input, never lands inside an input folder (a dataset), and never
//! replaces an amun artifact of another kind (a checkpoint, a forget set,
//! an adversarial set, …). A command's own earlier output of the same kind
//! may be replaced: re-running a command is how results are refreshed.
//!
//! Paths are compared as the files they are: through symlinks, and for a
//! file that does not exist yet by its canonical folder and name.
use crate::error::{Error, Result};
use crate::fsutil::{OutputLock, check_output};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a file is, as far as amun can tell from its name and content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Weights with an amun sidecar beside them.
    Checkpoint,
    /// A checkpoint's `.json` sidecar.
    Sidecar,
    /// An adversarial set's tensors (`amun adv`).
    AdvSet,
    /// An adversarial set's `.json` metadata.
    AdvMeta,
    /// A forget set (`amun split`).
    ForgetSet,
    /// A saliency mask (`amun mask`).
    Mask,
    /// Per-sample evaluation (`amun eval --per-sample`).
    PerSample,
    /// A training run's resume state.
    Resume,
    /// Reference models' manifest (`amun rmia train-refs`).
    References,
    /// A registry certificate.
    Certificate,
    /// A run folder's step record (`<artifact>.meta.json`).
    StepMeta,
    /// A receipt `amun registry add` handed out (`--receipt`).
    Receipt,
    /// A registry's anchor (`anchor.log`) or its copy (`--anchor-copy`,
    /// `amun registry anchor --copy`): one chain head a line.
    Anchor,
    /// Weights for PyTorch (`amun export`).
    Export,
    /// An output's lock.
    Lock,
    /// A file amun did not write (or cannot tell).
    Foreign,
}

impl Kind {
    /// The kind, as a phrase for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Checkpoint => "an amun checkpoint",
            Kind::Sidecar => "a checkpoint's sidecar",
            Kind::AdvSet => "an adversarial set",
            Kind::AdvMeta => "an adversarial set's metadata",
            Kind::ForgetSet => "a forget set (a deletion request)",
            Kind::Mask => "a saliency mask",
            Kind::PerSample => "a per-sample evaluation",
            Kind::Resume => "a training run's resume state",
            Kind::References => "the manifest of reference models",
            Kind::Certificate => "a registry certificate",
            Kind::StepMeta => "a run folder's step record",
            Kind::Receipt => "a registry's receipt of a deletion request",
            Kind::Anchor => "a registry's anchor (the chain heads verify checks)",
            Kind::Export => "an exported model",
            Kind::Lock => "a lock",
            Kind::Foreign => "a file amun did not write",
        }
    }

    /// Who records a file of this kind by its sha256, for a message that
    /// refuses to replace it ([`write_recorded`]).
    fn recorded_by(self) -> &'static str {
        match self {
            Kind::ForgetSet => {
                "a retrain made without it (`amun train --exclude`), an audit or a registry \
                 request records its indices' sha256, and would no longer match it"
            }
            Kind::Export => {
                "a model made from it (`--model` or `--checkpoint` with this .pt2) records \
                 its sha256 and could no longer be opened"
            }
            _ => "something made from it may record its sha256",
        }
    }

    /// What the file at `path` is (`Foreign` when it cannot be read).
    pub fn of(path: &Path) -> Kind {
        Found::of(path).kind
    }
}

/// What [`Kind::of`] tells of a file, with how a checkpoint was made: its
/// sidecar's origin, read while telling the kind rather than again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    kind: Kind,
    /// A checkpoint's, when its sidecar is as amun signed it.
    made: Option<Made>,
}

impl Found {
    fn of(path: &Path) -> Found {
        // A folder, a device or a pipe is never opened to be told (a
        // pipe's read waits for a writer: hostile9 OUTFIFO hung there).
        let kind = if path.is_dir() || (path.exists() && !path.is_file()) {
            Kind::Foreign
        } else if is_anchor(path) {
            // Any name: the user chose the copy's (`acopy.json`, `a.log`).
            Kind::Anchor
        } else {
            match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "json" => json_kind(path),
                "safetensors" => return safetensors_kind(path),
                "csv" => csv_kind(path),
                "npy" if is_per_sample_npy(path) => Kind::PerSample,
                "lock" => Kind::Lock,
                "pt2" if crate::model::program::written_by_amun(path) => Kind::Export,
                _ => Kind::Foreign,
            }
        };
        Found { kind, made: None }
    }
}

/// [`Found::of`] of each path one [`Outputs::check`] looks at, told once:
/// telling an amun checkpoint hashes its weights, and a check asks of the
/// same paths for each file an output writes.
#[derive(Debug, Default)]
struct Seen {
    found: std::collections::HashMap<PathBuf, Found>,
    /// How many times a path was asked of.
    asked: usize,
}

impl Seen {
    fn of(&mut self, path: &Path) -> Found {
        self.asked += 1;
        if let Some(f) = self.found.get(path) {
            return *f;
        }
        let f = Found::of(path);
        self.found.insert(path.to_path_buf(), f);
        f
    }
}

/// The `format` of a reference models' manifest (`manifest.json`).
pub const REF_FORMAT: &str = "amun-rmia-refs/1";
/// The `format` of a registry certificate's JSON.
pub const CERTIFICATE_FORMAT: &str = "amun-certificate/1";
/// The `format` of a registry's receipt of a deletion request.
pub const RECEIPT_FORMAT: &str = "amun-receipt/1";

/// A run folder's step record (`experiment::store::Meta`), told by its
/// fields: this module sits below the commands whose files it tells apart.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read only to tell the file's kind
struct StepMetaShape {
    inputs: std::collections::BTreeMap<String, String>,
    seconds: f64,
}

/// An anchor line (`registry::anchor::Head`), told by its fields.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read only to tell the file's kind
struct AnchorLineShape {
    seq: i64,
    hash: String,
    time: String,
    kind: String,
    records: Vec<serde_json::Value>,
}

/// A run folder's `experiment.json` (`experiment::Config`), told by the
/// fields every config has.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read only to tell the folder's kind
struct RunConfigShape {
    name: String,
    seeds: Vec<u64>,
    data: serde_json::Map<String, serde_json::Value>,
    forget: serde_json::Map<String, serde_json::Value>,
    rmia: serde_json::Map<String, serde_json::Value>,
}

fn json_kind(path: &Path) -> Kind {
    match crate::fsutil::read_json::<serde_json::Value>(path) {
        Ok(v) => value_kind(&v),
        Err(_) => Kind::Foreign,
    }
}

/// The kind of a JSON file of content `v`.
fn value_kind(v: &serde_json::Value) -> Kind {
    use serde::Deserialize;
    match v.get("format").and_then(|f| f.as_str()) {
        Some(crate::model::checkpoint::FORMAT) => return Kind::Sidecar,
        Some(crate::attack::ADV_FORMAT) => return Kind::AdvMeta,
        Some(REF_FORMAT) => return Kind::References,
        Some(CERTIFICATE_FORMAT) => return Kind::Certificate,
        Some(RECEIPT_FORMAT) => return Kind::Receipt,
        _ => {}
    }
    if crate::data::ForgetSet::deserialize(v).is_ok() {
        Kind::ForgetSet
    } else if StepMetaShape::deserialize(v).is_ok() {
        Kind::StepMeta
    } else {
        Kind::Foreign
    }
}

/// Whether the file's first line is an anchor line (a chain head), as
/// every line of a registry's anchor and its copy is.
fn is_anchor(path: &Path) -> bool {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    // A head line is short; a binary file is never read whole.
    let mut first = Vec::new();
    let mut r = std::io::BufReader::new(f).take(1 << 20);
    if r.read_until(b'\n', &mut first).is_err() || first.first() != Some(&b'{') {
        return false;
    }
    serde_json::from_slice::<AnchorLineShape>(&first).is_ok()
}

fn safetensors_kind(path: &Path) -> Found {
    // Amun's only when the JSON beside it records these very bytes: a
    // sidecar copied beside a user's weights makes them no checkpoint.
    let beside = path.with_extension("json");
    let text = std::fs::read_to_string(&beside).ok();
    let json = (text.as_deref()).and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
    let kind = match json.as_ref().map(value_kind) {
        Some(Kind::Sidecar) => Some((Kind::Checkpoint, "weights_sha256")),
        Some(Kind::AdvMeta) => Some((Kind::AdvSet, "sha256")),
        _ => None,
    };
    if let (Some((kind, field)), Some(json), Some(text)) = (kind, &json, &text) {
        let recorded = json.get(field).and_then(|v| v.as_str());
        let actual = crate::data::sha256_file(path).ok();
        if recorded.is_none() || recorded != actual.as_deref() {
            return Found {
                kind: Kind::Foreign,
                made: None,
            };
        }
        let made = (kind == Kind::Checkpoint)
            .then(|| Made::of_sidecar(&beside, text))
            .flatten();
        return Found { kind, made };
    }
    let names = tensor_names(path).unwrap_or_default();
    let has = |n: &str| names.iter().any(|x| x == n);
    let kind = if has("__ratio") {
        Kind::Mask
    } else if has("meta.fingerprint") {
        Kind::Resume
    } else if has("confidence") && has("pred") && has("split") {
        Kind::PerSample
    } else {
        Kind::Foreign
    };
    Found { kind, made: None }
}

/// The tensor names of a safetensors file, from its header alone (an
/// 8-byte little-endian length, then that many bytes of JSON).
fn tensor_names(path: &Path) -> Option<Vec<String>> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    // safetensors' own limit on a header.
    if n > 100_000_000 {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header).ok()?;
    Some(map.into_iter().map(|(k, _)| k).collect())
}

fn csv_kind(path: &Path) -> Kind {
    let Ok(f) = std::fs::File::open(path) else {
        return Kind::Foreign;
    };
    let mut first = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut first);
    if first.starts_with("split,index,label,pred,") {
        Kind::PerSample
    } else {
        Kind::Foreign
    }
}

/// Whether `path` is the `.npy` `amun eval --per-sample` writes: a float32
/// matrix of rows `split, index, label, pred, confidence, loss, forget,
/// logit_0…` (at least two classes), train rows (split 0, indices 0, 1, …)
/// then test rows (split 1, from 0 again, none in the forget set), labels
/// and predictions classes. The format has no room for a mark of its
/// own; a user's matrix meets all of this only by being such a table.
fn is_per_sample_npy(path: &Path) -> bool {
    use ndarray_npy::ReadNpyExt;
    // A per-sample table of a million samples is well below this.
    const MAX_BYTES: u64 = 1 << 30;
    if !std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_BYTES) {
        return false;
    }
    let Some(a) = std::fs::File::open(path)
        .ok()
        .and_then(|f| ndarray::Array2::<f32>::read_npy(f).ok())
    else {
        return false;
    };
    let classes = a.ncols().saturating_sub(7) as f32;
    if classes < 2.0 || a.nrows() == 0 {
        return false;
    }
    let is_class = |v: f32| v >= 0.0 && v < classes && v.fract() == 0.0;
    let (mut split, mut next) = (0.0, 0.0);
    for row in a.rows() {
        if row[0] != split {
            // The one change of split: train to test, indices from 0.
            if (split, row[0]) != (0.0, 1.0) {
                return false;
            }
            (split, next) = (1.0, 0.0);
        }
        let forget_ok = row[6] == 0.0 || (row[6] == 1.0 && split == 0.0);
        if row[1] != next || !is_class(row[2]) || !is_class(row[3]) || !forget_ok {
            return false;
        }
        next += 1.0;
    }
    true
}

/// Writes an output that others record by its sha256 through `write`: a
/// forget set (a retrain records the indices it was made without, a
/// registry a request's samples), an exported `.pt2` (a model trained from
/// it records its graph). An existing one under that name is replaced only
/// by the same bytes: `write` makes the new one beside it first, and a
/// different one is refused, the old file left as it is. `flag` names the
/// output in the message.
pub fn write_recorded(
    flag: &str,
    path: &Path,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if !path.exists() {
        return write(path);
    }
    let new = crate::fsutil::TempPath::beside(path)?;
    write(new.path())?;
    let (old_sha, new_sha) = (
        crate::data::sha256_file(path)?,
        crate::data::sha256_file(new.path())?,
    );
    if new_sha == old_sha {
        // The same bytes: nothing to replace (the temporary file goes).
        return Ok(());
    }
    let kind = Kind::of(path);
    Err(Error::invalid(
        format!("{flag} {}", path.display()),
        format!(
            "would replace {} — {}, sha256 {}… — with different content (sha256 {}…): {}; \
             name a new file, or remove {} first if nothing was made from it",
            path.display(),
            kind.describe(),
            crate::fsutil::short_pair(&old_sha, &new_sha).0,
            crate::fsutil::short_pair(&old_sha, &new_sha).1,
            kind.recorded_by(),
            path.display()
        ),
    ))
}

/// What a command writes under one flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// A checkpoint: weights and their `.json` sidecar.
    Checkpoint,
    /// A checkpoint written by training: also its `.resume.safetensors`.
    Trained,
    /// A checkpoint written by unlearning.
    Unlearned,
    /// A checkpoint written by `amun import`.
    Imported,
    /// An adversarial set and its `.json` metadata.
    AdvSet,
    Mask,
    ForgetSet,
    PerSample,
    Export,
    /// A folder of reference models (`manifest.json` and the models).
    References,
    /// An experiment's run folder.
    RunFolder,
}

impl Artifact {
    /// Whether the output is a folder the command writes files into.
    fn is_folder(self) -> bool {
        self.makes().is_some()
    }

    /// The protected folder a folder output makes.
    fn makes(self) -> Option<Holder> {
        match self {
            Artifact::References => Some(Holder::References),
            Artifact::RunFolder => Some(Holder::RunFolder),
            _ => None,
        }
    }
}

/// One file a command writes.
#[derive(Debug, Clone)]
struct Target {
    flag: String,
    /// The path the flag was given.
    named: PathBuf,
    path: PathBuf,
    /// What the file is to the named output (`its sidecar`), if it is not
    /// the named file itself.
    role: Option<&'static str>,
    kind: Kind,
    /// A folder written into (checked against input folders only).
    folder: bool,
    /// Written by a folder output into its own folder (its manifest).
    in_folder_output: bool,
    /// What the folder output this file belongs to makes.
    makes: Option<Holder>,
    /// For a checkpoint, how the command makes it: an existing checkpoint
    /// made another way (a trained original under an unlearned model's
    /// name) is not this command's earlier output.
    made: Option<Made>,
}

/// How a checkpoint was made, as its sidecar's origin says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    Trained,
    Unlearned,
    Imported,
}

impl Made {
    fn of_artifact(a: Artifact) -> Option<Made> {
        match a {
            Artifact::Trained => Some(Made::Trained),
            Artifact::Unlearned => Some(Made::Unlearned),
            Artifact::Imported => Some(Made::Imported),
            _ => None,
        }
    }

    /// How a checkpoint was made, from the `text` of its sidecar at `path`
    /// (`None` when amun did not write it so: what
    /// [`crate::model::checkpoint::read_sidecar`] refuses).
    fn of_sidecar(path: &Path, text: &str) -> Option<Made> {
        use crate::model::{Origin, Sidecar};
        let sc: Sidecar = crate::fsutil::parse_json_signed(path, text, "", "").ok()?;
        Some(match sc.origin {
            Origin::Train { .. } => Made::Trained,
            Origin::Unlearn { .. } => Made::Unlearned,
            Origin::Import { .. } => Made::Imported,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Made::Trained => "a trained model",
            Made::Unlearned => "an unlearned model",
            Made::Imported => "an imported model",
        }
    }
}

/// One file or folder a command reads.
#[derive(Debug, Clone)]
struct Input {
    flag: String,
    what: String,
    path: PathBuf,
    folder: bool,
    /// The file given under `flag` that records this one (a checkpoint
    /// whose sidecar, graph or dataset folder it is), if not that file.
    of: Option<PathBuf>,
    /// Refused when missing: a file the command was given to read (not
    /// one a checkpoint merely records, which its loader looks for).
    required: bool,
}

impl Input {
    /// `--forget f.json (the deletion request)`, or `the exported graph
    /// of --checkpoint g.safetensors (cnn.pt2)`.
    fn describe(&self) -> String {
        match &self.of {
            None => format!("{} {} ({})", self.flag, self.path.display(), self.what),
            Some(of) => format!(
                "{} of {} {} ({})",
                self.what,
                self.flag,
                of.display(),
                self.path.display()
            ),
        }
    }
}

/// Refuses a file a command was given to read that is not there (or is a
/// folder), naming `flag` and `what` was expected, rather than the OS's
/// bare "No such file or directory" under the file's name alone.
/// A pipe, device or socket is refused too, before anything opens it: a
/// pipe nobody writes blocks its reader for good (hostile15 N5c).
pub fn require_file(flag: &str, what: &str, path: &Path) -> Result<()> {
    let msg = match std::fs::metadata(path) {
        Ok(meta) => match crate::fsutil::special_kind(&meta) {
            None => return Ok(()),
            Some(kind) => format!("not a regular file ({kind}); expected {what}"),
        },
        Err(_) => format!("no such file; expected {what}"),
    };
    Err(Error::invalid(format!("{flag} {}", path.display()), msg))
}

/// The files a command reads and writes, checked against each other
/// before any work ([`Outputs::claim`]).
#[derive(Debug, Default)]
pub struct Outputs {
    reads: Vec<Input>,
    writes: Vec<Target>,
}

impl Outputs {
    pub fn new() -> Outputs {
        Outputs::default()
    }

    /// A file or folder the command reads, under `flag` (`--holdout`),
    /// described as `what` (`the held-out data`); its own reader says what
    /// is wrong if it is missing.
    pub fn reads(&mut self, flag: &str, what: &str, path: &Path) -> &mut Self {
        self.input(flag, what, path, None, false)
    }

    /// A file the command reads, under `flag` (`--forget`), described as
    /// `what` (`the deletion request`): refused by [`Outputs::check`] when
    /// it is not there ([`require_file`]).
    pub fn reads_file(&mut self, flag: &str, what: &str, path: &Path) -> &mut Self {
        self.input(flag, what, path, None, true)
    }

    fn input(
        &mut self,
        flag: &str,
        what: &str,
        path: &Path,
        of: Option<&Path>,
        required: bool,
    ) -> &mut Self {
        self.reads.push(Input {
            flag: flag.into(),
            what: what.into(),
            path: path.to_path_buf(),
            folder: path.is_dir(),
            of: of.map(Path::to_path_buf),
            required,
        });
        self
    }

    /// A checkpoint the command reads: its weights, its sidecar, and what
    /// the sidecar names (a dataset folder, an exported model's graph and
    /// init weights). A missing or unreadable sidecar adds only the weights
    /// (the command's own loader says what is wrong).
    pub fn reads_checkpoint(&mut self, flag: &str, path: &Path) -> &mut Self {
        self.reads(flag, "the checkpoint", path);
        let side = crate::model::checkpoint::sidecar_path(path);
        if !side.exists() || side == path {
            return self;
        }
        let of = Some(path);
        self.input(flag, "the sidecar", &side, of, false);
        let Ok(sc) = crate::fsutil::read_json::<crate::model::Sidecar>(&side) else {
            return self;
        };
        self.dataset(flag, &sc.data.dataset, of);
        if let Some(p) = &sc.model.program {
            self.input(flag, "the exported graph", &p.file, of, false);
            if let crate::model::program::ProgramInit::Weights { file, .. } = &p.init {
                self.input(flag, "the initial weights", file, of, false);
            }
        }
        self
    }

    /// An adversarial set the command reads: its tensors and metadata.
    pub fn reads_adv_set(&mut self, flag: &str, path: &Path) -> &mut Self {
        self.reads(flag, "the adversarial set", path);
        let meta = crate::attack::AdvSet::meta_path(path);
        if meta != path {
            self.input(flag, "the metadata", &meta, Some(path), false);
        }
        self
    }

    /// A dataset the command reads: a folder is an input nothing may be
    /// written into; a registry name reads nothing the user owns.
    pub fn reads_dataset(&mut self, flag: &str, dataset: &str) -> &mut Self {
        self.dataset(flag, dataset, None)
    }

    fn dataset(&mut self, flag: &str, dataset: &str, of: Option<&Path>) -> &mut Self {
        if crate::data::Registry::from_name(dataset).is_none() && Path::new(dataset).is_dir() {
            self.input(flag, "the dataset folder", Path::new(dataset), of, false);
        }
        self
    }

    /// An output under `flag` at `path`, with the files written beside it.
    pub fn writes(&mut self, flag: &str, path: &Path, artifact: Artifact) -> &mut Self {
        let (kind, beside): (Kind, Vec<(PathBuf, &'static str, Kind)>) = match artifact {
            Artifact::Checkpoint | Artifact::Trained | Artifact::Unlearned | Artifact::Imported => {
                let mut b = vec![(
                    crate::model::checkpoint::sidecar_path(path),
                    "its sidecar",
                    Kind::Sidecar,
                )];
                if artifact == Artifact::Trained {
                    b.push((
                        crate::train::resume_path(path),
                        "its resume state",
                        Kind::Resume,
                    ));
                }
                (Kind::Checkpoint, b)
            }
            Artifact::AdvSet => (
                Kind::AdvSet,
                vec![(
                    crate::attack::AdvSet::meta_path(path),
                    "its metadata",
                    Kind::AdvMeta,
                )],
            ),
            Artifact::Mask => (Kind::Mask, vec![]),
            Artifact::ForgetSet => (Kind::ForgetSet, vec![]),
            Artifact::PerSample => (Kind::PerSample, vec![]),
            Artifact::Export => (Kind::Export, vec![]),
            Artifact::References => (
                Kind::Foreign,
                vec![(path.join("manifest.json"), "its manifest", Kind::References)],
            ),
            Artifact::RunFolder => (Kind::Foreign, vec![]),
        };
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        let mut all = vec![(path.to_path_buf(), None, kind)];
        all.extend(beside.into_iter().map(|(p, r, k)| (p, Some(r), k)));
        if !artifact.is_folder() {
            all.push((PathBuf::from(lock), Some("its lock"), Kind::Lock));
        }
        for (p, role, kind) in all {
            self.writes.push(Target {
                flag: flag.into(),
                named: path.to_path_buf(),
                folder: artifact.is_folder() && role.is_none(),
                in_folder_output: artifact.is_folder() && role.is_some(),
                makes: artifact.makes(),
                made: Made::of_artifact(artifact).filter(|_| role.is_none()),
                path: p,
                role,
                kind,
            });
        }
        self
    }

    /// Checks every write against every read and against what is on disk,
    /// before any work; names both flags and files.
    pub fn check(&self) -> Result<()> {
        self.check_seen(&mut Seen::default())
    }

    /// [`Outputs::check`], telling each file's kind once into `seen`.
    fn check_seen(&self, seen: &mut Seen) -> Result<()> {
        for r in self.reads.iter().filter(|r| r.required) {
            require_file(&r.flag, &r.what, &r.path)?;
        }
        for w in &self.writes {
            let target = identities(&w.path);
            for r in &self.reads {
                let clash = if r.folder {
                    let dir = canonical_lenient(&r.path);
                    target.iter().any(|t| t.starts_with(&dir))
                } else if w.folder {
                    false
                } else {
                    identities(&r.path).iter().any(|i| target.contains(i))
                };
                if clash {
                    let (verb, rel) = if r.folder {
                        ("write", "inside")
                    } else {
                        ("overwrite", "which is")
                    };
                    return Err(w.refuse(verb, &format!("{rel} {}", r.describe())));
                }
            }
            w.check_protected(seen)?;
            w.check_existing(seen)?;
        }
        Ok(())
    }

    /// The existing checkpoints the named outputs will replace (amun's own
    /// earlier output of their kind, which [`Outputs::check`] lets through),
    /// each described by what its sidecar records, for the command to say
    /// what it replaced: `--out u.safetensors replaces an unlearned model
    /// (ft, forgot 10 samples, indices sha256 …)`. Call before writing.
    pub fn replacing(&self) -> Vec<String> {
        let named = self.writes.iter().filter(|w| w.role.is_none() && !w.folder);
        named
            .filter(|w| w.kind == Kind::Checkpoint && w.path.is_file())
            .filter_map(|w| {
                let sc = crate::model::checkpoint::read_sidecar(&w.path).ok()?;
                Some(format!(
                    "{} {} replaces {}",
                    w.flag,
                    w.path.display(),
                    describe_checkpoint(&sc)
                ))
            })
            .collect()
    }

    /// Each named output checked as a path ([`check_output`], one of
    /// `extensions` per flag), then [`Outputs::check`], then the outputs
    /// claimed ([`OutputLock`]) until the returned value is dropped.
    pub fn claim(&self, extensions: &[(&str, &[&str])]) -> Result<Vec<OutputLock>> {
        // A folder's files are claimed by the library as it writes them.
        let named = || self.writes.iter().filter(|w| w.role.is_none() && !w.folder);
        for w in named() {
            let ext = extensions
                .iter()
                .find(|(f, _)| *f == w.flag)
                .map_or(&[][..], |(_, e)| e);
            check_output(&w.path, ext).map_err(|e| prefix(&w.flag, e))?;
        }
        self.check()?;
        named().map(|w| OutputLock::acquire(&w.path)).collect()
    }
}

impl Target {
    /// A folder output is made in a new or empty folder or one of its own
    /// kind: `rmia train-refs --out` never in a run folder, `experiment
    /// --out` never in reference models or a registry, and never into a
    /// folder of the user's files (`--out .`), which it would write over.
    fn check_folder_output(&self, seen: &mut Seen) -> Result<()> {
        // A file there (or above it) is no folder: refused here, not by the
        // OS once the run starts (or never, for a plan that only reads).
        let file = self
            .path
            .ancestors()
            .find(|p| !p.as_os_str().is_empty() && p.exists() && !p.is_dir());
        if let Some(file) = file {
            let why = if file == self.path {
                "which is a file, not a folder".to_string()
            } else {
                format!("inside {}, which is a file, not a folder", file.display())
            };
            return Err(self.refuse("write into", &why));
        }
        match Holder::of_seen(&self.path, seen) {
            Some(h) if Some(h) != self.makes => Err(self.refuse(
                "write into",
                &format!(
                    "which is {} (its files are written only by {})",
                    h.describe(),
                    h.writer()
                ),
            )),
            // A run folder whose config no longer reads: named as damaged,
            // not as a stranger's folder.
            None if self.makes == Some(Holder::RunFolder)
                && self.path.join("experiment.json").is_file() =>
            {
                let config = self.path.join("experiment.json");
                let why = crate::fsutil::read_json::<RunConfigShape>(&config)
                    .err()
                    .map_or_else(String::new, |e| format!(" ({e})"));
                Err(self.refuse(
                    "write into",
                    &format!(
                        "a run folder whose config {} is damaged{why}: it cannot tell which \
                         experiment made the folder; restore the file, or name a new or empty \
                         folder",
                        config.display()
                    ),
                ))
            }
            None => match first_entry(&self.path) {
                Some(file) => Err(self.refuse(
                    "write into",
                    &format!(
                        "a folder that holds files it did not write ({} among them); name a new \
                         or empty folder, or {}",
                        file.display(),
                        self.makes
                            .map_or("one of its own kind", Holder::describe_one)
                    ),
                )),
                None => Ok(()),
            },
            Some(_) => Ok(()),
        }
    }

    fn refuse(&self, verb: &str, why: &str) -> Error {
        let file = match self.role {
            Some(role) => format!("{} ({role})", self.path.display()),
            None => self.path.display().to_string(),
        };
        Error::invalid(
            format!("{} {}", self.flag, self.named.display()),
            format!("would {verb} {file}, {why}; choose another {}", self.flag),
        )
    }

    /// A registry's folder holds released versions, receipts and
    /// certificates; a reference folder the models and logits its manifest
    /// hashes; an experiment's run folder the steps its plan recorded. Only
    /// their own commands write there: an output could replace such a file
    /// with one of the same kind ([`Target::check_existing`] would let it
    /// through) or with one the folder's manifest does not describe. A
    /// folder output (`rmia train-refs --out`) writes into itself.
    fn check_protected(&self, seen: &mut Seen) -> Result<()> {
        if self.folder {
            self.check_folder_output(seen)?;
        }
        let Some((dir, holder)) = protected_holding_seen(&self.path, seen) else {
            return Ok(());
        };
        if self.in_folder_output
            && dir == canonical_lenient(&self.named)
            && self.makes == Some(holder)
        {
            return Ok(());
        }
        Err(self.refuse(
            "write",
            &format!(
                "inside {} {} (its files are written only by {})",
                holder.describe(),
                dir.display(),
                holder.writer()
            ),
        ))
    }

    /// An existing file may be replaced only by a file of its own kind (a
    /// command run again onto its own output); a file amun did not write
    /// is the user's, whatever its name (a deletion list, weights), and
    /// anything else another artifact. A forget set and an exported `.pt2`
    /// pass here but are written through [`write_recorded`], which replaces
    /// them only with the same bytes.
    fn check_existing(&self, seen: &mut Seen) -> Result<()> {
        if !self.path.exists() || self.kind == Kind::Lock || self.folder {
            return Ok(());
        }
        let Found { kind: found, made } = seen.of(&self.path);
        // A .pt2 amun did not write is a user's torch.export graph (the
        // model itself): no export replaces it.
        let users_graph = self.kind == Kind::Export
            && found == Kind::Foreign
            && self.path.extension().is_some_and(|e| e == "pt2");
        if users_graph {
            return Err(self.refuse(
                "overwrite",
                "a .pt2 amun did not write (a torch.export graph: a model no export replaces)",
            ));
        }
        // A .pt or .safetensors export cannot be told from a PyTorch user's
        // weights (a model's --init among them): an export never replaces
        // an existing file it cannot tell is its own.
        if self.kind == Kind::Export && found == Kind::Foreign {
            return Err(self.refuse(
                "overwrite",
                "an existing file amun cannot tell from a user's PyTorch weights (an export \
                 replaces only a .pt2 amun wrote); remove it first if it is an earlier export",
            ));
        }
        if found == Kind::Checkpoint
            && let Some(want) = self.made
            && let Some(was) = made
            && was != want
        {
            return Err(self.refuse(
                "overwrite",
                &format!(
                    "{} — an amun checkpoint this command does not make (it writes {}); \
                     remove it first if it may go",
                    was.describe(),
                    want.describe()
                ),
            ));
        }
        if found == Kind::Checkpoint
            && self.role.is_none()
            && let Some(child) = unlearned_from(&self.path)
        {
            return Err(self.refuse(
                "overwrite",
                &format!(
                    "the model {} was unlearned from (its sidecar records these weights as its \
                     parent): replacing it would leave that model's lineage naming a model that \
                     is gone; name a new file, or move {} away first",
                    child.display(),
                    self.path.display()
                ),
            ));
        }
        if found == self.kind {
            return Ok(());
        }
        if found == Kind::Foreign {
            // A user's deletion list, a CSV copy of a request, weights:
            // amun cannot tell what else needs it.
            return Err(self.refuse(
                "overwrite",
                "a file amun did not write (an output replaces only amun's own earlier \
                 output of its kind); remove it first if it may go",
            ));
        }
        Err(self.refuse(
            "overwrite",
            &format!("{} this command does not write", found.describe()),
        ))
    }
}

/// What a checkpoint's sidecar says it is, for a message.
fn describe_checkpoint(sc: &crate::model::Sidecar) -> String {
    use crate::model::Origin;
    match &sc.origin {
        Origin::Train { .. } => format!(
            "a trained model ({} on {}{})",
            sc.model.arch,
            sc.data.train_label(),
            crate::train::recipe_of(sc)
                .ok()
                .flatten()
                .map_or(String::new(), |r| format!(", {} epochs", r.epochs))
        ),
        Origin::Unlearn { method, forget, .. } => {
            let reqs: Vec<String> = forget
                .iter()
                .map(crate::model::lineage::short_summary)
                .collect();
            format!(
                "an unlearned model ({method}, forgot {})",
                reqs.join(" and ")
            )
        }
        Origin::Import { from, .. } => format!("an imported model (from {from})"),
    }
}

/// A checkpoint beside `path` (an amun checkpoint) that was unlearned
/// from it: its sidecar, as amun signed it, records the fingerprint of
/// `path`'s weights as its parent. As a forget set others were made from
/// is never replaced ([`write_recorded`]), neither is such a parent. The
/// weights are loaded only when some sibling records a parent.
fn unlearned_from(path: &Path) -> Option<PathBuf> {
    use crate::model::{Origin, Sidecar};
    // A sidecar is small; anything larger beside it is not read.
    const MAX_SIDECAR: u64 = 16 << 20;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let own = crate::model::checkpoint::sidecar_path(path);
    let children: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json") && *p != own)
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= MAX_SIDECAR))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let sc: Sidecar = crate::fsutil::parse_json_signed(&p, &text, "", "").ok()?;
            let weights = p.with_extension("safetensors");
            match sc.origin {
                Origin::Unlearn { parent, .. } if weights.is_file() => Some((weights, parent)),
                _ => None,
            }
        })
        .collect();
    if children.is_empty() {
        return None;
    }
    let (model, _) = crate::model::checkpoint::load(path, tch::Device::Cpu).ok()?;
    let fingerprint = model.fingerprint();
    children
        .into_iter()
        .filter(|(_, parent)| *parent == fingerprint)
        .map(|(child, _)| child)
        .min()
}

/// The first entry (by name) of the folder `dir`, if it is a folder
/// holding any.
fn first_entry(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.filter_map(|e| e.ok().map(|e| e.path())).min()
}

/// The files that make a folder a registry (`registry::db::DB_FILE`,
/// `registry::anchor::FILE`; named here, below the registry, which checks
/// they agree).
pub const REGISTRY_MARKERS: [&str; 2] = ["registry.db", "anchor.log"];

/// A folder whose files only the command that made it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// `amun registry create`'s folder.
    Registry,
    /// Reference models: a `manifest.json` of [`Kind::References`].
    References,
    /// An experiment's run folder: its `experiment.json`.
    RunFolder,
}

impl Holder {
    fn describe(self) -> &'static str {
        match self {
            Holder::Registry => "the registry folder",
            Holder::References => "the reference models' folder",
            Holder::RunFolder => "the experiment's run folder",
        }
    }

    /// The kind, as a phrase for "name … or <this>".
    fn describe_one(self) -> &'static str {
        match self {
            Holder::Registry => "a registry folder",
            Holder::References => "a reference models' folder of these settings",
            Holder::RunFolder => "a run folder of this experiment",
        }
    }

    fn writer(self) -> &'static str {
        match self {
            Holder::Registry => "`amun registry` commands",
            Holder::References => "`amun rmia train-refs` or the experiment that made it",
            Holder::RunFolder => "`amun experiment`",
        }
    }

    /// What the folder `dir` is, if it is one of these.
    pub fn of(dir: &Path) -> Option<Holder> {
        Holder::of_seen(dir, &mut Seen::default())
    }

    fn of_seen(dir: &Path, seen: &mut Seen) -> Option<Holder> {
        if REGISTRY_MARKERS.iter().any(|m| dir.join(m).exists()) {
            Some(Holder::Registry)
        } else if seen.of(&dir.join("manifest.json")).kind == Kind::References {
            Some(Holder::References)
        } else if crate::fsutil::read_json::<RunConfigShape>(&dir.join("experiment.json")).is_ok() {
            Some(Holder::RunFolder)
        } else {
            None
        }
    }
}

/// The registry folder `path` lies inside (through symlinks, as the write
/// would resolve it), if any: only `amun registry` commands write there.
pub fn registry_holding(path: &Path) -> Option<PathBuf> {
    canonical_lenient(path)
        .ancestors()
        .skip(1)
        .find(|d| REGISTRY_MARKERS.iter().any(|m| d.join(m).exists()))
        .map(Path::to_path_buf)
}

/// The nearest folder `path` lies inside (resolved as [`registry_holding`]
/// does) whose files only its own command writes, if any.
pub fn protected_holding(path: &Path) -> Option<(PathBuf, Holder)> {
    protected_holding_seen(path, &mut Seen::default())
}

fn protected_holding_seen(path: &Path, seen: &mut Seen) -> Option<(PathBuf, Holder)> {
    canonical_lenient(path)
        .ancestors()
        .skip(1)
        .find_map(|d| Holder::of_seen(d, seen).map(|h| (d.to_path_buf(), h)))
}

/// Refuses a path a registry command makes (a registry, a receipt, the
/// anchor's copy) that is, or lies inside, a folder only its own command
/// writes: a registry (its versions/ too), reference models, a run folder.
/// `setting` names the flag.
pub fn refuse_held(setting: &str, path: &Path) -> Result<()> {
    let held = Holder::of(path)
        .map(|h| (canonical_lenient(path), h))
        .or_else(|| protected_holding(path));
    match held {
        Some((dir, h)) => Err(Error::invalid(
            setting,
            format!(
                "{}: inside {} {} (its files are written only by {}); name a path outside {}",
                path.display(),
                h.describe(),
                dir.display(),
                h.writer(),
                h.describe()
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses a file a registry appends its evidence to (a receipt, the
/// anchor's copy) that is a symbolic link (whatever it points to, now or
/// later, would be written: another registry's released version among
/// them) or lies where [`refuse_held`] refuses.
pub fn refuse_evidence_path(setting: &str, path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::invalid(
            setting,
            format!(
                "{}: a symbolic link; name the file itself (a link's target, now or later, \
                 would be written)",
                path.display()
            ),
        ));
    }
    refuse_held(setting, path)
}

/// Whether `a` and `b` name the same file (through symlinks; for a file
/// that does not exist, the same folder and name).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let b = identities(b);
    identities(a).iter().any(|i| b.contains(i))
}

/// Whether `path` lies inside the folder `dir` (both resolved as
/// [`registry_holding`] does), e.g. a registry not created yet.
pub fn lies_inside(path: &Path, dir: &Path) -> bool {
    canonical_lenient(path).starts_with(canonical_lenient(dir))
}

fn prefix(flag: &str, e: Error) -> Error {
    match e {
        Error::Invalid { what, msg } => Error::invalid(format!("{flag} {what}"), msg),
        e => e,
    }
}

/// The names a path goes by: the file it resolves to (through symlinks),
/// and its entry (canonical folder + name: what a rename onto it replaces,
/// and the only name of a file that does not exist yet).
fn identities(p: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(c) = p.canonicalize() {
        v.push(c);
    }
    if let Some(name) = p.file_name() {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        v.push(canonical_lenient(parent).join(name));
    }
    v
}

/// `p` canonicalised as far as it exists, the rest appended as the OS
/// would resolve it (`..` after a folder that does not exist yet too: the
/// write makes that folder first).
fn canonical_lenient(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut acc = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                acc.pop();
            }
            std::path::Component::CurDir => {}
            other => {
                acc.push(other);
                if let Ok(real) = acc.canonicalize() {
                    acc = real;
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_check_tells_each_file_once() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        let w = dir.join("m.safetensors");
        std::fs::write(&w, b"weights").unwrap();
        let sha = crate::data::sha256_file(&w).unwrap();
        let side = serde_json::json!({
            "format": crate::model::checkpoint::FORMAT,
            "weights_sha256": sha,
        });
        std::fs::write(dir.join("m.json"), side.to_string()).unwrap();
        assert_eq!(Kind::of(&w), Kind::Checkpoint);
        let mut o = Outputs::new();
        o.writes("--out", &w, Artifact::Checkpoint);
        let mut seen = Seen::default();
        o.check_seen(&mut seen).unwrap();
        // The weights (hashed), their sidecar, and each folder above the
        // three files the output writes, asked of once per file.
        assert_eq!(seen.found[&w].kind, Kind::Checkpoint);
        assert!(seen.asked > seen.found.len(), "{seen:?}");
        let told = seen.found.len();
        o.check_seen(&mut seen).unwrap();
        assert_eq!(seen.found.len(), told);
    }

    #[test]
    fn writing_inside_a_registry_is_refused_beside_it_allowed() {
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("reg");
        std::fs::create_dir_all(reg.join("versions")).unwrap();
        std::fs::write(reg.join("anchor.log"), b"").unwrap();
        for out in [
            "versions/v0002.safetensors",
            "receipts/r0001.json",
            "x.safetensors",
        ] {
            let mut o = Outputs::new();
            o.writes("--out", &reg.join(out), Artifact::Checkpoint);
            let e = o.check().unwrap_err().to_string();
            assert!(e.contains("inside the registry"), "{out}: {e}");
        }
        let mut o = Outputs::new();
        o.writes(
            "--out",
            &d.path().join("beside.safetensors"),
            Artifact::Checkpoint,
        );
        o.check().unwrap();
    }

    #[test]
    fn the_registry_holding_a_path_is_found_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("reg");
        std::fs::create_dir_all(&reg).unwrap();
        std::fs::write(reg.join("registry.db"), b"").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&reg, &link).unwrap();
        let real = reg.canonicalize().unwrap();
        for p in [
            "reg/versions/v0002.json",
            "link/receipts/r0004.json",
            "x/../reg/a",
        ] {
            assert_eq!(
                registry_holding(&d.path().join(p)),
                Some(real.clone()),
                "{p}"
            );
        }
        assert_eq!(registry_holding(&d.path().join("beside.json")), None);
        assert_eq!(
            registry_holding(&reg),
            None,
            "the folder itself is not inside"
        );
        assert!(lies_inside(&link.join("a.log"), &reg));
        assert!(!lies_inside(&d.path().join("a.log"), &reg));
    }

    #[test]
    fn a_symlinked_input_is_the_file_it_points_to() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("forget.json");
        std::fs::write(&real, b"[1, 2]").unwrap();
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut o = Outputs::new();
        o.reads("--forget", "the deletion request", &link).writes(
            "--out",
            &d.path().join("sub/../forget.safetensors"),
            Artifact::Checkpoint,
        );
        let e = o.check().unwrap_err().to_string();
        assert!(e.contains("its sidecar") && e.contains("--forget"), "{e}");
    }

    #[test]
    fn writing_into_a_dataset_folder_is_refused_and_elsewhere_allowed() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir_all(data.join("cat")).unwrap();
        let mut o = Outputs::new();
        o.reads_dataset("--dataset", data.to_str().unwrap()).writes(
            "--out",
            &data.join("cat/m.safetensors"),
            Artifact::Mask,
        );
        assert!(o.check().unwrap_err().to_string().contains("inside"));
        let mut o = Outputs::new();
        o.reads_dataset("--dataset", data.to_str().unwrap()).writes(
            "--out",
            &d.path().join("m.safetensors"),
            Artifact::Mask,
        );
        o.check().unwrap();
    }

    #[test]
    fn an_existing_file_of_another_kind_is_refused_its_own_kind_replaced() {
        let d = tempfile::tempdir().unwrap();
        let set = crate::data::ForgetSet::of_indices("mnist".into(), 10, "random", vec![3]);
        let f = d.path().join("f.json");
        set.write(&f).unwrap();
        assert_eq!(Kind::of(&f), Kind::ForgetSet);
        let mut o = Outputs::new();
        o.writes("--out", &f, Artifact::ForgetSet);
        o.check().unwrap();
        let mut o = Outputs::new();
        o.writes(
            "--out",
            &d.path().join("f.safetensors"),
            Artifact::Checkpoint,
        );
        let e = o.check().unwrap_err().to_string();
        assert!(e.contains("a forget set"), "{e}");
        // A file amun did not write is the user's, whatever the output.
        let mine = d.path().join("notes.json");
        std::fs::write(&mine, b"{\"a\": 1}").unwrap();
        let mut o = Outputs::new();
        o.writes("--out", &mine, Artifact::ForgetSet);
        let e = o.check().unwrap_err().to_string();
        assert!(
            e.contains("a file amun did not write") && e.contains("remove"),
            "{e}"
        );
        let mut o = Outputs::new();
        o.writes(
            "--out",
            &d.path().join("notes.safetensors"),
            Artifact::AdvSet,
        );
        assert!(o.check().is_err());
    }

    #[test]
    fn a_reference_folders_files_are_written_only_by_its_own_command() {
        let d = tempfile::tempdir().unwrap();
        let refs = d.path().join("refs");
        std::fs::create_dir_all(&refs).unwrap();
        let manifest = format!("{{\"format\": \"{}\"}}", REF_FORMAT);
        std::fs::write(refs.join("manifest.json"), manifest).unwrap();
        std::fs::write(refs.join("members.safetensors"), b"x").unwrap();
        for out in [
            "members.safetensors",
            "ref-000.logits.safetensors",
            "new.csv",
        ] {
            let mut o = Outputs::new();
            o.writes("--per-sample", &refs.join(out), Artifact::PerSample);
            let e = o.check().unwrap_err().to_string();
            assert!(
                e.contains("inside the reference models' folder"),
                "{out}: {e}"
            );
        }
        // `rmia train-refs --out refs` again: its own folder and manifest.
        let mut o = Outputs::new();
        o.writes("--out", &refs, Artifact::References);
        o.check().unwrap();
        assert_eq!(
            protected_holding(&refs.join("a")),
            Some((refs.canonicalize().unwrap(), Holder::References))
        );
    }

    #[test]
    fn receipts_and_anchor_files_are_told_by_their_content_whatever_their_name() {
        let d = tempfile::tempdir().unwrap();
        let line = r#"{"seq":3,"hash":"ab","time":"t","kind":"add","records":[]}"#;
        for name in ["a.log", "copy.json", "copy"] {
            let f = d.path().join(name);
            std::fs::write(&f, format!("{line}\n{line}\n")).unwrap();
            assert_eq!(Kind::of(&f), Kind::Anchor, "{name}");
        }
        let r = d.path().join("r.json");
        let receipt = format!("{{\"format\": \"{}\"}}", RECEIPT_FORMAT);
        std::fs::write(&r, receipt).unwrap();
        assert_eq!(Kind::of(&r), Kind::Receipt);
        for (f, kind) in [
            (&r, Artifact::ForgetSet),
            (&d.path().join("copy.json"), Artifact::ForgetSet),
        ] {
            let mut o = Outputs::new();
            o.writes("--out", f, kind);
            let e = o.check().unwrap_err().to_string();
            assert!(e.contains("a registry's"), "{e}");
        }
    }

    #[test]
    fn evidence_files_are_never_links_nor_inside_protected_folders() {
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("reg");
        std::fs::create_dir_all(reg.join("versions")).unwrap();
        std::fs::write(reg.join("registry.db"), b"").unwrap();
        let link = d.path().join("dangling.log");
        std::os::unix::fs::symlink(reg.join("versions/v0002.json"), &link).unwrap();
        let e = refuse_evidence_path("--copy", &link)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = refuse_held("registry", &reg.join("versions/sub"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the registry folder"), "{e}");
        refuse_evidence_path("--copy", &d.path().join("copy.log")).unwrap();
        // A folder output into a folder of another kind.
        let mut o = Outputs::new();
        o.writes("--out", &reg, Artifact::References);
        let e = o.check().unwrap_err().to_string();
        assert!(e.contains("which is the registry folder"), "{e}");
    }

    /// A `.pt2` holding `extra` records (archive_format always).
    fn pt2(path: &Path, extra: &[&str]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("net/archive_format", opts).unwrap();
        std::io::Write::write_all(&mut z, b"pt2").unwrap();
        for name in extra {
            z.start_file(format!("net/{name}"), opts).unwrap();
            std::io::Write::write_all(&mut z, b"{}").unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn an_existing_pt2_is_replaced_only_when_amun_wrote_it() {
        let d = tempfile::tempdir().unwrap();
        let users = d.path().join("net.pt2");
        pt2(&users, &["models/model.json"]);
        let mut o = Outputs::new();
        o.writes("--out", &users, Artifact::Export);
        let e = o.check().unwrap_err().to_string();
        assert!(e.contains("a .pt2 amun did not write"), "{e}");
        let ours = d.path().join("u.pt2");
        pt2(
            &ours,
            &["models/model.json", crate::model::program::AMUN_EXPORT],
        );
        assert_eq!(Kind::of(&ours), Kind::Export);
        let mut o = Outputs::new();
        o.writes("--out", &ours, Artifact::Export);
        o.check().unwrap();
        // A new file, and other exports (PyTorch files) as before.
        for f in ["new.pt2", "w.pt"] {
            let mut o = Outputs::new();
            o.writes("--out", &d.path().join(f), Artifact::Export);
            o.check().unwrap();
        }
    }

    #[test]
    fn a_forget_set_is_replaced_only_by_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f.json");
        let write =
            |text: &'static str| move |p: &Path| crate::fsutil::write_atomic(p, text.as_bytes());
        write_recorded("--out", &f, write("[1, 2]\n")).unwrap();
        write_recorded("--out", &f, write("[1, 2]\n")).unwrap();
        let e = write_recorded("--out", &f, write("[1, 3]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--out") && e.contains("different content"),
            "{e}"
        );
        assert_eq!(std::fs::read(&f).unwrap(), b"[1, 2]\n");
        // Nothing but the file itself is left in the folder.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_per_sample_npy_is_told_from_a_users_matrix() {
        use ndarray_npy::WriteNpyExt;
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, rows: Vec<[f32; 9]>| {
            let f = d.path().join(name);
            let a = ndarray::Array2::from_shape_vec(
                (rows.len(), 9),
                rows.into_iter().flatten().collect(),
            )
            .unwrap();
            a.write_npy(std::fs::File::create(&f).unwrap()).unwrap();
            f
        };
        // train 0, 1 (1 forgotten), then test 0.
        let ours = vec![
            [0., 0., 1., 0., 0.2, 1.6, 0., 0.1, -0.3],
            [0., 1., 0., 0., 0.9, 0.1, 1., 2.0, 0.5],
            [1., 0., 1., 1., 0.7, 0.3, 0., 0.0, 1.2],
        ];
        assert_eq!(Kind::of(&write("ps.npy", ours.clone())), Kind::PerSample);
        let mut theirs = ours.clone();
        theirs[2][1] = 5.0;
        assert_eq!(Kind::of(&write("a.npy", theirs)), Kind::Foreign);
        let mut theirs = ours;
        theirs[2][6] = 1.0;
        assert_eq!(Kind::of(&write("b.npy", theirs)), Kind::Foreign);
        let f = d.path().join("c.npy");
        ndarray::Array1::<f32>::zeros(4)
            .write_npy(std::fs::File::create(&f).unwrap())
            .unwrap();
        assert_eq!(Kind::of(&f), Kind::Foreign);
    }
}
