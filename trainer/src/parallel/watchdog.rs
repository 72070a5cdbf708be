//! The bound on waiting: burn-collective's calls block until every peer has made the same
//! call, and a peer that died never makes it. The watchdog (one thread per process) ends the
//! process when a peer has waited longer than the timeout, after naming the peers and
//! addresses that no longer accept connections. Checkpoints are written atomically, so the
//! last one is intact.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Topology;

/// What one local peer is waiting for, and since when.
#[derive(Debug, Clone)]
struct Waiting {
    peer: usize,
    what: String,
    since: Instant,
}

/// Watches the collective calls of one process's peers.
#[derive(Debug)]
pub struct Watchdog {
    timeout: Duration,
    slots: Mutex<Vec<Option<Waiting>>>,
    peers: Vec<usize>,
    disarmed: AtomicBool,
    coordinator: Option<String>,
    node_rank: u32,
    roster: Mutex<Vec<(u32, String)>>,
    output: PathBuf,
}

impl Watchdog {
    /// Starts the watchdog of this process's `local` peers (its thread stops when the
    /// returned handle is dropped).
    pub fn start(topology: &Topology, local: usize, output: &Path) -> Arc<Self> {
        let dog = Arc::new(Self {
            timeout: topology.timeout,
            slots: Mutex::new(vec![None; local]),
            peers: (0..local).map(|l| topology.peer_index(l)).collect(),
            disarmed: AtomicBool::new(false),
            coordinator: topology.coordinator.clone(),
            node_rank: topology.node_rank,
            roster: Mutex::new(Vec::new()),
            output: output.to_owned(),
        });
        let weak = Arc::downgrade(&dog);
        std::thread::Builder::new()
            .name("tilt-watchdog".into())
            .spawn(move || watch(weak))
            .expect("spawning the watchdog thread");
        dog
    }

    /// The `local` peer starts waiting in `what`.
    pub fn begin(&self, local: usize, what: &str) {
        let w = Waiting { peer: self.peers[local], what: what.to_owned(), since: Instant::now() };
        self.slots.lock().expect("watchdog lock")[local] = Some(w);
    }

    /// The `local` peer's call returned.
    pub fn end(&self, local: usize) {
        self.slots.lock().expect("watchdog lock")[local] = None;
    }

    /// Stops watching (the run has ended, or its error is being reported).
    pub fn disarm(&self) {
        self.disarmed.store(true, Ordering::SeqCst);
    }

    /// The nodes of the run: (rank, address).
    pub fn set_roster(&self, roster: Vec<(u32, String)>) {
        *self.roster.lock().expect("watchdog lock") = roster;
    }

    /// What is unreachable, as a sentence starting with "; " (empty with one node). A process
    /// that was just killed may accept connections for a moment: the probe is repeated for up
    /// to 3 s before concluding that every node is up.
    pub fn diagnosis(&self) -> String {
        let mut down = self.unreachable();
        for _ in 0..6 {
            if !down.is_empty() || self.coordinator.is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            down = self.unreachable();
        }
        if !down.is_empty() {
            format!("; unreachable: {}", down.join(", "))
        } else if self.coordinator.is_some() {
            "; every node still accepts connections (a peer is stuck, or slower than \
             --peer-timeout)"
                .to_owned()
        } else {
            String::new()
        }
    }

    /// The coordinator and other nodes that refuse a connection now.
    fn unreachable(&self) -> Vec<String> {
        let mut down = Vec::new();
        if let Some(c) = &self.coordinator
            && let Err(e) = probe(c, Duration::from_secs(2))
        {
            down.push(format!("the coordinator at {c} ({e})"));
        }
        let roster = self.roster.lock().expect("watchdog lock").clone();
        let mut seen = std::collections::BTreeSet::new();
        for (rank, address) in roster {
            if rank == self.node_rank || address.is_empty() || !seen.insert(rank) {
                continue;
            }
            if let Err(e) = probe(&address, Duration::from_secs(2)) {
                down.push(format!("node {rank} at {address} ({e})"));
            }
        }
        down
    }

    fn overdue(&self) -> Option<Waiting> {
        let slots = self.slots.lock().expect("watchdog lock");
        slots.iter().flatten().find(|w| w.since.elapsed() > self.timeout).cloned()
    }

    fn report(&self, w: &Waiting) -> String {
        format!(
            "peer {} waited {} s for the other peers in {}{}. {}",
            w.peer,
            self.timeout.as_secs(),
            w.what,
            self.diagnosis(),
            self.resume_hint()
        )
    }

    /// Where the run's last checkpoint is and how to continue it.
    pub fn resume_hint(&self) -> String {
        let out = self.output.display();
        format!(
            "The run stops here; its last checkpoint (in {out}/checkpoints) is intact: continue \
             with `tilt train --resume {out}` and the same --sample-streams"
        )
    }
}

fn watch(dog: Weak<Watchdog>) {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Some(dog) = dog.upgrade() else { return };
        if dog.disarmed.load(Ordering::SeqCst) {
            return;
        }
        if let Some(w) = dog.overdue() {
            eprintln!("tilt: error: {}", dog.report(&w));
            std::process::exit(1);
        }
    }
}

/// Whether `address` (`ws://HOST:PORT` or `HOST:PORT`) accepts a TCP connection.
pub fn probe(address: &str, timeout: Duration) -> Result<(), String> {
    let rest = address.rsplit("://").next().unwrap_or(address).trim_end_matches('/');
    let addrs = rest.to_socket_addrs().map_err(|e| format!("cannot resolve: {e}"))?;
    let mut last = "no address".to_owned();
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Waits until `address` accepts connections, for at most `timeout`.
pub(super) fn wait_for(address: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe(address, Duration::from_secs(1)) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => anyhow::bail!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
