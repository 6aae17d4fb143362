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

    /// What the file at `path` is (`Foreign` when it cannot be read).
    pub fn of(path: &Path) -> Kind {
        if path.is_dir() {
            return Kind::Foreign;
        }
        // Any name: the user chose the copy's (`acopy.json`, `a.log`).
        if is_anchor(path) {
            return Kind::Anchor;
        }
        match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "json" => json_kind(path),
            "safetensors" => safetensors_kind(path),
            "csv" => csv_kind(path),
            "lock" => Kind::Lock,
            "pt2" if crate::model::program::written_by_amun(path) => Kind::Export,
            _ => Kind::Foreign,
        }
    }
}

fn json_kind(path: &Path) -> Kind {
    let Ok(v) = crate::fsutil::read_json::<serde_json::Value>(path) else {
        return Kind::Foreign;
    };
    match v.get("format").and_then(|f| f.as_str()) {
        Some(crate::model::checkpoint::FORMAT) => return Kind::Sidecar,
        Some(crate::attack::ADV_FORMAT) => return Kind::AdvMeta,
        Some(crate::audit::REF_FORMAT) => return Kind::References,
        Some(crate::registry::certificate::FORMAT) => return Kind::Certificate,
        Some(crate::registry::anchor::RECEIPT_FORMAT) => return Kind::Receipt,
        _ => {}
    }
    if serde_json::from_value::<crate::data::ForgetSet>(v.clone()).is_ok() {
        Kind::ForgetSet
    } else if serde_json::from_value::<crate::experiment::store::Meta>(v).is_ok() {
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
    serde_json::from_slice::<crate::registry::anchor::Head>(&first).is_ok()
}

fn safetensors_kind(path: &Path) -> Kind {
    match json_kind(&path.with_extension("json")) {
        Kind::Sidecar => return Kind::Checkpoint,
        Kind::AdvMeta => return Kind::AdvSet,
        _ => {}
    }
    let names = tensor_names(path).unwrap_or_default();
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("__ratio") {
        Kind::Mask
    } else if has("meta.fingerprint") {
        Kind::Resume
    } else if has("confidence") && has("pred") && has("split") {
        Kind::PerSample
    } else {
        Kind::Foreign
    }
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

/// What a command writes under one flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// A checkpoint: weights and their `.json` sidecar.
    Checkpoint,
    /// A checkpoint written by training: also its `.resume.safetensors`.
    Trained,
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
}

/// One file or folder a command reads.
#[derive(Debug, Clone)]
struct Input {
    flag: String,
    what: String,
    path: PathBuf,
    folder: bool,
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

    /// A file the command reads, under `flag` (`--forget`), described as
    /// `what` (`the deletion request`).
    pub fn reads(&mut self, flag: &str, what: &str, path: &Path) -> &mut Self {
        self.reads.push(Input {
            flag: flag.into(),
            what: what.into(),
            path: path.to_path_buf(),
            folder: path.is_dir(),
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
        self.reads(flag, "the checkpoint's sidecar", &side);
        let Ok(sc) = crate::fsutil::read_json::<crate::model::Sidecar>(&side) else {
            return self;
        };
        self.reads_dataset(flag, &sc.data.dataset);
        if let Some(p) = &sc.model.program {
            self.reads(flag, "the model's exported graph", &p.file);
            if let crate::model::program::ProgramInit::Weights { file, .. } = &p.init {
                self.reads(flag, "the model's initial weights", file);
            }
        }
        self
    }

    /// An adversarial set the command reads: its tensors and metadata.
    pub fn reads_adv_set(&mut self, flag: &str, path: &Path) -> &mut Self {
        self.reads(flag, "the adversarial set", path);
        let meta = crate::attack::AdvSet::meta_path(path);
        if meta != path {
            self.reads(flag, "the adversarial set's metadata", &meta);
        }
        self
    }

    /// A dataset the command reads: a folder is an input nothing may be
    /// written into; a registry name reads nothing the user owns.
    pub fn reads_dataset(&mut self, flag: &str, dataset: &str) -> &mut Self {
        if crate::data::Registry::from_name(dataset).is_none() && Path::new(dataset).is_dir() {
            self.reads(flag, "the dataset folder", Path::new(dataset));
        }
        self
    }

    /// An output under `flag` at `path`, with the files written beside it.
    pub fn writes(&mut self, flag: &str, path: &Path, artifact: Artifact) -> &mut Self {
        let (kind, beside): (Kind, Vec<(PathBuf, &'static str, Kind)>) = match artifact {
            Artifact::Checkpoint | Artifact::Trained => {
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
                    return Err(w.refuse(
                        verb,
                        &format!("{rel} {} {} ({})", r.flag, r.path.display(), r.what),
                    ));
                }
            }
            w.check_protected()?;
            w.check_existing()?;
        }
        Ok(())
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
    fn check_folder_output(&self) -> Result<()> {
        match Holder::of(&self.path) {
            Some(h) if Some(h) != self.makes => Err(self.refuse(
                "write into",
                &format!(
                    "which is {} (its files are written only by {})",
                    h.describe(),
                    h.writer()
                ),
            )),
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
    fn check_protected(&self) -> Result<()> {
        if self.folder {
            self.check_folder_output()?;
        }
        let Some((dir, holder)) = protected_holding(&self.path) else {
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

    /// An existing file may be replaced by a file of its own kind (a
    /// command run again); the named output also when amun did not write
    /// it (the user chose that path). Anything else is another artifact.
    fn check_existing(&self) -> Result<()> {
        if !self.path.exists() || self.kind == Kind::Lock || self.folder {
            return Ok(());
        }
        let found = Kind::of(&self.path);
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
        if found == self.kind || (self.role.is_none() && found == Kind::Foreign) {
            return Ok(());
        }
        Err(self.refuse(
            "overwrite",
            &format!(
                "{}{}",
                found.describe(),
                if found == Kind::Foreign {
                    ""
                } else {
                    " this command does not write"
                }
            ),
        ))
    }
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
        if REGISTRY_MARKERS.iter().any(|m| dir.join(m).exists()) {
            Some(Holder::Registry)
        } else if Kind::of(&dir.join("manifest.json")) == Kind::References {
            Some(Holder::References)
        } else if crate::fsutil::read_json::<crate::experiment::Config>(
            &dir.join("experiment.json"),
        )
        .is_ok()
        {
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
    canonical_lenient(path)
        .ancestors()
        .skip(1)
        .find_map(|d| Holder::of(d).map(|h| (d.to_path_buf(), h)))
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
        let set = crate::data::ForgetSet {
            dataset: "mnist".into(),
            train_size: 10,
            kind: "random".into(),
            class: None,
            seed: 1,
            size: 1,
            indices: vec![3],
        };
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
        // A file amun did not write: replaced only where the user named it.
        let mine = d.path().join("notes.json");
        std::fs::write(&mine, b"{\"a\": 1}").unwrap();
        let mut o = Outputs::new();
        o.writes("--out", &mine, Artifact::ForgetSet);
        o.check().unwrap();
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
        let manifest = format!("{{\"format\": \"{}\"}}", crate::audit::REF_FORMAT);
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
        let receipt = format!(
            "{{\"format\": \"{}\"}}",
            crate::registry::anchor::RECEIPT_FORMAT
        );
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
}
