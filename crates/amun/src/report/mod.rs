//! Rendering results for people (aligned tables) and machines (JSON).

mod table;

pub use table::{Table, cell};

/// One line describing the machine: CPU model and threads, GPU if any.
pub fn hardware_line(device: tch::Device) -> String {
    hardware_line_threads(device, &[])
}

/// [`hardware_line`] naming the libtorch thread counts the models were
/// made with (their sidecars' `threads`), which is what the numbers depend
/// on when the report is written by another process (a one-CPU Slurm job)
/// than the models; empty: this process's count.
pub fn hardware_line_threads(device: tch::Device, threads: &[usize]) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let mut t: Vec<usize> = threads.to_vec();
    t.sort_unstable();
    t.dedup();
    let threads = match t.as_slice() {
        [] => format!("{} torch thread(s)", tch::get_num_threads()),
        [one] => format!("{one} torch thread(s)"),
        [lo, .., hi] => format!("{lo}-{hi} torch threads (per model: see their sidecars)"),
    };
    let mut line = format!("CPU: {cpu}, {threads}");
    if device.is_cuda() {
        let gpu = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_else(|| "CUDA device".into());
        line.push_str(&format!("; GPU: {gpu}"));
    }
    line.push_str(&format!("; libtorch {}", crate::LIBTORCH_VERSION));
    line
}
