//! `amun`: the command-line face of the amun library. It parses arguments,
//! calls the library, and prints; nothing else.

mod cmd;
mod progress;

use clap::{CommandFactory, Parser};
use std::process::ExitCode;
use std::sync::Mutex;

/// clap's error for a flag of a whole number given something else says
/// what the flag expects, rather than Rust's "invalid digit found in
/// string" (hostile16 W2a, W3c): one place for every count and seed flag.
fn whole_number_error(e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let int_error = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<std::num::ParseIntError>())
        .map(|p| *p.kind());
    let (Some(std::num::IntErrorKind::InvalidDigit), Some(ContextValue::String(arg))) =
        (int_error, e.get(ContextKind::InvalidArg))
    else {
        return e;
    };
    let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) else {
        return e;
    };
    // A negative whole number fails only a flag that takes none.
    let expected = if value.parse::<i128>().is_ok_and(|v| v < 0) {
        "expected a whole number, not a negative one"
    } else {
        "expected a whole number"
    };
    let msg = format!(
        "invalid value '{value}' for '{arg}': {expected}\n\nFor more information, try '--help'.\n"
    );
    clap::Error::raw(ErrorKind::ValueValidation, msg).with_cmd(&cmd::Cli::command())
}

/// The message of a panic, kept by the hook for `main` to print.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

fn main() -> ExitCode {
    let cli = cmd::Cli::try_parse().unwrap_or_else(|e| whole_number_error(e).exit());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AMUN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Ctrl-C, SIGTERM or SIGHUP end the process without destructors: the
    // locks and temporary files it holds go first, and it says which.
    let _ = ctrlc::set_handler(|| {
        let released = amun::fsutil::release_all();
        if signal::finished().is_none() {
            let names: Vec<String> = (released.locks.iter())
                .map(|p| p.display().to_string())
                .collect();
            if names.is_empty() {
                eprintln!("interrupted");
            } else {
                eprintln!("interrupted: removed {}", names.join(", "));
            }
            // A commit is whole or never begun; what one made stands.
            for what in &released.committed {
                eprintln!("before it stopped: {what}");
            }
        }
        // Not `exit`: libtorch's static destructors would run while its
        // threads still compute (a segfault instead of an exit code). A
        // command whose outcome is decided (its result printed, its records
        // committed) keeps that outcome's exit code: a signal in its last
        // clean-up does not turn a done deletion into a failure to retry.
        let code = signal::finished().unwrap_or(128 + signal::last());
        // SAFETY: _exit ends the process at once; nothing runs after it.
        unsafe { libc::_exit(code) }
    });
    signal::remember_which();
    // tch reports many libtorch errors by panicking. None may reach a user
    // as a panic with a C++ backtrace: the hook keeps the message, and it is
    // printed as one error line (AMUN_BACKTRACE=1 keeps the default report).
    if std::env::var_os("AMUN_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                s.to_string()
            } else if let Some(s) = info.payload().downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic".into()
            };
            let at = info
                .location()
                .map(|l| format!(" ({}:{})", l.file(), l.line()))
                .unwrap_or_default();
            *PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{msg}{at}"));
        }));
    }
    let code = outcome(cli);
    signal::finish(code);
    ExitCode::from(code)
}

/// Runs the command: its exit code (0, or 1 after an error it printed).
fn outcome(cli: cmd::Cli) -> u8 {
    let failed = match std::panic::catch_unwind(|| cmd::run(cli)) {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return 0;
            }
            format!("{e:#}")
        }
        Err(_) => {
            let msg = PANIC
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            describe_panic(&msg)
        }
    };
    // A signal's handler may be removing what the command was writing (a
    // registry's temporary folder), which then fails: the handler's
    // "interrupted" and exit code are the outcome, not that error.
    signal::wait_if_interrupted();
    eprintln!("error: {failed}");
    1
}

