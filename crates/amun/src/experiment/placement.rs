//! Placement: where steps run, apart from what they compute. The `[slurm]`
//! table of an experiment file (or `--slurm-config FILE`) gives the
//! resources of each step kind's jobs; it is not part of a run folder's
//! identity (the same steps give the same bits wherever they run).
use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a step needs to run, for schedulers (Slurm resources per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    /// Training from scratch: references, originals, retrains.
    Train,
    /// The adversarial-set search.
    Search,
    /// An unlearning run (or a tuning point: a run and its audit).
    Unlearn,
    /// Auditing one model.
    Audit,
    /// Seconds of bookkeeping: forget sets, the choice of a tuned point,
    /// the report.
    Light,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Train,
        Resource::Search,
        Resource::Unlearn,
        Resource::Audit,
        Resource::Light,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Train => "train",
            Resource::Search => "search",
            Resource::Unlearn => "unlearn",
            Resource::Audit => "audit",
            Resource::Light => "light",
        }
    }
}

/// Resources of the jobs of one step kind; unset fields take the kind's
/// default (see [`SlurmSection::resources`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobResources {
    pub cpus: Option<usize>,
    pub gpus: Option<usize>,
    /// e.g. "8G".
    pub mem: Option<String>,
    /// e.g. "04:00:00".
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Extra `#SBATCH` lines (with or without the prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

/// The `[slurm]` table of an experiment (or `--slurm-config FILE`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    pub partition: Option<String>,
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// libtorch threads per step [default: the job's CPUs]. CPU results are
    /// bit-identical to a local run only with the same thread count.
    pub threads: Option<usize>,
    pub train: Option<JobResources>,
    pub search: Option<JobResources>,
    pub unlearn: Option<JobResources>,
    pub audit: Option<JobResources>,
    pub light: Option<JobResources>,
}

pub use crate::cluster::Resolved;

/// The `[slurm]` table of an experiment file's `text` (read from `path`),
/// checked; `None` when it has none.
pub fn from_experiment(text: &str, path: &Path) -> Result<Option<SlurmSection>> {
    #[derive(Deserialize)]
    struct Only {
        slurm: Option<SlurmSection>,
    }
    let o: Only = toml::from_str(text).map_err(|e| Error::toml(text, path, e))?;
    if let Some(s) = &o.slurm {
        s.check().map_err(|e| Error::format(path, e.to_string()))?;
    }
    Ok(o.slurm)
}

/// The `[slurm]` table of the experiment file at `path`.
pub fn read_experiment(path: &Path) -> Result<Option<SlurmSection>> {
    let text = std::fs::read_to_string(path).at(path)?;
    from_experiment(&text, path)
}

fn recorded_path(dir: &Path) -> std::path::PathBuf {
    dir.join("slurm").join("placement.json")
}

/// Keeps the experiment file's `[slurm]` table in its run folder, so a
/// later `--folder DIR --slurm` places steps as the file said.
pub fn remember(dir: &Path, section: &SlurmSection) -> Result<()> {
    let p = recorded_path(dir);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).at(parent)?;
    }
    crate::fsutil::write_json(&p, section)
}

/// The `[slurm]` table a run folder keeps, if any.
pub fn recorded(dir: &Path) -> Result<Option<SlurmSection>> {
    let p = recorded_path(dir);
    if !p.exists() {
        return Ok(None);
    }
    let s: SlurmSection = crate::fsutil::read_json(&p)?;
    s.check().map_err(|e| Error::format(&p, e.to_string()))?;
    Ok(Some(s))
}

/// Slurm's `--mem` forms: a whole number with an optional K, M, G or T.
fn valid_mem(m: &str) -> bool {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    !digits.is_empty()
        && digits.len() + 1 >= m.len()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.parse::<u64>().is_ok_and(|n| n > 0)
}

/// Slurm's `--time` forms: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn valid_time(t: &str) -> bool {
    let num = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    if days.is_some_and(|d| !num(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let ok = parts.iter().all(|p| num(p));
    ok && match days {
        Some(_) => (1..=3).contains(&parts.len()),
        None => (1..=3).contains(&parts.len()),
    }
}

/// Extra `#SBATCH` lines: each one option on one line (a newline would
/// put shell commands into the job script; sbatch would refuse anything
/// else only after earlier arrays were queued).
fn check_extra(extra: &[String], at: &str) -> Result<()> {
    for e in extra {
        let opt = e.trim();
        let opt = opt.strip_prefix("#SBATCH").unwrap_or(opt).trim();
        if e.contains(['\n', '\r']) || !opt.starts_with('-') || opt.len() < 2 {
            return Err(Error::invalid(
                format!("{at}.extra"),
                format!(
                    "'{}': expected one sbatch option per entry, such as \"--qos=long\" or \
                     \"#SBATCH --constraint=a100\"",
                    e.escape_default()
                ),
            ));
        }
    }
    Ok(())
}

impl JobResources {
    /// Checks the values as sbatch would, naming `slurm.<kind>.<field>`.
    fn check(&self, at: &str) -> Result<()> {
        if self.cpus == Some(0) {
            return Err(Error::invalid(format!("{at}.cpus"), "expected at least 1"));
        }
        if let Some(m) = &self.mem
            && !valid_mem(m)
        {
            return Err(Error::invalid(
                format!("{at}.mem"),
                format!("'{m}': expected a size such as 8G, 500M or 16000"),
            ));
        }
        if let Some(t) = &self.time
            && !valid_time(t)
        {
            return Err(Error::invalid(
                format!("{at}.time"),
                format!("'{t}': expected MINUTES, HH:MM:SS or D-HH:MM:SS"),
            ));
        }
        check_extra(&self.extra, at)?;
        for (what, v) in [("partition", &self.partition), ("account", &self.account)] {
            if let Some(v) = v
                && (v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '\''))
            {
                return Err(Error::invalid(
                    format!("{at}.{what}"),
                    format!("'{v}': expected a {what} name without spaces"),
                ));
            }
        }
        Ok(())
    }
}

