//! The tilt backend-matrix suite (one binary): every test runs on the backend selected by the
//! cargo feature (`tilt_tests::backend`) and on the device named by `TILT_DEVICE`.

mod checkpoint;
mod end_to_end;
mod estimators;
mod parity;
mod sampling;
