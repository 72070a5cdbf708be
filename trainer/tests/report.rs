//! Plots and summary from a synthetic metrics.jsonl.

use std::collections::BTreeMap;

use tilt_trainer::report::{
    EvalRecord, MetricsLog, PLOT_FILES, read_metrics, render_plots, summary_table,
};

/// A GDC++-like run: E[φ] rises toward the targets, KL(p‖π) falls, KL(π‖a) grows.
fn synthetic_run(path: &std::path::Path) {
    let mut log = MetricsLog::open(path).unwrap();
    for i in 0..=20u64 {
        let t = i as f64 / 20.0;
        let mut r = EvalRecord { step: i * 10, samples_seen: i * 10 * 512, ..Default::default() };
        r.moments.insert("female".into(), 0.07 + 0.41 * (1.0 - (-4.0 * t).exp()));
        r.moments.insert("science".into(), 0.12 + 0.85 * t.powf(0.7));
        r.kl_p_pi = Some(3.2 * (-3.0 * t).exp() + 0.05);
        r.kl_p_q = Some(3.2 * (-2.5 * t).exp() + 0.08);
        r.kl_pi_a = Some(1.4 * t);
        r.distinct_1 = Some(0.9 - 0.05 * t);
        r.self_bleu_4 = Some(0.2 + 0.02 * t);
        log.append(&r).unwrap();
    }
}

#[test]
fn plots_render_from_a_metrics_file() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics = tmp.path().join("metrics.jsonl");
    synthetic_run(&metrics);
    let records = read_metrics(&metrics).unwrap();
    assert_eq!(records.len(), 21);
    let targets = BTreeMap::from([("female".to_owned(), 0.5), ("science".to_owned(), 1.0)]);
    let out = tmp.path().join("plots");
    let written = render_plots(&records, &targets, &out).unwrap();
    assert_eq!(written, PLOT_FILES.map(|f| out.join(f)));
    for p in &written {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", p.display());
        // IHDR: width and height.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 960);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 600);
        assert!(bytes.len() > 10_000, "{}: only {} bytes", p.display(), bytes.len());
    }
    // Keep a copy for looking at, when asked.
    if let Ok(dir) = std::env::var("TILT_KEEP_PLOTS") {
        for p in &written {
            std::fs::copy(p, std::path::Path::new(&dir).join(p.file_name().unwrap())).unwrap();
        }
    }
    let table = summary_table(&records[0], records.last().unwrap(), &targets);
    assert!(table.contains("E[φ] female"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("KL(π‖a)") && l.contains("1.4000")), "{table}");
}

#[test]
fn plots_without_data_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let only_kl = [EvalRecord { kl_pi_a: Some(0.0), ..Default::default() }];
    let written = render_plots(&only_kl, &BTreeMap::new(), tmp.path()).unwrap();
    assert_eq!(written, [tmp.path().join("kl_pi_a.png")]);
}
