//! The `tilt` binary.

fn main() {
    eprintln!("tilt: the trainer is not built yet (issue 5)");
    std::process::exit(2);
}
