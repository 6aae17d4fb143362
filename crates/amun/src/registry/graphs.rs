//! The files an exported model's versions need besides their weights (the
//! `.pt2` graph, and the initial weights a retrain starts from), copied
//! into the registry as `graphs/<sha256>.<ext>` when it is made: versions
//! open from those copies, verify hashes them, and the folder stays
//! movable to another machine. A sidecar keeps the path it recorded (its
//! hash is part of the version); the copy is found by the sha256 it names.
use super::Registry;
use super::db::{self, sql};
use super::samples::short;
use crate::error::{IoContext, Result};
use crate::model::ModelSpec;
use crate::model::program::ProgramInit;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The folder of the copies in a registry.
pub const DIR: &str = "graphs";

/// What `spec` needs besides its weights: (sha256, the file it recorded).
fn needs(spec: &ModelSpec) -> Vec<(String, PathBuf)> {
    let Some(p) = &spec.program else {
        return Vec::new();
    };
    let mut v = vec![(p.sha256.clone(), p.file.clone())];
    // Weights from the program itself (`--init` of the `--model` file, as
    // `amun.train` does by default) are the one copy.
    if let ProgramInit::Weights { file, sha256 } = &p.init
        && *sha256 != p.sha256
    {
        v.push((sha256.clone(), file.clone()));
    }
    v
}

/// The registry's copy of `file` (whose content has `sha256`), relative to
/// the registry folder.
fn copy_name(sha256: &str, file: &Path) -> PathBuf {
    let ext = file
        .extension()
        .map_or("bin".into(), |e| e.to_string_lossy().into_owned());
    Path::new(DIR).join(format!("{sha256}.{ext}"))
}

/// A copy the registry stored, as its database records it (a record of
/// the chain): verify tells a deleted copy from one never made by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphRow {
    pub id: i64,
    /// The copy, relative to the registry folder (`graphs/<sha256>.<ext>`).
    pub name: String,
    pub sha256: String,
    pub stored: String,
}

/// The stored copies the database records, in order.
pub fn rows(conn: &Connection, path: &Path) -> Result<Vec<GraphRow>> {
    let err = sql(path);
    let mut st = conn
        .prepare("SELECT id, name, sha256, stored FROM graphs ORDER BY id")
        .map_err(&err)?;
    st.query_map([], |r| {
        Ok(GraphRow {
            id: r.get(0)?,
            name: r.get(1)?,
            sha256: r.get(2)?,
            stored: r.get(3)?,
        })
    })
    .map_err(&err)?
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(&err)
}

/// Records the copies `stored` (name, sha256) in the transaction.
pub(crate) fn insert(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    stored: &[(String, String)],
) -> Result<()> {
    let err = sql(path);
    for (name, sha256) in stored {
        let id: i64 = tx
            .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM graphs", [], |r| {
                r.get(0)
            })
            .map_err(&err)?;
        let row = GraphRow {
            id,
            name: name.clone(),
            sha256: sha256.clone(),
            stored: db::now_utc(),
        };
        tx.execute(
            "INSERT INTO graphs (id, name, sha256, stored) VALUES (?1, ?2, ?3, ?4)",
            params![row.id, row.name, row.sha256, row.stored],
        )
        .map_err(&err)?;
        db::append(tx, path, super::kinds::RecordKind::Graph, id, &row)?;
    }
    Ok(())
}

/// Copies in a registry folder: (name relative to it, sha256).
type Copies = Vec<(String, String)>;

/// Copies what `spec` needs into the registry folder `dir`, each checked
/// against its sha256 first; a copy already there stays (verify hashes
/// it), a source that is gone or changed is left to the load that needs
/// it, which names it. Returns (name, sha256) of every copy `spec` needs
/// that is now in `dir` with its content (copied now or before), and the
/// names of those copied now.
pub(crate) fn copy_in(dir: &Path, spec: &ModelSpec) -> Result<(Copies, Vec<String>)> {
    let (mut held, mut copied) = (Vec::new(), Vec::new());
    for (sha, file) in needs(spec) {
        let name = copy_name(&sha, &file);
        let dest = dir.join(&name);
        let shown = name.to_string_lossy().into_owned();
        if dest.exists() {
            if crate::data::sha256_file(&dest)? == sha {
                held.push((shown, sha));
            }
            continue;
        }
        if !file.is_file() || crate::data::sha256_file(&file)? != sha {
            continue;
        }
        let tmp = crate::fsutil::TempPath::beside(&dest)?;
        std::fs::copy(&file, tmp.path()).at(&file)?;
        std::fs::File::open(tmp.path())
            .and_then(|f| f.sync_all())
            .at(tmp.path())?;
        tmp.commit()?;
        copied.push(shown.clone());
        held.push((shown, sha));
    }
    Ok((held, copied))
}

