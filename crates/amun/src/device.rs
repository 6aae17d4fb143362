//! Device choice and the few libtorch switches tch does not expose: bf16
//! autocast, TF32 and channels-last (through `csrc/shim.cpp`).
use crate::error::{Error, Result};
use tch::{Device, Tensor};

/// A device as the user names it: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA
/// when available). Parsed once, from a flag or a config key; it becomes a
/// libtorch device with [`DeviceSpec::resolve`], which checks the machine.
///
/// ```
/// use amun::device::DeviceSpec;
/// let d: DeviceSpec = "cuda:1".parse().unwrap();
/// assert_eq!(d, DeviceSpec::Cuda(1));
/// assert_eq!(d.to_string(), "cuda:1");
/// assert!("gpu".parse::<DeviceSpec>().is_err());
/// assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), tch::Device::Cpu);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    #[default]
    Auto,
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<DeviceSpec> {
        let bad = || Error::Device {
            requested: s.to_string(),
            msg: "expected cpu, cuda, cuda:N or auto".into(),
        };
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "auto" => Ok(DeviceSpec::Auto),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::Auto => write!(f, "auto"),
        }
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<DeviceSpec> {
        s.parse()
    }
}

impl DeviceSpec {
    /// Whether it names a GPU.
    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }

    /// The libtorch device, checked against this machine and this build.
    pub fn resolve(self) -> Result<Device> {
        let err = |msg: String| Error::Device {
            requested: self.to_string(),
            msg,
        };
        let idx = match self {
            DeviceSpec::Cpu => return Ok(Device::Cpu),
            DeviceSpec::Auto => return Ok(Device::cuda_if_available()),
            DeviceSpec::Cuda(i) => i,
        };
        if cfg!(amun_cpu_only_libtorch) {
            return Err(err(
                "this amun was built against the CPU-only libtorch set-up; on a machine with an \
                 NVIDIA GPU run `AMUN_TORCH=cuda scripts/setup.sh`, or use --device cpu"
                    .into(),
            ));
        }
        if !tch::Cuda::is_available() {
            return Err(err(
                "CUDA is not available on this machine (no NVIDIA GPU or driver found); use \
                 --device cpu"
                    .into(),
            ));
        }
        let n = tch::Cuda::device_count() as usize;
        if idx >= n {
            return Err(err(format!("only {n} CUDA device(s) present")));
        }
        Ok(Device::Cuda(idx))
    }
}

/// Parses and resolves `cpu`, `cuda`, `cuda:N` or `auto`.
///
/// ```no_run
/// let dev = amun::device::parse_device("auto").unwrap();
/// println!("{dev:?}");
/// ```
/// The most libtorch threads a run may ask for. A fixed bound, not one
/// from this machine's cores: an experiment's `threads` is also what its
/// Slurm jobs use on nodes larger than the machine that submits them; the
/// largest CPU nodes have a few hundred hardware threads, and libtorch
/// spends minutes starting thousands.
pub const MAX_THREADS: usize = 1024;

/// Checks a thread count: 1 to [`MAX_THREADS`]; the message names neither
/// flag nor key (the caller does).
pub fn check_threads(n: usize) -> std::result::Result<(), String> {
    if (1..=MAX_THREADS).contains(&n) {
        Ok(())
    } else {
        Err(format!("expected 1 to {MAX_THREADS} threads, got {n}"))
    }
}

pub fn parse_device(s: &str) -> Result<Device> {
    s.parse::<DeviceSpec>()?.resolve()
}

/// Short name of a device for reports: `cpu` or `cuda:N`.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

unsafe extern "C" {
    fn amun_autocast_bf16(cuda: i32, enabled: i32, err: *mut u8, len: usize) -> i32;
    fn amun_set_tf32(allow: i32);
    fn amun_channels_last(
        t: *mut std::ffi::c_void,
        err: *mut u8,
        len: usize,
    ) -> *mut std::ffi::c_void;
}

/// The NUL-terminated message a shim call left in `buf`.
pub(crate) fn shim_error(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Runs `f` with bf16 autocast on `device` when `enabled` (matmuls and
/// convolutions in bf16, reductions and losses in fp32, as torch.autocast).
pub fn with_autocast<T>(device: Device, enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    let cuda = i32::from(device.is_cuda());
    let mut buf = [0u8; 256];
    // SAFETY: plain C calls into the shim; buffers are owned here.
    let rc = unsafe { amun_autocast_bf16(cuda, 1, buf.as_mut_ptr(), buf.len()) };
    assert_eq!(rc, 0, "enabling bf16 autocast: {}", shim_error(&buf));
    let out = f();
    // SAFETY: as above; leaves the region entered above.
    let rc = unsafe { amun_autocast_bf16(cuda, 0, buf.as_mut_ptr(), buf.len()) };
    assert_eq!(rc, 0, "leaving bf16 autocast: {}", shim_error(&buf));
    out
}

/// Allows or forbids TF32 in cuDNN convolutions and cuBLAS matmuls.
pub fn set_tf32(allow: bool) {
    // SAFETY: sets two global flags in libtorch.
    unsafe { amun_set_tf32(i32::from(allow)) }
}

/// Returns `t` (4-D) in channels-last memory format, same values.
pub fn channels_last(t: &Tensor) -> Result<Tensor> {
    let mut buf = [0u8; 256];
    // SAFETY: the shim reads the tensor handle and returns a new owned one
    // (allocated with `new at::Tensor`, which tch frees on drop).
    let ptr = unsafe {
        amun_channels_last(
            t.as_ptr() as *mut std::ffi::c_void,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if ptr.is_null() {
        return Err(Error::invalid("channels-last", shim_error(&buf)));
    }
    // SAFETY: ptr is a fresh, owned at::Tensor*.
    Ok(unsafe { Tensor::from_ptr(ptr as *mut _) })
}
