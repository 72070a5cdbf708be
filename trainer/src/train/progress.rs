//! What a run shows while it trains: a progress bar with ETA and the latest loss and metrics
//! (on a terminal), and one line per evaluation (always, so that logs of runs without a
//! terminal show progress too). A closed stdout (`tilt train | head -1`) stops the lines,
//! never the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::EvalRecord;

/// The bar and the evaluation lines of one run.
pub(super) struct Progress {
    bar: ProgressBar,
    total: u64,
    /// The latest evaluation, shown after the loss.
    metrics: String,
}

impl Progress {
    /// A bar over `total` steps, starting at `done`; drawn on stderr when `show` and stderr is
    /// a terminal.
    pub(super) fn new(total: u64, done: u64, show: bool) -> Self {
        let target = if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:24}] step {pos}/{len}, ETA {eta_precise}  {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_position(done);
        Self { bar, total, metrics: String::new() }
    }

    /// After an optimizer step.
    pub(super) fn step(&self, step: u64, loss: f64) {
        self.bar.set_position(step);
        self.bar.set_message(format!("loss {loss:.3e}{}", self.metrics));
    }

    /// After an evaluation: prints its line above the bar and keeps its key metrics in view.
    pub(super) fn evaluation(&mut self, r: &EvalRecord, targets: &BTreeMap<String, f64>) {
        let mut line = format!("step {}/{} ({} samples", r.step, self.total, r.samples_seen);
        if let Some(s) = r.elapsed_s {
            let _ = write!(line, ", {}", minutes_seconds(s));
        }
        line.push_str("):");
        let mut short = String::new();
        for (name, m) in &r.moments {
            let target = targets.get(name).map_or(String::new(), |t| format!(" (→ {t})"));
            let _ = write!(line, " E[{name}] {m:.3}{target},");
            let _ = write!(short, " E[{name}] {m:.2}");
        }
        for (label, v) in [("KL(p‖π)", r.kl_p_pi), ("KL(π‖a)", r.kl_pi_a)] {
            // An estimate of 0 may come out as -1e-7: print it as 0.
            if let Some(v) = v.map(|v| if v.abs() < 5e-4 { 0.0 } else { v }) {
                let _ = write!(line, " {label} {v:.3},");
                let _ = write!(short, " {label} {v:.2}");
            }
        }
        let line = line.trim_end_matches(',');
        if self.bar.is_hidden() {
            print_line(line);
        } else {
            self.bar.println(line);
        }
        self.metrics = format!(" |{short}");
    }

    /// Removes the bar.
    pub(super) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Set once writing to stdout failed (its reader went away): nothing more is printed there.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints `line` on stdout. When stdout is closed (a broken pipe) or fails otherwise, it logs
/// that once and prints nothing more: the run goes on and writes its files.
pub(crate) fn print_line(line: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        match e.kind() {
            std::io::ErrorKind::BrokenPipe => {
                log::info!("stdout is closed: no more progress lines (the run goes on)");
            }
            _ => log::warn!("cannot print to stdout ({e}): no more progress lines"),
        }
    }
}

fn minutes_seconds(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}m{:02}s", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_reads_as_minutes_and_seconds() {
        assert_eq!(minutes_seconds(0.2), "0m00s");
        assert_eq!(minutes_seconds(61.6), "1m02s");
        assert_eq!(minutes_seconds(600.0), "10m00s");
    }
}
