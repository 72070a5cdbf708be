//! The append-only `metrics.jsonl`: one JSON object per evaluation.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::ReportError;

/// One evaluation, as a line of `metrics.jsonl`. Every metric says which samples it was
/// computed on: `*_q` fields come from the proposal q's samples; the others from π's (the
/// KL(p‖·), TVD and Z estimates are importance-sampled from the training sampler's samples,
/// see METHODS.md section 5). Absent or non-finite values are `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimizer steps done.
    pub step: u64,
    /// Training samples drawn so far (the plots' x axis).
    pub samples_seen: u64,
    /// Wall-clock seconds since the run started.
    #[serde(default)]
    pub elapsed_s: Option<f64>,
    /// E_π\[φ\] per constraint name, on samples from π.
    #[serde(default, deserialize_with = "lenient_map")]
    pub moments: BTreeMap<String, f64>,
    /// E_q\[φ\] per constraint name, on samples from q (off-policy runs).
    #[serde(default, deserialize_with = "lenient_map")]
    pub moments_q: BTreeMap<String, f64>,
    /// KL(p‖π).
    #[serde(default)]
    pub kl_p_pi: Option<f64>,
    /// KL(p‖q).
    #[serde(default)]
    pub kl_p_q: Option<f64>,
    /// KL(π‖a), on samples from π.
    #[serde(default)]
    pub kl_pi_a: Option<f64>,
    /// TVD(p, π).
    #[serde(default)]
    pub tvd_p_pi: Option<f64>,
    /// TVD(p, q).
    #[serde(default)]
    pub tvd_p_q: Option<f64>,
    /// The estimate of Z.
    #[serde(default)]
    pub z: Option<f64>,
    /// Its standard error.
    #[serde(default)]
    pub z_stderr: Option<f64>,
    /// Effective sample size of the importance weights P/q.
    #[serde(default)]
    pub ess: Option<f64>,
    /// Distinct-1.
    #[serde(default)]
    pub distinct_1: Option<f64>,
    /// Distinct-2.
    #[serde(default)]
    pub distinct_2: Option<f64>,
    /// Distinct-3.
    #[serde(default)]
    pub distinct_3: Option<f64>,
    /// Self-BLEU-3.
    #[serde(default)]
    pub self_bleu_3: Option<f64>,
    /// Self-BLEU-4.
    #[serde(default)]
    pub self_bleu_4: Option<f64>,
    /// Self-BLEU-5.
    #[serde(default)]
    pub self_bleu_5: Option<f64>,
    /// Fluency: mean log a(x) on samples from π.
    #[serde(default)]
    pub mean_log_a: Option<f64>,
    /// Gradient variance (trace of the covariance), when measured at this step.
    #[serde(default)]
    pub grad_variance: Option<f64>,
    /// Any other metric (estimator statistics, β, timings, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// JSON writes non-finite floats as `null`; read them back as NaN.
fn lenient_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

/// An open `metrics.jsonl`, appended to one flushed line per record.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens (creating it and its directory if needed) the log at `path` for appending.
    pub fn open(path: &Path) -> Result<Self, ReportError> {
        let io = |source| ReportError::Io { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        Ok(Self { path: path.to_owned(), file })
    }

    /// Opens the log of a resumed run: drops the records after `step` (written after the
    /// checkpoint being resumed from) so the log reads as one uninterrupted run.
    pub fn resume(path: &Path, step: u64) -> Result<Self, ReportError> {
        if path.exists() {
            let keep: Vec<EvalRecord> =
                read_metrics(path)?.into_iter().filter(|r| r.step <= step).collect();
            let mut text = String::new();
            for r in &keep {
                text.push_str(&serde_json::to_string(r).expect("a record serialises"));
                text.push('\n');
            }
            crate::checkpoint::write_atomic(path, text.as_bytes()).map_err(|e| {
                ReportError::Io {
                    path: path.to_owned(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
        }
        Self::open(path)
    }

    /// Appends one record as a line and flushes it to the file.
    pub fn append(&mut self, record: &EvalRecord) -> Result<(), ReportError> {
        let mut line = serde_json::to_string(record).expect("a record serialises");
        line.push('\n');
        let io = |source| ReportError::Io { path: self.path.clone(), source };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every record of a metrics log. A last line without its newline (a crash while
/// writing it) is skipped with a warning; any other bad line is an error naming its line.
pub fn read_metrics(path: &Path) -> Result<Vec<EvalRecord>, ReportError> {
    let io = |source| ReportError::Io { path: path.to_owned(), source };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut records = Vec::new();
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(r) => records.push(r),
            Err(_) if !line.ends_with('\n') => {
                log::warn!("{}:{number}: ignoring an incomplete last line", path.display());
            }
            Err(source) => {
                return Err(ReportError::BadRecord { path: path.to_owned(), line: number, source });
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64) -> EvalRecord {
        let mut r = EvalRecord { step, samples_seen: step * 512, ..Default::default() };
        r.moments.insert("amazing".into(), 0.1 * step as f64);
        r.kl_p_pi = Some(3.0 / (1.0 + step as f64));
        r.extra.insert("beta".into(), serde_json::json!(0.2));
        r
    }

    #[test]
    fn append_read_and_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/metrics.jsonl");
        let mut log = MetricsLog::open(&path).unwrap();
        for s in 0..4 {
            log.append(&record(s)).unwrap();
        }
        drop(log);
        assert_eq!(read_metrics(&path).unwrap(), (0..4).map(record).collect::<Vec<_>>());
        let mut log = MetricsLog::resume(&path, 1).unwrap();
        log.append(&record(2)).unwrap();
        let steps: Vec<u64> = read_metrics(&path).unwrap().iter().map(|r| r.step).collect();
        assert_eq!(steps, [0, 1, 2]);
    }

    #[test]
    fn nan_becomes_null_and_back() {
        let mut r = record(1);
        r.moments.insert("x".into(), f64::NAN);
        r.kl_pi_a = Some(f64::NAN);
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains("\"x\":null") && line.contains("\"kl_pi_a\":null"), "{line}");
        let back: EvalRecord = serde_json::from_str(&line).unwrap();
        assert!(back.moments["x"].is_nan());
        assert_eq!(back.kl_pi_a, None);
    }

    #[test]
    fn bad_lines_are_named_and_a_torn_last_line_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        let good = serde_json::to_string(&record(0)).unwrap();
        fs::write(&path, format!("{good}\n{{\"step\": 1, \"samp")).unwrap();
        assert_eq!(read_metrics(&path).unwrap().len(), 1);
        fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let e = read_metrics(&path).unwrap_err().to_string();
        assert!(e.contains("metrics.jsonl:2: not a metrics record"), "{e}");
    }
}
