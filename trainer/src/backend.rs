//! Backend selection: the one place where a concrete burn backend is named.
//!
//! Everything else is generic over `B: AutodiffBackend`. A command describes its work as a
//! [`Job`] (a value with a generic `run::<B>(device)` method, since closures cannot be generic)
//! and [`launch`] runs it on the backend chosen on the command line or in the config, provided
//! that backend's cargo feature was compiled in:
//!
//! | backend | cargo feature | burn type | devices |
//! |---|---|---|---|
//! | `flex` (default) | `flex` | `Autodiff<Flex>` | `cpu` |
//! | `ndarray` | `ndarray` | `Autodiff<NdArray>` | `cpu` |
//! | `tch` | `tch` | `Autodiff<LibTorch>` | `cpu` (default), `cuda:N` |
//! | `wgpu` | `wgpu` | `Autodiff<Wgpu>` | `gpu:N` (N-th discrete GPU; default: wgpu's default adapter) |
//! | `cuda` | `cuda` | `Autodiff<Cuda>` | `cuda:N` (default `cuda:0`) |

use burn::tensor::backend::AutodiffBackend;

use crate::cli::BadInput;
use crate::config::{Backend, DeviceSpec};

/// Work that runs on whichever backend [`launch`] picks.
pub trait Job {
    /// What the work returns.
    type Output;

    /// Runs the work on backend `B` and `device`.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<Self::Output>;

    /// Runs the work on several devices of backend `B` (data parallelism); by default on the
    /// first.
    fn run_on<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> anyhow::Result<Self::Output>
    where
        Self: Sized,
    {
        let device = devices.into_iter().next().ok_or_else(|| BadInput("no device".into()))?;
        self.run::<B>(device)
    }
}

/// Runs `job` on `backend` and `device` (`None`: the backend's default device).
///
/// # Errors
/// A [`BadInput`] (exit code 2) when the backend was not compiled in (the message names the
/// cargo feature to enable) or the device does not exist for that backend; otherwise whatever
/// the job returns.
pub fn launch<J: Job>(
    backend: Backend,
    device: Option<DeviceSpec>,
    job: J,
) -> anyhow::Result<J::Output> {
    log::info!("backend {backend}, device {}", device.map_or("default".into(), |d| d.to_string()));
    launch_on(backend, vec![device], job)
}

/// Runs `job` on `backend` and several devices (`None`: the backend's default device), with
/// [`Job::run_on`]; errors as [`launch`].
pub fn launch_on<J: Job>(
    backend: Backend,
    devices: Vec<Option<DeviceSpec>>,
    job: J,
) -> anyhow::Result<J::Output> {
    match backend {
        Backend::Flex => flex::run(devices, job),
        Backend::Ndarray => ndarray::run(devices, job),
        Backend::Tch => tch::run(devices, job),
        Backend::Wgpu => wgpu::run(devices, job),
        Backend::Cuda => cuda::run(devices, job),
    }
}

/// Whether `backend`'s cargo feature was compiled into this binary.
pub fn is_compiled(backend: Backend) -> bool {
    match backend {
        Backend::Flex => cfg!(feature = "flex"),
        Backend::Ndarray => cfg!(feature = "ndarray"),
        Backend::Tch => cfg!(feature = "tch"),
        Backend::Wgpu => cfg!(feature = "wgpu"),
        Backend::Cuda => cfg!(feature = "cuda"),
    }
}

#[allow(dead_code)] // Unused when every backend is compiled in.
fn not_compiled(backend: Backend) -> anyhow::Error {
    BadInput(format!(
        "backend `{backend}` is not compiled into this tilt; rebuild it with \
         `cargo build --release -p tilt-trainer --features {backend}`"
    ))
    .into()
}

#[allow(dead_code)] // Unused when no backend is compiled in.
fn bad_device(backend: Backend, device: DeviceSpec, allowed: &str) -> anyhow::Error {
    BadInput(format!("device `{device}` does not exist for backend `{backend}` (use {allowed})"))
        .into()
}

