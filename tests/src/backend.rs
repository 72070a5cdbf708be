//! The one place where the test suite picks a concrete burn backend.
//!
//! Exactly one of the cargo features `flex` (the default), `ndarray`, `tch`, `wgpu` and `cuda`
//! must be enabled; it selects [`Inner`] (the plain backend), [`TestBackend`]
//! (`Autodiff<Inner>`, for gradient tests) and [`Device`]. Every test is written against the
//! generic policies API and instantiated here, so the same suite runs on each backend:
//!
//! ```text
//! cargo test -p tilt-tests                                           # flex (pure Rust CPU)
//! cargo test -p tilt-tests --no-default-features --features ndarray
//! cargo test -p tilt-tests --no-default-features --features tch      # libtorch, see below
//! cargo test -p tilt-tests --no-default-features --features wgpu     # needs a real GPU
//! cargo test -p tilt-tests --no-default-features --features cuda     # CubeCL, needs NVIDIA
//! ```
//!
//! Enabling several backend features at once is a compile error rather than a silent choice
//! (typically `--features tch` without `--no-default-features`, which leaves `flex` on).
//!
//! # Devices: `TILT_DEVICE`
//! [`device()`] reads `TILT_DEVICE` ([`device_from_env`]); unset means the backend's default.
//!
//! | backend | accepted values | unset |
//! |---|---|---|
//! | flex, ndarray | `cpu` | `cpu` |
//! | tch | `cpu`, `cuda` (= `cuda:0`), `cuda:N`, `mps` | `cpu` |
//! | wgpu | `default`, `gpu:N` (discrete), `integrated:N`, `virtual:N`, `cpu` | `default` |
//! | cuda | `cuda` (= `cuda:0`), `cuda:N` | `cuda:0` |
//!
//! # Tolerances
//! Reference parity compares with Hugging Face transformers run in f32 on the CPU
//! (policies/tests/fixtures). [`tolerance`] picks the bound for the selected backend and
//! device from three precision classes:
//!
//! - [`F32_CPU`]: f32 arithmetic on the CPU (flex, ndarray, tch CPU). Only summation order
//!   differs from PyTorch; flex measured 6e-6 on logits and 7e-7 relative on gradients.
//! - [`F32_GPU`]: full f32 on a GPU (tch CUDA, wgpu): other reduction trees and fused or
//!   approximate transcendental kernels. libtorch keeps TF32 off for f32 matmuls by default
//!   (`float32_matmul_precision` "highest"); tch 0.22 has no binding to change that, so the
//!   environment controls it: `TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1` turns TF32 on (then
//!   [`tolerance`] returns [`TF32_GPU`]) and `NVIDIA_TF32_OVERRIDE=0` forces it off in
//!   cuBLAS/cuDNN, which scripts/gpu-check.sh sets for the parity run. wgpu has no TF32
//!   type at all.
//! - [`TF32_GPU`]: the CubeCL `cuda` backend. Its tensor-core matmul (cubek-matmul 0.2,
//!   `definition/blueprint.rs`) stages f32 operands as TF32 (10-bit mantissa, unit roundoff
//!   2^-11 ≈ 4.9e-4) on devices that support it (sm_80 and later), and burn 0.21 has no switch
//!   to turn that off; `NVIDIA_TF32_OVERRIDE` does not reach CubeCL's own kernels.
//!
//! The GPU bounds are estimates from the arithmetic (the fixture's logits reach |9.4|, its
//! sequence log-probs |40|) and are to be confirmed by the first GPU run; every parity test
//! prints the error it measured (`--nocapture`).

/// Tolerances of the reference-parity tests for one precision class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Name of the precision class, printed with the measured errors.
    pub name: &'static str,
    /// Maximum absolute error of a logit.
    pub logits_abs: f32,
    /// Maximum absolute error of a sequence log-probability (a sum over up to 8 tokens).
    pub log_prob_abs: f32,
    /// Maximum relative error of a parameter gradient, both as relative L2 error and as
    /// maximum elementwise error divided by the largest reference element.
    pub grad_rel: f32,
}