/// Points `spec` at the registry's copies (those it holds).
pub(crate) fn relocate(dir: &Path, spec: &mut ModelSpec) {
    let Some(p) = &mut spec.program else { return };
    let copy = dir.join(copy_name(&p.sha256, &p.file));
    if copy.is_file() {
        p.file = std::path::absolute(&copy).unwrap_or(copy);
    }
    if let ProgramInit::Weights { file, sha256 } = &mut p.init {
        let copy = dir.join(copy_name(sha256, file));
        if copy.is_file() {
            *file = std::path::absolute(&copy).unwrap_or(copy);
        }
    }
}

/// Copies into the registry what its versions need and it lacks (a
/// registry made before it kept copies), from where their sidecars say,
/// and records every copy it holds but has no record of (one made before
/// copies were recorded) in one commit. Returns the copies made, relative
/// to the registry folder.
pub(crate) fn copy_missing(reg: &mut Registry) -> Result<Vec<String>> {
    let mut made = Vec::new();
    let mut held = BTreeMap::new();
    for v in reg.versions()? {
        if let Ok(sc) = crate::model::checkpoint::read_sidecar(&reg.dir.join(&v.weights)) {
            let (h, copied) = copy_in(&reg.dir, &sc.model)?;
            made.extend(copied);
            held.extend(h);
        }
    }
    for r in rows(&reg.conn, &reg.db)? {
        held.remove(&r.name);
    }
    if held.is_empty() {
        return Ok(made);
    }
    let tx = db::immediate(&mut reg.conn, &reg.db)?;
    super::anchor::ensure_started(&tx, &reg.db)?;
    insert(&tx, &reg.db, &held.into_iter().collect::<Vec<_>>())?;
    tx.commit().map_err(sql(&reg.db))?;
    let w = super::anchor::after_commit(reg, super::kinds::Committer::Graph);
    reg.warnings.extend(w);
    Ok(made)
}

/// Each version's graph (and initial weights) against the registry's copy,
/// and every copy the database records: a copy that was replaced, or that
/// the registry stored and is gone, is named; one it never stored (a
/// registry made before it kept copies) is a note while the original is
/// unchanged. Files are named relative to the registry folder, the
/// originals by their file name only.
pub(crate) fn check(
    reg: &Registry,
    versions: &[super::VersionRow],
    find: &mut impl FnMut(String, String),
    notes: &mut Vec<String>,
    nfiles: &mut usize,
) -> Result<()> {
    let stored: BTreeMap<String, GraphRow> = rows(&reg.conn, &reg.db)?
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    for (name, want) in wanted(reg, versions, &stored) {
        let copy = reg.dir.join(&name);
        if copy.exists() {
            *nfiles += 1;
            let got = crate::data::sha256_file(&copy)?;
            if got != want.sha256 {
                find(
                    name,
                    format!(
                        "was replaced or changed: sha256 {}, {} with sha256 {}",
                        crate::fsutil::short_pair(&got, &want.sha256).0,
                        want.need(),
                        crate::fsutil::short_pair(&got, &want.sha256).1
                    ),
                );
            }
            continue;
        }
        let row = stored.get(&name);
        missing(name, &want, row, find, notes)?;
    }
    Ok(())
}

/// A copy the registry should hold: its sha256, the versions that need it,
/// and the file it was copied from.
struct Wanted {
    sha256: String,
    versions: Vec<i64>,
    original: Option<PathBuf>,
}