/// Generates a backend module: with its feature, `run` picks the device and launches; without
/// it, `run` reports the missing feature.
macro_rules! backend_module {
    ($module:ident, $feature:literal, $variant:ident, $device:ident => $pick:expr, $ty:ty) => {
        #[cfg(feature = $feature)]
        mod $module {
            #[allow(unused_imports)]
            use super::{Backend, DeviceSpec, Job, bad_device};

            pub(super) fn run<J: Job>(
                devices: Vec<Option<DeviceSpec>>,
                job: J,
            ) -> anyhow::Result<J::Output> {
                let devices =
                    devices.into_iter().map(|$device| $pick).collect::<anyhow::Result<Vec<_>>>()?;
                job.run_on::<burn::backend::Autodiff<$ty>>(devices)
            }
        }

        #[cfg(not(feature = $feature))]
        mod $module {
            use super::{Backend, DeviceSpec, Job, not_compiled};

            pub(super) fn run<J: Job>(
                _: Vec<Option<DeviceSpec>>,
                _: J,
            ) -> anyhow::Result<J::Output> {
                Err(not_compiled(Backend::$variant))
            }
        }
    };
}

backend_module!(flex, "flex", Flex, device => match device {
    None | Some(DeviceSpec::Cpu) => Ok(burn::backend::flex::FlexDevice),
    Some(d) => Err(bad_device(Backend::Flex, d, "`cpu`")),
}, burn::backend::Flex);

backend_module!(ndarray, "ndarray", Ndarray, device => match device {
    None | Some(DeviceSpec::Cpu) => Ok(burn::backend::ndarray::NdArrayDevice::Cpu),
    Some(d) => Err(bad_device(Backend::Ndarray, d, "`cpu`")),
}, burn::backend::NdArray);

backend_module!(tch, "tch", Tch, device => match device {
    None | Some(DeviceSpec::Cpu) => Ok(burn::backend::libtorch::LibTorchDevice::Cpu),
    Some(DeviceSpec::Cuda(i)) => Ok(burn::backend::libtorch::LibTorchDevice::Cuda(i)),
    Some(d) => Err(bad_device(Backend::Tch, d, "`cpu` or `cuda:N`")),
}, burn::backend::LibTorch);

backend_module!(wgpu, "wgpu", Wgpu, device => match device {
    None => Ok(burn::backend::wgpu::WgpuDevice::DefaultDevice),
    Some(DeviceSpec::Gpu(i)) => Ok(burn::backend::wgpu::WgpuDevice::DiscreteGpu(i)),
    Some(d) => Err(bad_device(Backend::Wgpu, d, "`gpu` or `gpu:N`")),
}, burn::backend::Wgpu);

backend_module!(cuda, "cuda", Cuda, device => match device {
    None => Ok(burn::backend::cuda::CudaDevice { index: 0 }),
    Some(DeviceSpec::Cuda(i)) => Ok(burn::backend::cuda::CudaDevice { index: i }),
    Some(d) => Err(bad_device(Backend::Cuda, d, "`cuda` or `cuda:N`")),
}, burn::backend::Cuda);

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports the backend's name and device as burn sees them.
    struct Probe;

    impl Job for Probe {
        type Output = String;

        fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<String> {
            Ok(format!("{} {device:?}", B::name(&device)))
        }
    }

    #[test]
    fn flex_runs_and_rejects_gpu_devices() {
        let out = launch(Backend::Flex, None, Probe).unwrap();
        assert!(out.to_lowercase().contains("flex"), "{out}");
        assert!(launch(Backend::Flex, Some(DeviceSpec::Cpu), Probe).is_ok());
        let err = launch(Backend::Flex, Some(DeviceSpec::Cuda(1)), Probe).unwrap_err();
        assert!(err.is::<BadInput>());
        assert!(err.to_string().contains("cuda:1"), "{err}");
    }

    #[test]
    fn missing_backends_name_their_feature() {
        for backend in [Backend::Ndarray, Backend::Tch, Backend::Wgpu, Backend::Cuda] {
            if is_compiled(backend) {
                continue;
            }
            let err = launch(backend, None, Probe).unwrap_err();
            assert!(err.is::<BadInput>());
            let msg = err.to_string();
            assert!(msg.contains(&format!("--features {backend}")), "{msg}");
        }
    }
}