/// f32 on the CPU (flex, ndarray, tch CPU): the bounds of policies' own parity tests.
pub const F32_CPU: Tolerance =
    Tolerance { name: "f32 CPU", logits_abs: 1e-4, log_prob_abs: 1e-4, grad_rel: 1e-3 };

/// Full f32 on a GPU (tch CUDA with TF32 off, wgpu): reductions in another order and
/// approximate exp/tanh kernels, about ten times the CPU bound on values.
pub const F32_GPU: Tolerance =
    Tolerance { name: "f32 GPU", logits_abs: 1e-3, log_prob_abs: 2e-3, grad_rel: 2e-3 };

/// TF32 matmuls on a GPU (CubeCL CUDA; tch with `TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1`):
/// operand rounding of 2^-11 relative through four matmuls per layer gives errors of order
/// 1e-3 of the logit scale (|9.4| in the fixture).
pub const TF32_GPU: Tolerance =
    Tolerance { name: "TF32 GPU", logits_abs: 3e-2, log_prob_abs: 6e-2, grad_rel: 2e-2 };

/// Why a `TILT_DEVICE` value was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The value does not name a device of the compiled-in backend.
    #[error(
        "TILT_DEVICE={value:?} is not a device of the {backend} backend (accepted: {accepted})"
    )]
    Unknown {
        /// The value of `TILT_DEVICE`.
        value: String,
        /// The compiled-in backend.
        backend: &'static str,
        /// The accepted forms.
        accepted: &'static str,
    },
}

/// Parses `kind:N` / `kind` (index 0) where `kind` is one of `kinds`.
#[allow(dead_code, reason = "not every backend has indexed devices")]
fn indexed<'a>(spec: &'a str, kinds: &[&str]) -> Option<(&'a str, usize)> {
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => (k, i.parse().ok()?),
        None => (spec, 0),
    };
    kinds.iter().find(|k| **k == kind).map(|_| (kind, index))
}

#[cfg(all(
    feature = "flex",
    not(any(feature = "ndarray", feature = "tch", feature = "wgpu", feature = "cuda"))
))]
mod selected {
    use super::*;

    pub type Inner = burn::backend::Flex;
    pub type Device = burn::backend::flex::FlexDevice;
    pub const NAME: &str = "flex";
    pub const ACCEPTED: &str = "cpu";

    pub fn parse(spec: &str) -> Option<Device> {
        (spec == "cpu").then_some(burn::backend::flex::FlexDevice)
    }

    pub fn default_device() -> Device {
        burn::backend::flex::FlexDevice
    }

    pub fn tolerance(_: &Device) -> Tolerance {
        F32_CPU
    }
}

#[cfg(all(feature = "ndarray", not(any(feature = "tch", feature = "wgpu", feature = "cuda"))))]
mod selected {
    use super::*;
    use burn::backend::ndarray::NdArrayDevice;

    pub type Inner = burn::backend::NdArray;
    pub type Device = NdArrayDevice;
    pub const NAME: &str = "ndarray";
    pub const ACCEPTED: &str = "cpu";

    pub fn parse(spec: &str) -> Option<Device> {
        (spec == "cpu").then_some(NdArrayDevice::Cpu)
    }

    pub fn default_device() -> Device {
        NdArrayDevice::Cpu
    }

    pub fn tolerance(_: &Device) -> Tolerance {
        F32_CPU
    }
}

#[cfg(feature = "tch")]
mod selected {
    use super::*;
    use burn::backend::libtorch::LibTorchDevice;

    pub type Inner = burn::backend::LibTorch;
    pub type Device = LibTorchDevice;
    pub const NAME: &str = "tch";
    pub const ACCEPTED: &str = "cpu, cuda, cuda:N, mps";

    pub fn parse(spec: &str) -> Option<Device> {
        match spec {
            "cpu" => Some(LibTorchDevice::Cpu),
            "mps" => Some(LibTorchDevice::Mps),
            _ => indexed(spec, &["cuda"]).map(|(_, i)| LibTorchDevice::Cuda(i)),
        }
    }

    pub fn default_device() -> Device {
        LibTorchDevice::Cpu
    }

