//! indicatif bars for the library's `Progress`. Bars go to stderr and are
//! hidden when stderr is not a terminal; summary lines are always printed.
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
    /// Keep notes, drop the per-phase summaries (long multi-model runs).
    terse: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        Bars {
            bar: Mutex::new(None),
            quiet,
            terse: false,
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
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        if self.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        *self.bar.lock().unwrap() = Some(bar);
    }

    fn update(&self, pos: u64, status: &str) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            b.set_position(pos);
            b.set_message(status.to_string());
        }
    }

    fn finish(&self, summary: &str) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
        if !self.quiet && !self.terse {
            eprintln!("{summary}");
        }
    }

    fn note(&self, line: &str) {
        let guard = self.bar.lock().unwrap();
        match guard.as_ref() {
            Some(b) if !self.quiet => b.println(line),
            _ if !self.quiet => eprintln!("{line}"),
            _ => {}
        }
    }
}
