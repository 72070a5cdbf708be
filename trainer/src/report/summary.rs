//! The plain-text table printed at the end of a run.

use std::collections::BTreeMap;

use super::EvalRecord;

/// A table of the first and last evaluations: E\[φ\] per constraint against its target, then
/// the divergences, Z, diversity and fluency. Missing values print as `-`.
pub fn summary_table(
    first: &EvalRecord,
    last: &EvalRecord,
    targets: &BTreeMap<String, f64>,
) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    // Estimates of 0 may come out as -1e-7: print them as 0.
    let fmt = |v: Option<f64>| {
        v.map_or("-".to_owned(), |v| format!("{:.4}", if v.abs() < 5e-5 { 0.0 } else { v }))
    };
    let mut names: Vec<&String> = first.moments.keys().chain(last.moments.keys()).collect();
    names.sort();
    names.dedup();
    for n in names {
        rows.push([
            format!("E[φ] {n}"),
            fmt(first.moments.get(n).copied()),
            fmt(last.moments.get(n).copied()),
            fmt(targets.get(n).copied()),
        ]);
    }
    type Getter = fn(&EvalRecord) -> Option<f64>;
    let scalar: [(&str, Getter, Option<&str>); 13] = [
        ("KL(p‖π)", |r| r.kl_p_pi, Some("0")),
        ("KL(p‖q)", |r| r.kl_p_q, Some("0")),
        ("KL(π‖a)", |r| r.kl_pi_a, None),
        ("TVD(p,π)", |r| r.tvd_p_pi, Some("0")),
        ("Z", |r| r.z, None),
        ("Distinct-1", |r| r.distinct_1, None),
        ("Distinct-2", |r| r.distinct_2, None),
        ("Distinct-3", |r| r.distinct_3, None),
        ("Self-BLEU-3", |r| r.self_bleu_3, None),
        ("Self-BLEU-4", |r| r.self_bleu_4, None),
        ("Self-BLEU-5", |r| r.self_bleu_5, None),
        ("mean log a(x)", |r| r.mean_log_a, None),
        ("grad variance", |r| r.grad_variance, None),
    ];
    for (name, get, target) in scalar {
        if get(first).is_none() && get(last).is_none() {
            continue;
        }
        rows.push([
            name.to_owned(),
            fmt(get(first)),
            fmt(get(last)),
            target.unwrap_or("").to_owned(),
        ]);
    }
    let header = [
        "metric".to_owned(),
        format!("step {}", first.step),
        format!("step {}", last.step),
        "target".to_owned(),
    ];
    let width =
        |i: usize| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2), width(3)];
    let line = |r: &[String; 4]| {
        let pad = |s: &str, w: usize, right: bool| {
            let fill = " ".repeat(w - s.chars().count());
            if right { format!("{fill}{s}") } else { format!("{s}{fill}") }
        };
        format!(
            "{}  {}  {}  {}",
            pad(&r[0], widths[0], false),
            pad(&r[1], widths[1], true),
            pad(&r[2], widths[2], true),
            pad(&r[3], widths[3], true)
        )
        .trim_end()
        .to_owned()
    };
    let mut out = line(&header);
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 6));
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lines_up() {
        let mut a = EvalRecord::default();
        a.moments.insert("female".into(), 0.07);
        a.kl_p_pi = Some(2.5);
        let mut b = EvalRecord { step: 100, ..a.clone() };
        b.moments.insert("female".into(), 0.4812);
        b.kl_pi_a = Some(0.75);
        let targets = BTreeMap::from([("female".to_owned(), 0.5)]);
        let t = summary_table(&a, &b, &targets);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "metric       step 0  step 100  target");
        assert_eq!(lines[2], "E[φ] female  0.0700    0.4812  0.5000");
        assert_eq!(lines[3], "KL(p‖π)      2.5000    2.5000       0");
        assert_eq!(lines[4], "KL(π‖a)           -    0.7500");
        assert_eq!(lines.len(), 5, "{t}");
    }
}