impl SlurmSection {
    /// Checks every resource before anything is submitted (sbatch would
    /// refuse a bad one only after earlier arrays were queued).
    pub fn check(&self) -> Result<()> {
        let top = JobResources {
            partition: self.partition.clone(),
            account: self.account.clone(),
            extra: self.extra.clone(),
            ..Default::default()
        };
        top.check("slurm")?;
        if self.threads == Some(0) {
            return Err(Error::invalid("slurm.threads", "expected at least 1"));
        }
        for (kind, r) in [
            ("train", &self.train),
            ("search", &self.search),
            ("unlearn", &self.unlearn),
            ("audit", &self.audit),
            ("light", &self.light),
        ] {
            if let Some(r) = r {
                r.check(&format!("slurm.{kind}"))?;
            }
        }
        Ok(())
    }

    /// Reads a TOML file holding the table's keys at its top level.
    pub fn read(path: &Path) -> Result<SlurmSection> {
        let text = std::fs::read_to_string(path).at(path)?;
        let s: SlurmSection = toml::from_str(&text).map_err(|e| Error::toml(&text, path, e))?;
        s.check().map_err(|e| Error::format(path, e.to_string()))?;
        Ok(s)
    }

    /// The threads a job with resources `r` runs with.
    pub fn job_threads(&self, r: &Resolved) -> usize {
        self.threads.unwrap_or(r.cpus).max(1)
    }

    /// The resources of `kind`'s jobs: the kind's table, then the section's
    /// partition/account/extra, then defaults by kind (training gets a GPU
    /// when the experiment runs on CUDA).
    pub fn resources(&self, kind: Resource, cuda: bool) -> Resolved {
        let own = match kind {
            Resource::Train => &self.train,
            Resource::Search => &self.search,
            Resource::Unlearn => &self.unlearn,
            Resource::Audit => &self.audit,
            Resource::Light => &self.light,
        }
        .clone()
        .unwrap_or_default();
        let (cpus, mem, time) = match kind {
            Resource::Train => (2, "8G", "24:00:00"),
            Resource::Search => (2, "8G", "04:00:00"),
            Resource::Unlearn => (2, "8G", "04:00:00"),
            Resource::Audit => (2, "8G", "01:00:00"),
            Resource::Light => (1, "2G", "00:30:00"),
        };
        let gpu = cuda && kind != Resource::Light;
        let mut extra = self.extra.clone();
        extra.extend(own.extra.clone());
        Resolved {
            cpus: own.cpus.unwrap_or(cpus),
            gpus: own.gpus.unwrap_or(usize::from(gpu)),
            mem: own.mem.unwrap_or_else(|| mem.to_string()),
            time: own.time.unwrap_or_else(|| time.to_string()),
            partition: own.partition.or_else(|| self.partition.clone()),
            account: own.account.or_else(|| self.account.clone()),
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_checked_before_submission() {
        for m in ["8G", "500M", "16000", "1T"] {
            assert!(valid_mem(m), "{m}");
        }
        for m in ["lots", "", "G", "8GB", "-1G", "0"] {
            assert!(!valid_mem(m), "{m}");
        }
        for t in ["30", "30:00", "04:00:00", "1-00", "2-12:00", "1-00:00:00"] {
            assert!(valid_time(t), "{t}");
        }
        for t in ["soon", "", "1:2:3:4", "a-01", "1-", "-1"] {
            assert!(!valid_time(t), "{t}");
        }
        let mut s = SlurmSection::default();
        assert!(s.check().is_ok());
        s.unlearn = Some(JobResources {
            mem: Some("lots".into()),
            ..Default::default()
        });
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("slurm.unlearn.mem") && e.contains("lots"), "{e}");
        s.unlearn = None;
        s.partition = Some("two words".into());
        assert!(s.check().is_err());
        s.partition = None;
        s.threads = Some(0);
        assert!(s.check().is_err());
        s.threads = None;
        // An extra line that is not one option, or smuggles a command in.
        for bad in ["x", "--qos=long\nrm -rf /", "#SBATCH", ""] {
            s.train = Some(JobResources {
                extra: vec![bad.into()],
                ..Default::default()
            });
            let e = s.check().unwrap_err().to_string();
            assert!(e.contains("slurm.train.extra"), "{bad:?}: {e}");
        }
        s.train = None;
        s.extra = vec!["#SBATCH --qos=long".into(), "--constraint=a100".into()];
        assert!(s.check().is_ok());
        s.extra = vec!["bogus".into()];
        assert!(s.check().unwrap_err().to_string().contains("slurm.extra"));
    }
}