impl Wanted {
    fn who(&self) -> String {
        format!(
            "version(s) {}",
            self.versions
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn need(&self) -> String {
        if self.versions.is_empty() {
            "the registry recorded the file".to_string()
        } else {
            format!("{} need the file", self.who())
        }
    }
}

/// Each copy once, by its name in the registry: those the versions'
/// sidecars need and those the database records.
fn wanted(
    reg: &Registry,
    versions: &[super::VersionRow],
    stored: &BTreeMap<String, GraphRow>,
) -> BTreeMap<String, Wanted> {
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    for v in versions {
        let Ok(sc) = crate::model::checkpoint::read_sidecar(&reg.dir.join(&v.weights)) else {
            continue; // a missing or changed sidecar is named with its version
        };
        for (sha, file) in needs(&sc.model) {
            let name = copy_name(&sha, &file).to_string_lossy().into_owned();
            let e = wanted.entry(name).or_insert_with(|| Wanted {
                sha256: sha.clone(),
                versions: Vec::new(),
                original: Some(file.clone()),
            });
            e.versions.push(v.id);
        }
    }
    for r in stored.values() {
        wanted.entry(r.name.clone()).or_insert_with(|| Wanted {
            sha256: r.sha256.clone(),
            versions: Vec::new(),
            original: None,
        });
    }
    wanted
}

/// A copy that is not in the registry folder: named when the registry
/// stored it or its original changed, a note when it was never stored and
/// the original is unchanged.
fn missing(
    name: String,
    want: &Wanted,
    stored: Option<&GraphRow>,
    find: &mut impl FnMut(String, String),
    notes: &mut Vec<String>,
) -> Result<()> {
    let (sha, need) = (&want.sha256, want.need());
    let original_ok = match &want.original {
        Some(o) => o.is_file() && crate::data::sha256_file(o)? == *sha,
        None => false,
    };
    let shown_original = want
        .original
        .as_ref()
        .and_then(|o| o.file_name())
        .map_or("the original".into(), |n| n.to_string_lossy().into_owned());
    if let Some(r) = stored {
        find(
            name,
            format!(
                "is missing: the registry stored it on {}, and {need} (sha256 {}); put it \
                 back from a copy of the registry{}",
                r.stored,
                short(sha),
                if original_ok {
                    format!(", or from {shown_original}, which is unchanged")
                } else {
                    String::new()
                }
            ),
        );
    } else if original_ok {
        notes.push(format!(
            "the registry holds no copy of {shown_original} ({} need it; the registry \
             records none stored, so it was made before registries kept one): the next \
             apply or retrain copies it to {name}",
            want.who()
        ));
    } else {
        find(
            name,
            format!(
                "is missing: {need} with sha256 {}, and {shown_original} \
                 (where it came from) is {}",
                short(sha),
                if want.original.as_ref().is_some_and(|o| o.exists()) {
                    "another file now"
                } else {
                    "gone"
                }
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::{Origin, Sidecar};
    use crate::model::program::ProgramRef;
    use crate::model::{Arch, ModelSpec};

    /// A registry folder whose version 1 is an exported model of the graph
    /// `net.pt2` beside it (a sidecar only: `check` reads no weights).
    fn registry(dir: &Path) -> (Registry, Vec<super::super::VersionRow>, PathBuf) {
        let net = dir.join("net.pt2");
        std::fs::write(&net, b"an exported program").unwrap();
        let mut spec = ModelSpec::for_data(Arch::SmallCnn, [3, 32, 32], 10).unwrap();
        spec.program = Some(ProgramRef {
            file: net.clone(),
            sha256: crate::data::sha256_file(&net).unwrap(),
            init: ProgramInit::Pytorch,
        });
        let origin = Origin::Import {
            from: "net.pt2".into(),
            layout: "exported".into(),
            forgotten: Vec::new(),
        };
        let data = crate::data::DataSpec::new("cifar10");
        let sc = Sidecar::new(&spec, &data, &[], 1, origin);
        let rd = dir.join("reg");
        std::fs::create_dir_all(rd.join("versions")).unwrap();
        crate::fsutil::write_json_signed(&rd.join("versions/v0001.json"), &sc).unwrap();
        let (conn, db) = db::open(&rd, true).unwrap();
        let mut reg = Registry {
            dir: rd,
            db,
            conn,
            warnings: Vec::new(),
        };
        let v = super::super::VersionRow {
            id: 1,
            parent: None,
            kind: super::super::VersionKind::Trained,
            created: db::now_utc(),
            weights: "versions/v0001.safetensors".into(),
            weights_sha256: String::new(),
            sidecar_sha256: String::new(),
            method: None,
            settings: None,
            calibration: None,
            audit: super::super::JsonText::from_text(String::new()),
            forgotten: 0,
            forgotten_sha256: String::new(),
            retrain: None,
            seed: 1,
            seconds: 0.0,
        };
        let tx = db::immediate(&mut reg.conn, &reg.db).unwrap();
        super::super::insert_version(&tx, &reg.db, &v).unwrap();
        tx.commit().unwrap();
        (reg, vec![v], net)
    }

    /// A model trained from its own program's weights (`amun train
    /// --model net.pt2 --init net.pt2`) needs the one copy: listed twice,
    /// registry create failed on the database's "UNIQUE constraint failed".
    #[test]
    fn a_program_that_is_its_own_init_is_copied_once() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, _, net) = registry(dir.path());
        let mut spec = ModelSpec::for_data(Arch::SmallCnn, [3, 32, 32], 10).unwrap();
        let sha256 = crate::data::sha256_file(&net).unwrap();
        let init = ProgramInit::Weights {
            file: net.clone(),
            sha256: sha256.clone(),
        };
        spec.program = Some(ProgramRef {
            file: net,
            sha256,
            init,
        });
        let (held, copied) = copy_in(&reg.dir, &spec).unwrap();
        assert_eq!((held.len(), copied.len()), (1, 1), "{held:?}");
    }

    fn checked(
        reg: &Registry,
        versions: &[super::super::VersionRow],
    ) -> (Vec<String>, Vec<String>) {
        let (mut found, mut notes, mut n) = (Vec::new(), Vec::new(), 0);
        check(
            reg,
            versions,
            &mut |what, problem| found.push(format!("{what}: {problem}")),
            &mut notes,
            &mut n,
        )
        .unwrap();
        (found, notes)
    }

    /// Issue 37 (N6): a stored copy deleted passed verify as one "made
    /// before registries kept one", printing the original's absolute path.
    #[test]
    fn a_deleted_copy_is_named_one_never_stored_is_a_note_without_machine_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (mut reg, versions, net) = registry(dir.path());
        let machine = dir.path().to_string_lossy().into_owned();
        // Never stored (a registry made before copies): a note; the next
        // apply's `copy_missing` copies and records it.
        let (found, notes) = checked(&reg, &versions);
        assert!(found.is_empty(), "{found:?}");
        assert!(
            notes.len() == 1
                && notes[0].contains("made before registries kept one")
                && notes[0].contains("net.pt2")
                && !notes[0].contains(&machine),
            "{notes:?}"
        );
        let made = copy_missing(&mut reg).unwrap();
        assert_eq!(made.len(), 1);
        assert_eq!(rows(&reg.conn, &reg.db).unwrap().len(), 1);
        assert_eq!(checked(&reg, &versions), (vec![], vec![]));
        // Stored, then deleted with the original still in place: named.
        std::fs::remove_file(reg.dir.join(&made[0])).unwrap();
        let (found, notes) = checked(&reg, &versions);
        assert!(notes.is_empty(), "{notes:?}");
        assert!(
            found.len() == 1
                && found[0].starts_with(&made[0])
                && found[0].contains("is missing: the registry stored it")
                && found[0].contains("net.pt2, which is unchanged")
                && !found[0].contains(&machine),
            "{found:?}"
        );
        // The original gone too: still named, as stored.
        std::fs::remove_file(&net).unwrap();
        let (found, _) = checked(&reg, &versions);
        assert!(
            found.len() == 1 && found[0].contains("stored it"),
            "{found:?}"
        );
        // A copy stored but needed by no version read is checked as well.
        let (found, _) = checked(&reg, &[]);
        assert!(
            found.len() == 1 && found[0].contains("the registry recorded the file"),
            "{found:?}"
        );
    }
}
