//! Data parallelism: peers in one process (threads), and nodes as processes on loopback.
//!
//! A run with `S` sample streams draws the same samples on one peer or on any number of peers
//! that divides `S`, so a data-parallel run must end where the single-peer run on the union
//! of the peers' batches ends, to float error (the gradient sums go in another order).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use tilt_trainer::parallel::Topology;
use tilt_trainer::plan::{Overrides, Plan};
use tilt_trainer::report::{RunInfo, read_metrics};
use tilt_trainer::train::{RunOptions, run_parallel};

use crate::train::{SERIAL, conditional_config, config, tiny_base};

type B = Autodiff<Flex>;

/// GDC++ with a proposal check every 2 steps, 8 samples per step.
fn gdc_pp(dir: &Path, steps: u64) -> Plan {
    let path = config(dir, r#"kind = "gdc_pp""#, steps, "[proposal]\ninterval = 2");
    Plan::load(&path, &Overrides::default()).unwrap()
}

fn topology(devices: usize, streams: usize) -> Topology {
    Topology { devices, sample_streams: Some(streams), ..Topology::default() }
}

fn train(plan: &Plan, out: &str, t: &Topology) -> PathBuf {
    let mut plan = plan.clone();
    plan.output_dir = plan.output_dir.with_file_name(out);
    let devices = vec![Default::default(); t.devices];
    let summary = run_parallel::<B>(&plan, devices, t, &RunOptions::default()).unwrap();
    assert_eq!(summary.steps, plan.steps);
    plan.output_dir
}

fn weights(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    tilt_policies::checkpoint::load_hf_dir::<Flex>(&dir.join("final"), &Default::default())
        .unwrap()
        .named_tensors()
}

/// The largest |a − b| over all weights, relative to the largest |a|.
fn max_rel_diff(a: &Path, b: &Path) -> f32 {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    let (mut diff, mut scale) = (0f32, 0f32);
    for ((na, sa, va), (nb, sb, vb)) in wa.iter().zip(&wb) {
        assert_eq!((na, sa), (nb, sb));
        for (x, y) in va.iter().zip(vb) {
            diff = diff.max((x - y).abs());
            scale = scale.max(x.abs());
        }
    }
    diff / scale
}

fn info(dir: &Path) -> RunInfo {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

/// The training batches' mean features, step by step: equal when the samples are.
fn batch_moments(dir: &Path) -> Vec<(u64, String)> {
    let records = read_metrics(&dir.join("metrics.jsonl")).unwrap();
    let key = |r: &tilt_trainer::report::EvalRecord| {
        let m: Vec<String> = r
            .extra
            .iter()
            .filter(|(k, _)| k.starts_with("train/moment/"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        (r.step, m.join(","))
    };
    records.iter().map(key).collect()
}

/// `peers` peers in one process against one peer drawing the same `peers` streams.
fn peers_match_one_peer(peers: usize) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let plan = gdc_pp(dir.path(), 4);
    peers_match_one_peer_with(&plan, peers);
}

fn peers_match_one_peer_with(plan: &Plan, peers: usize) -> (PathBuf, PathBuf) {
    let parallel = train(plan, "parallel", &topology(peers, peers));
    let single = train(plan, "single", &topology(1, peers));
    let (p, s) = (info(&parallel), info(&single));
    assert_eq!((p.peers, p.sample_streams), (peers, peers));
    assert_eq!((s.peers, s.sample_streams), (1, peers));
    assert_eq!(p.fingerprint.len(), 16, "the peers' weights were checked: {p:?}");
    assert_eq!(batch_moments(&parallel), batch_moments(&single), "the same samples");
    let diff = max_rel_diff(&parallel, &single);
    eprintln!("{peers} peers vs 1 peer on the union: max relative weight difference {diff:.2e}");
    assert!(diff < 1e-4, "{diff}");
    // Same λ: the fit saw the same samples.
    for (a, b) in p.lambda.iter().zip(&s.lambda) {
        assert!((a - b).abs() < 1e-9 * a.abs().max(1.0), "λ {a} vs {b}");
    }
    (parallel, single)
}

#[test]
fn two_peers_equal_one_peer_on_the_union_of_their_batches() {
    peers_match_one_peer(2);
}

#[test]
fn kl_control_with_a_critic_on_two_peers_equals_one_peer() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let path = config(dir.path(), "kind = \"kl_control\"\ncritic = true\nppo_epochs = 2", 4, "");
    let plan = Plan::load(&path, &Overrides::default()).unwrap();
    let (parallel, single) = peers_match_one_peer_with(&plan, 2);
    // The value heads stayed together: the last step's value loss (from the sampling-time
    // values) agrees.
    let value_loss = |dir: &Path| {
        let records = read_metrics(&dir.join("metrics.jsonl")).unwrap();
        records.last().unwrap().extra["train/value_loss"].as_f64().unwrap()
    };
    let (a, b) = (value_loss(&parallel), value_loss(&single));
    assert!((a - b).abs() < 1e-4 * a.abs().max(1e-3), "value loss {a} vs {b}");
}

#[test]
fn a_conditional_run_on_three_peers_equals_one_peer() {
    // CDPG with PPO epochs: 8 samples of 2 contexts (4 each) in 3 streams of 3, 3 and 2, so
    // the middle peer draws samples of both contexts; each Ẑ_c is computed on the whole batch.
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let path = conditional_config(dir.path(), "kind = \"cdpg\"\nppo = true\nppo_epochs = 2", 4);
    let plan = Plan::load(&path, &Overrides::default()).unwrap();
    peers_match_one_peer_with(&plan, 3);
}

#[test]
fn three_peers_with_unequal_shares_equal_one_peer() {
    // 8 samples in 3 streams: shares 3, 3 and 2; the gradient must weight them by their size.
    peers_match_one_peer(3);
}

#[test]
fn a_checkpoint_resumes_on_another_topology_with_the_same_streams() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let plan = gdc_pp(dir.path(), 10);
    let whole = train(&plan, "whole", &topology(1, 2));
    // 2 peers stop after 5 steps (a checkpoint), then one peer with the same 2 streams goes on.
    let mut half = plan.clone();
    half.output_dir = half.output_dir.with_file_name("half");
    let stop = RunOptions { stop_after: Some(5), ..RunOptions::default() };
    let devices = vec![Default::default(); 2];
    run_parallel::<B>(&half, devices, &topology(2, 2), &stop).unwrap();
    let resume = RunOptions { resume: Some(half.output_dir.clone()), ..RunOptions::default() };
    run_parallel::<B>(&half, vec![Default::default()], &topology(1, 2), &resume).unwrap();
    assert_eq!(batch_moments(&whole), batch_moments(&half.output_dir));
    assert!(max_rel_diff(&whole, &half.output_dir) < 1e-4);
    // A different number of streams is refused, naming the one to use.
    let wrong = RunOptions { resume: Some(half.output_dir.clone()), ..RunOptions::default() };
    let err =
        run_parallel::<B>(&half, vec![Default::default()], &topology(1, 1), &wrong).unwrap_err();
    assert!(format!("{err:#}").contains("--sample-streams 2"), "{err:#}");
}

#[test]
fn a_bad_topology_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let plan = gdc_pp(dir.path(), 2);
    let bad = [
        (topology(2, 3), "multiple"),
        (topology(1, 9), "batch of 8"),
        (Topology { nodes: 2, ..Topology::default() }, "--coordinator"),
        (Topology { nodes: 2, node_rank: 2, ..Topology::default() }, "--node-rank"),
    ];
    for (t, says) in bad {
        let devices = vec![Default::default(); t.devices];
        let err = run_parallel::<B>(&plan, devices, &t, &RunOptions::default()).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tilt(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tilt"));
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Kills the child when dropped (a failing test leaves no process behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a coordinator and `tilt train` on two nodes; returns the node processes.
/// Starts `tilt coordinator` on a free port; returns it and its address.
fn coordinator() -> (Guard, String) {
    let port = free_port().to_string();
    let process = Guard(tilt(&["coordinator", "--port", &port]).spawn().unwrap());
    (process, format!("127.0.0.1:{port}"))
}

/// Starts `tilt train` on two nodes meeting at `coordinator_address`; returns the node
/// processes and node 1's address.
fn two_nodes(
    coordinator_address: &str,
    config: &Path,
    out: &Path,
    extra: &[&str],
) -> (Guard, Guard, String) {
    let node_address = format!("127.0.0.1:{}", free_port());
    let node = |rank: &str, address: &str| {
        let mut args = vec![
            "train",
            "--config",
            config.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
            "--nodes",
            "2",
            "--node-rank",
            rank,
            "--coordinator",
            coordinator_address,
            "--node-address",
            address,
        ];
        args.extend_from_slice(extra);
        Guard(tilt(&args).spawn().unwrap())
    };
    let node1_address = node_address.clone();
    let n0 = node("0", &format!("127.0.0.1:{}", free_port()));
    let n1 = node("1", &node1_address);
    (n0, n1, node1_address)
}

/// Waits for both nodes and asserts that both succeeded.
fn both_succeed(mut n0: Guard, mut n1: Guard) {
    let (s0, s1) = (n0.0.wait().unwrap(), n1.0.wait().unwrap());
    let (e0, e1) = (stderr_of(&mut n0.0), stderr_of(&mut n1.0));
    assert!(s0.success() && s1.success(), "node 0: {e0}\nnode 1: {e1}");
}

/// Asserts that the run in `out` had `peers` peers and trained like the single-peer run in
/// `single` (which drew as many streams): the same samples, the weights to float error.
fn same_run(out: &Path, single: &Path, peers: usize) {
    let i = info(out);
    assert_eq!((i.peers, i.sample_streams), (peers, peers));
    assert_eq!(batch_moments(out), batch_moments(single), "the same samples");
    let diff = max_rel_diff(out, single);
    eprintln!("{peers} peers on nodes vs 1 peer on the union: max relative difference {diff:.2e}");
    assert!(diff < 1e-4, "{diff}");
}

/// Waits until `out` holds a checkpoint (node 0 must still run meanwhile).
fn wait_for_checkpoint(out: &Path, n0: &mut Guard) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while tilt_trainer::train::resume_from(out).is_err() {
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        assert!(n0.0.try_wait().unwrap().is_none(), "node 0 ended: {}", stderr_of(&mut n0.0));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits at most 60 s for node 0 to exit; returns its failure's stderr and the time waited.
fn fails_within_a_minute(n0: &mut Guard) -> (String, Duration) {
    let since = Instant::now();
    let status = loop {
        if let Some(s) = n0.0.try_wait().unwrap() {
            break s;
        }
        assert!(since.elapsed() < Duration::from_secs(60), "node 0 still runs 60 s later");
        std::thread::sleep(Duration::from_millis(100));
    };
    let waited = since.elapsed();
    let err = stderr_of(&mut n0.0);
    assert!(!status.success(), "{err}");
    (err, waited)
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

#[test]
fn two_nodes_on_loopback_equal_one_peer_and_a_killed_node_is_named() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let plan = gdc_pp(dir.path(), 4);
    let single = train(&plan, "single", &topology(1, 2));

    // The multi-node path: two processes meet at a coordinator.
    let out = dir.path().join("nodes");
    // One coordinator serves the three runs below (a node that ends, or dies, is forgotten).
    let (_c, at) = coordinator();
    let (n0, n1, _) = two_nodes(&at, &plan.config_file, &out, &[]);
    both_succeed(n0, n1);
    same_run(&out, &single, 2);

    // Node 1 dies mid-run: node 0 stops within the timeout, naming it; its checkpoint holds.
    let long = config(dir.path(), r#"kind = "gdc_pp""#, 5000, "[proposal]\ninterval = 2");
    let out = dir.path().join("killed");
    let (mut n0, mut n1, node1) = two_nodes(&at, &long, &out, &["--peer-timeout", "10"]);
    wait_for_checkpoint(&out, &mut n0);
    n1.0.kill().unwrap();
    let (err, waited) = fails_within_a_minute(&mut n0);
    eprintln!("node 0 stopped {:.1} s after node 1 was killed:\n{err}", waited.as_secs_f64());
    assert!(err.contains("node 1") && err.contains(&node1), "{err}");
    let (ck, step) = tilt_trainer::train::resume_from(&out).unwrap();
    assert!(step >= 5, "{}", ck.display());

    // The same coordinator takes a new run after the failed one.
    let short = config(dir.path(), r#"kind = "gdc_pp""#, 4, "[proposal]\ninterval = 2");
    let out = dir.path().join("again");
    let (n0, n1, _) = two_nodes(&at, &short, &out, &[]);
    both_succeed(n0, n1);
    assert_eq!(batch_moments(&out), batch_moments(&single));
}

#[test]
fn an_unreachable_coordinator_is_named_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let plan = gdc_pp(dir.path(), 2);
    let coordinator = format!("127.0.0.1:{}", free_port());
    let node = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = tilt(&[
        "train",
        "--config",
        plan.config_file.to_str().unwrap(),
        "--nodes",
        "2",
        "--coordinator",
        &coordinator,
        "--node-address",
        &node,
        "--peer-timeout",
        "2",
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("ws://{coordinator}")) && err.contains("tilt coordinator"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

#[test]
fn a_stuck_node_stops_the_run_after_the_peer_timeout() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let long = config(dir.path(), r#"kind = "gdc_pp""#, 5000, "[proposal]\ninterval = 2");
    let out = dir.path().join("stuck");
    let (_c, at) = coordinator();
    let (mut n0, n1, _) = two_nodes(&at, &long, &out, &["--peer-timeout", "3"]);
    wait_for_checkpoint(&out, &mut n0);
    // Node 1 stops answering but its process (and its sockets) stay up.
    let pid = n1.0.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let (err, waited) = fails_within_a_minute(&mut n0);
    eprintln!("node 0 stopped {:.1} s after node 1 hung:\n{err}", waited.as_secs_f64());
    assert!(err.contains("waited 3 s") && err.contains("--resume"), "{err}");
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
}

#[test]
fn two_nodes_of_two_devices_equal_one_peer_on_four_streams() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    tiny_base(dir.path());
    let plan = gdc_pp(dir.path(), 4);
    let single = train(&plan, "single", &topology(1, 4));
    let (_c, at) = coordinator();
    let out = dir.path().join("nodes");
    let (n0, n1, _) = two_nodes(&at, &plan.config_file, &out, &["--devices", "2"]);
    both_succeed(n0, n1);
    same_run(&out, &single, 4);
}