    pub fn tolerance(device: &Device) -> Tolerance {
        match device {
            LibTorchDevice::Cpu => F32_CPU,
            _ if std::env::var("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE").is_ok_and(|v| v == "1") => {
                TF32_GPU
            }
            _ => F32_GPU,
        }
    }
}

#[cfg(all(feature = "wgpu", not(any(feature = "tch", feature = "cuda"))))]
mod selected {
    use super::*;
    use burn::backend::wgpu::WgpuDevice;

    pub type Inner = burn::backend::Wgpu;
    pub type Device = WgpuDevice;
    pub const NAME: &str = "wgpu";
    pub const ACCEPTED: &str = "default, gpu:N, integrated:N, virtual:N, cpu";

    pub fn parse(spec: &str) -> Option<Device> {
        match spec {
            "default" => Some(WgpuDevice::DefaultDevice),
            "cpu" => Some(WgpuDevice::Cpu),
            _ => indexed(spec, &["gpu", "integrated", "virtual"]).map(|(kind, i)| match kind {
                "gpu" => WgpuDevice::DiscreteGpu(i),
                "integrated" => WgpuDevice::IntegratedGpu(i),
                _ => WgpuDevice::VirtualGpu(i),
            }),
        }
    }

    pub fn default_device() -> Device {
        WgpuDevice::DefaultDevice
    }

    pub fn tolerance(device: &Device) -> Tolerance {
        match device {
            // A software adapter (lavapipe): still f32 but no GPU kernels' shortcuts.
            WgpuDevice::Cpu => F32_CPU,
            _ => F32_GPU,
        }
    }
}

#[cfg(all(feature = "cuda", not(feature = "tch")))]
mod selected {
    use super::*;
    use burn::backend::cuda::CudaDevice;

    pub type Inner = burn::backend::Cuda;
    pub type Device = CudaDevice;
    pub const NAME: &str = "cuda";
    pub const ACCEPTED: &str = "cuda, cuda:N";

    pub fn parse(spec: &str) -> Option<Device> {
        indexed(spec, &["cuda"]).map(|(_, i)| CudaDevice::new(i))
    }

    pub fn default_device() -> Device {
        CudaDevice::new(0)
    }

    pub fn tolerance(_: &Device) -> Tolerance {
        TF32_GPU
    }
}

// Exactly one backend. Cargo features are additive, so a second one cannot be turned off by
// the first; refuse the combination instead of choosing silently. (The `selected` modules
// above are made mutually exclusive only so that this message is the one error shown.)
#[cfg(not(any(
    feature = "flex",
    feature = "ndarray",
    feature = "tch",
    feature = "wgpu",
    feature = "cuda"
)))]
compile_error!(
    "tilt-tests needs one backend feature: flex (default), ndarray, tch, wgpu or cuda, e.g. \
     `cargo test -p tilt-tests --no-default-features --features tch`"
);

#[cfg(any(
    all(
        feature = "flex",
        any(feature = "ndarray", feature = "tch", feature = "wgpu", feature = "cuda")
    ),
    all(feature = "ndarray", any(feature = "tch", feature = "wgpu", feature = "cuda")),
    all(feature = "tch", any(feature = "wgpu", feature = "cuda")),
    all(feature = "wgpu", feature = "cuda"),
))]
compile_error!(
    "tilt-tests runs on one backend per build, but several backend features are enabled \
     (flex is on by default: add `--no-default-features`, e.g. \
     `cargo test -p tilt-tests --no-default-features --features tch`)"
);

/// The plain (non-autodiff) backend selected by the cargo feature.
pub type Inner = selected::Inner;

/// The backend of the gradient tests: [`Inner`] with autodiff.
pub type TestBackend = burn::backend::Autodiff<Inner>;

/// The device type of [`Inner`] (and of [`TestBackend`]).
pub type Device = selected::Device;

/// The selected backend's feature name: `flex`, `ndarray`, `tch`, `wgpu` or `cuda`.
pub const BACKEND: &str = selected::NAME;