/// Which signal ended the process, for the shell's exit code 128 + N (130
/// for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP): ctrlc runs one handler for
/// all three without saying which, so each signal's OS handler is wrapped
/// to note its number before ctrlc's runs.
mod signal {
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

    static LAST: AtomicI32 = AtomicI32::new(libc::SIGINT);
    /// Whether a signal arrived (its handler is ending the process).
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    /// The command's exit code once it is decided; -1 while it runs.
    static FINISHED: AtomicI32 = AtomicI32::new(-1);
    /// ctrlc's OS handler (the same function for every signal).
    static CTRLC: AtomicUsize = AtomicUsize::new(0);

    /// The signal that arrived last (SIGINT until one did).
    pub fn last() -> i32 {
        LAST.load(Ordering::SeqCst)
    }

    /// Records the command's exit code: a signal from now on ends the
    /// process with it.
    pub fn finish(code: u8) {
        FINISHED.store(i32::from(code), Ordering::SeqCst);
    }

    /// The command's exit code, once [`finish`] recorded it.
    pub fn finished() -> Option<i32> {
        Some(FINISHED.load(Ordering::SeqCst)).filter(|&c| c >= 0)
    }

    /// Blocks for good once a signal arrived: its handler ends the process.
    pub fn wait_if_interrupted() {
        while INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    /// Async-signal-safe: an atomic store, then ctrlc's handler (a
    /// semaphore post).
    extern "C" fn note(sig: libc::c_int) {
        LAST.store(sig, Ordering::SeqCst);
        INTERRUPTED.store(true, Ordering::SeqCst);
        let h = CTRLC.load(Ordering::SeqCst);
        if h != 0 {
            // SAFETY: `h` is the handler sigaction returned for this signal.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
            f(sig);
        }
    }

    /// Wraps ctrlc's handlers (call after `ctrlc::set_handler`); a signal
    /// whose handler is not a function is left as it is.
    pub fn remember_which() {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: plain sigaction calls on zeroed structs; the new
            // handler only stores an atomic and calls the old one.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction == libc::SIG_DFL
                    || old.sa_sigaction == libc::SIG_IGN
                    || old.sa_flags & libc::SA_SIGINFO != 0
                {
                    continue;
                }
                CTRLC.store(old.sa_sigaction, Ordering::SeqCst);
                let mut new = old;
                new.sa_sigaction = note as extern "C" fn(libc::c_int) as usize;
                libc::sigaction(sig, &new, std::ptr::null_mut());
            }
        }
    }
}

/// One readable line from a panic message: for a libtorch error, its first
/// line without the C++ backtrace.
fn describe_panic(msg: &str) -> String {
    let torch = msg.find("Torch(\"").map(|i| &msg[i + 7..]).map(|rest| {
        let end = ["\\nException raised", "\\n", "\")"]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
        rest[..end].replace("\\\"", "\"")
    });
    match torch {
        Some(t) => format!(
            "libtorch refused an operation: {t}. amun should have caught this earlier with a \
             clearer message: please report the command (AMUN_BACKTRACE=1 shows where it failed)"
        ),
        None => format!(
            "internal error: {}. Please report the command (AMUN_BACKTRACE=1 shows where it failed)",
            msg.lines().next().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::describe_panic;

    #[test]
    fn libtorch_panics_become_one_line() {
        let m = r#"called `Result::unwrap()` on an `Err` value: Torch("mat1 and mat2 shapes cannot be multiplied (64x2048 and 1152x10)\nException raised from meta at aten/src/ATen/native/LinearAlgebra.cpp:190 (most recent call first):\nframe #0: c10::Error::Error")"#;
        let d = describe_panic(m);
        assert!(
            d.starts_with("libtorch refused an operation: mat1 and mat2 shapes cannot be multiplied (64x2048 and 1152x10)."),
            "{d}"
        );
        assert!(!d.contains("frame #0"), "{d}");
        assert!(
            describe_panic("index out of bounds (src/x.rs:3)")
                .starts_with("internal error: index out of bounds")
        );
    }
}
