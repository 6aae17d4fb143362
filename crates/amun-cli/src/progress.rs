//! The library's `Progress` on stderr: indicatif bars on a terminal; plain
//! lines elsewhere (CI, Slurm and nohup logs), at most one every 10 seconds
//! per phase plus its start and end, so a long stage is never silent.
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a plain-text phase reports.
const EVERY: Duration = Duration::from_secs(10);

struct Phase {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    started: Instant,
    last: Instant,
}

pub struct Bars {
    phase: Mutex<Option<Phase>>,
    quiet: bool,
    /// Keep notes, drop the per-phase summaries (long multi-model runs).
    terse: bool,
    /// stderr is a terminal: draw bars, else print lines.
    tty: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        Bars {
            phase: Mutex::new(None),
            quiet,
            terse: false,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Bars and notes, without a summary line per epoch.
    pub fn terse(quiet: bool) -> Bars {
        Bars {
            terse: true,
            ..Bars::new(quiet)
        }
    }
}

impl amun::progress::Progress for Bars {
    fn start(&self, label: &str, total: u64) {
        let bar = (self.tty && !self.quiet).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>16} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        let now = Instant::now();
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = Some(Phase {
            bar,
            label: label.to_string(),
            total,
            started: now,
            last: now,
        });
    }

    fn update(&self, pos: u64, status: &str) {
        let mut g = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        let Some(p) = g.as_mut() else { return };
        match &p.bar {
            Some(b) => {
                b.set_position(pos);
                b.set_message(status.to_string());
            }
            None if !self.quiet && p.last.elapsed() >= EVERY => {
                p.last = Instant::now();
                eprintln!(
                    "{}: {pos}/{} after {:.0}s {status}",
                    p.label,
                    p.total,
                    p.started.elapsed().as_secs_f64()
                );
            }
            None => {}
        }
    }

    fn finish(&self, summary: &str) {
        if let Some(p) = self.phase.lock().unwrap_or_else(|p| p.into_inner()).take()
            && let Some(b) = p.bar
        {
            b.finish_and_clear();
        }
        if !self.quiet && !self.terse {
            eprintln!("{summary}");
        }
    }

    fn note(&self, line: &str) {
        let g = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_ref().and_then(|p| p.bar.as_ref()) {
            Some(b) if !self.quiet => b.println(line),
            _ if !self.quiet => eprintln!("{line}"),
            _ => {}
        }
    }

    fn warn(&self, line: &str) {
        let line = format!("warning: {line}");
        let g = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_ref().and_then(|p| p.bar.as_ref()) {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}

/// Notes straight to stderr, nothing else: what the CLI says whatever
/// `--quiet` says (a dataset being fetched).
pub struct Stderr;

impl amun::progress::Progress for Stderr {
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}