/// Parses a `TILT_DEVICE` value for the selected backend (table in the module doc).
pub fn parse_device(spec: &str) -> Result<Device, DeviceError> {
    selected::parse(spec.trim()).ok_or_else(|| DeviceError::Unknown {
        value: spec.to_string(),
        backend: selected::NAME,
        accepted: selected::ACCEPTED,
    })
}

/// The device named by `TILT_DEVICE`, or the backend's default when it is unset or empty.
pub fn device_from_env() -> Result<Device, DeviceError> {
    match std::env::var("TILT_DEVICE") {
        Ok(spec) if !spec.trim().is_empty() => parse_device(&spec),
        _ => Ok(selected::default_device()),
    }
}

/// The device the tests run on: [`device_from_env`].
///
/// # Panics
/// If `TILT_DEVICE` does not name a device of the selected backend: a test run on the wrong
/// device must not pass quietly.
pub fn device() -> Device {
    device_from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// The parity tolerance for the selected backend on `device` (see the module doc).
pub fn tolerance(device: &Device) -> Tolerance {
    selected::tolerance(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_and_malformed_devices_are_refused() {
        for bad in ["", "tpu", "cuda:x", "cuda:-1", "cpu:0:1", "gpu0"] {
            let err = parse_device(bad).err();
            // `cuda:N` is refused on the CPU backends only; malformed values everywhere.
            let Some(DeviceError::Unknown { value, backend, .. }) = err else {
                panic!("{bad:?} accepted by {BACKEND}");
            };
            assert_eq!((value.as_str(), backend), (bad, BACKEND));
        }
    }

    #[test]
    fn indexed_forms() {
        assert_eq!(indexed("cuda", &["cuda"]), Some(("cuda", 0)));
        assert_eq!(indexed("cuda:3", &["cuda"]), Some(("cuda", 3)));
        assert_eq!(indexed("gpu:1", &["gpu", "integrated"]), Some(("gpu", 1)));
        assert_eq!(indexed("cuda:", &["cuda"]), None);
        assert_eq!(indexed("rocm:0", &["cuda"]), None);
    }

    #[cfg(any(feature = "flex", feature = "ndarray"))]
    #[test]
    fn cpu_backends_accept_only_cpu() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device(" cpu ").is_ok());
        let msg = parse_device("cuda:0").unwrap_err().to_string();
        assert!(msg.contains("cuda:0") && msg.contains(BACKEND), "{msg}");
        assert_eq!(tolerance(&parse_device("cpu").unwrap()), F32_CPU);
    }

    #[cfg(feature = "tch")]
    #[test]
    fn tch_devices() {
        use burn::backend::libtorch::LibTorchDevice;
        assert_eq!(parse_device("cpu").unwrap(), LibTorchDevice::Cpu);
        assert_eq!(parse_device("cuda").unwrap(), LibTorchDevice::Cuda(0));
        assert_eq!(parse_device("cuda:2").unwrap(), LibTorchDevice::Cuda(2));
        assert_eq!(tolerance(&LibTorchDevice::Cpu), F32_CPU);
    }

    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_devices() {
        use burn::backend::wgpu::WgpuDevice;
        assert_eq!(parse_device("default").unwrap(), WgpuDevice::DefaultDevice);
        assert_eq!(parse_device("gpu:1").unwrap(), WgpuDevice::DiscreteGpu(1));
        assert_eq!(parse_device("integrated").unwrap(), WgpuDevice::IntegratedGpu(0));
        assert_eq!(parse_device("virtual:0").unwrap(), WgpuDevice::VirtualGpu(0));
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_devices() {
        assert_eq!(parse_device("cuda:1").unwrap().index, 1);
        assert!(parse_device("cpu").is_err());
    }

    #[test]
    fn tolerances_widen_with_lower_precision() {
        for (a, b) in [(F32_CPU, F32_GPU), (F32_GPU, TF32_GPU)] {
            assert!(a.logits_abs < b.logits_abs && a.grad_rel < b.grad_rel, "{a:?} {b:?}");
            assert!(a.log_prob_abs < b.log_prob_abs, "{a:?} {b:?}");
        }
    }
}
