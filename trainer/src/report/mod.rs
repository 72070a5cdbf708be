//! What a run leaves behind for people: the `metrics.jsonl` log, PNG plots and the final
//! summary table.

mod compare;
mod metrics_log;
mod plots;
mod summary;

pub use compare::{RUN_FILE, RunInfo, RunRecords, Stat, compare, find_runs};
pub use metrics_log::{EvalRecord, MetricsLog, read_metrics};
pub use plots::{PLOT_FILES, render_plots};
pub use summary::summary_table;

use std::path::PathBuf;

/// Report errors; each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// An I/O error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line of a metrics log that is not an evaluation record.
    #[error("{}:{line}: not a metrics record: {source}", path.display())]
    BadRecord {
        /// The log.
        path: PathBuf,
        /// Its line, from 1.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Drawing a plot failed.
    #[error("{}: cannot draw the plot: {message}", path.display())]
    Plot {
        /// The image.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
}
