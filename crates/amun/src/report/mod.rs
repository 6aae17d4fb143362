//! Rendering results for people (aligned tables) and machines (JSON).

mod table;

pub use table::Table;

/// One line describing the machine: CPU model and threads, GPU if any.
pub fn hardware_line(device: tch::Device) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = tch::get_num_threads();
    let mut line = format!("CPU: {cpu}, {threads} torch thread(s)");
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
