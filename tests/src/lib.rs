//! Cross-crate integration tests for tilt, and the backend matrix.
//!
//! The library part holds what every test shares:
//!
//! - [`backend`]: the concrete backend chosen by cargo feature ([`Inner`], [`TestBackend`],
//!   [`Device`]), the device from `TILT_DEVICE` ([`device()`]) and the parity tolerance of each
//!   precision class ([`tolerance`], [`F32_CPU`], [`F32_GPU`], [`TF32_GPU`]).
//! - [`fixture`]: the Hugging Face transformers reference values written by
//!   `policies/tests/fixtures/make_gpt2_fixture.py` ([`Fixture`]).
//! - [`compare`]: host read-back and error measures.
//!
//! The tests themselves are one integration-test binary, `tests/tests.rs`; each is written
//! against the generic API (`B: Backend` / `B: AutodiffBackend`) and instantiated with the
//! selected backend, so `cargo test -p tilt-tests --no-default-features --features <backend>`
//! runs the same suite on every backend.
#![deny(missing_docs)]

pub mod backend;
pub mod compare;
pub mod fixture;

pub use backend::{
    BACKEND, Device, DeviceError, F32_CPU, F32_GPU, Inner, TF32_GPU, TestBackend, Tolerance,
    device, device_from_env, parse_device, tolerance,
};
pub use compare::{max_abs_diff, rel_errors, to_vec};
pub use fixture::{Fixture, fixture_dir};
