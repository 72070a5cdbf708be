//! Data-parallel training on burn-collective (METHODS §4 is a mean over samples, so it splits).
//!
//! A run has `P` peers: `devices` threads in each of `nodes` processes. The global batch is cut
//! into `S` sample streams (`S` a multiple of `P`, default `P`); stream `s` has its own RNG (the
//! run seed's ChaCha8 stream `s`) and peer `k` draws streams `k·S/P .. (k+1)·S/P`. A run with
//! a fixed `S` therefore draws the same samples on any topology that divides it.
//!
//! Each peer samples and scores its rows; the per-sample host values (log-probabilities,
//! features, rewards) are gathered on every peer ([`Peer::gather`]), so every statistic of the
//! batch (advantages and their baselines, Z, ESS, the proposal decision, λ, the evaluation
//! metrics) is computed on the whole batch by the same code on every peer. Each peer then
//! back-propagates only its own rows with the global weights `−A_i / m`, and the gradients are
//! summed across peers ([`Peer::all_reduce_grads`]): the sum is the gradient of the whole
//! batch whatever the shares. Every peer then takes the same optimizer step.
//!
//! Every collective call runs under a [`Watchdog`]: a peer that does not answer within the
//! timeout ends the run with an error naming the unreachable peers and addresses.

mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burn::collective::{CollectiveConfig, PeerId, ReduceOperation, all_reduce};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::watchdog::{Watchdog, probe};

/// Where the peers of a run are: devices in this process, processes (nodes) and how they meet.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Peers (devices) in this process.
    pub devices: usize,
    /// Processes (one per machine, usually).
    pub nodes: u32,
    /// This process's rank, `0..nodes` (node 0's first peer writes the run's files).
    pub node_rank: u32,
    /// The coordinator (`tilt coordinator`), `ws://HOST:PORT` (several nodes only).
    pub coordinator: Option<String>,
    /// Where the other nodes reach this one, `ws://HOST:PORT` (several nodes only).
    pub node_address: Option<String>,
    /// The port this node serves tensors on (the port of `node_address`).
    pub data_port: Option<u16>,
    /// How long a peer waits for the others in one collective call before the run ends.
    pub timeout: Duration,
    /// Sample streams per batch (default: one per peer).
    pub sample_streams: Option<usize>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            devices: 1,
            nodes: 1,
            node_rank: 0,
            coordinator: None,
            node_address: None,
            data_port: None,
            timeout: Duration::from_secs(120),
            sample_streams: None,
        }
    }
}

impl Topology {
    /// Peers in the whole run.
    pub fn peers(&self) -> usize {
        self.devices * self.nodes as usize
    }

    /// Sample streams per batch.
    pub fn streams(&self) -> usize {
        self.sample_streams.unwrap_or_else(|| self.peers())
    }

    /// Checks the topology against a batch size.
    pub fn validate(&self, batch_size: u64) -> Result<()> {
        let (p, s) = (self.peers(), self.streams());
        if self.devices == 0 || self.nodes == 0 {
            bail!("--devices and --nodes must be at least 1");
        }
        if self.node_rank >= self.nodes {
            bail!("--node-rank {} is not below --nodes {}", self.node_rank, self.nodes);
        }
        if s == 0 || !s.is_multiple_of(p) {
            bail!("--sample-streams {s} is not a multiple of the {p} peers");
        }
        if s as u64 > batch_size {
            bail!("{s} sample streams for a batch of {batch_size}: at most one stream per sample");
        }
        if self.nodes > 1 {
            for (flag, value) in
                [("--coordinator", &self.coordinator), ("--node-address", &self.node_address)]
            {
                if value.is_none() {
                    bail!("--nodes {} needs {flag}", self.nodes);
                }
            }
        }
        Ok(())
    }

    /// The global index of this process's `local`-th peer.
    pub fn peer_index(&self, local: usize) -> usize {
        self.node_rank as usize * self.devices + local
    }

    fn collective_config(&self) -> Result<CollectiveConfig> {
        let mut c = CollectiveConfig::default().with_num_devices(self.devices);
        if self.nodes > 1 {
            let address = |s: &Option<String>, flag: &str| -> Result<burn_communication::Address> {
                let s = s.as_deref().with_context(|| format!("{flag} is missing"))?;
                s.parse().map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"))
            };
            let port = match self.data_port {
                Some(p) => p,
                None => port_of(self.node_address.as_deref().unwrap_or_default())?,
            };
            c = c
                .with_num_nodes(self.nodes)
                .with_global_address(address(&self.coordinator, "--coordinator")?)
                .with_node_address(address(&self.node_address, "--node-address")?)
                .with_data_service_port(port);
        }
        Ok(c)
    }
}

/// Normalises `HOST:PORT` to `ws://HOST:PORT` (burn's websocket addresses need the scheme).
pub fn ws_address(s: &str) -> Result<String> {
    let s = s.trim();
    let full = if s.contains("://") { s.to_owned() } else { format!("ws://{s}") };
    if !full.starts_with("ws://") {
        bail!("`{s}`: addresses are ws://HOST:PORT (or HOST:PORT)");
    }
    port_of(&full)?;
    Ok(full)
}

/// The port of `ws://HOST:PORT`.
pub fn port_of(address: &str) -> Result<u16> {
    let rest = address.rsplit("://").next().unwrap_or(address);
    let port = rest.rsplit(':').next().filter(|_| rest.contains(':'));
    port.and_then(|p| p.trim_end_matches('/').parse().ok())
        .with_context(|| format!("`{address}` has no port (ws://HOST:PORT)"))
}

/// `n` rows cut into `k` near-equal parts (the first `n % k` one larger).
pub fn split(n: usize, k: usize) -> Vec<usize> {
    (0..k).map(|i| n / k + usize::from(i < n % k)).collect()
}

/// One peer of a run: its place in the topology and its collective operations.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Global index, `0..count`.
    pub index: usize,
    /// Peers in the run.
    pub count: usize,
    /// Sample streams per batch.
    pub streams: usize,
    /// Index of this peer's slot in the process's watchdog.
    local: usize,
    watchdog: Option<Arc<Watchdog>>,
}

impl Default for Peer {
    fn default() -> Self {
        Self::single()
    }
}

impl Peer {
    /// The only peer of a run (no collective calls are made).
    pub fn single() -> Self {
        Self { index: 0, count: 1, streams: 1, local: 0, watchdog: None }
    }

    /// The only peer of a run, drawing `streams` sample streams (the samples a run on more
    /// peers draws).
    pub fn single_with_streams(streams: usize) -> Self {
        Self { streams: streams.max(1), ..Self::single() }
    }

    /// Whether this peer writes the run's files (metrics, checkpoints, plots, the policy).
    pub fn is_writer(&self) -> bool {
        self.index == 0
    }

    /// Whether there are other peers.
    pub fn is_parallel(&self) -> bool {
        self.count > 1
    }

    /// The sample streams this peer draws.
    pub fn own_streams(&self) -> std::ops::Range<usize> {
        let per = self.streams / self.count;
        self.index * per..(self.index + 1) * per
    }

    /// This peer's part of `n` samples (rows per own stream) and the index of its first
    /// sample among all `n`.
    pub fn rows_of(&self, n: usize) -> (Vec<usize>, usize) {
        let rows = split(n, self.streams);
        let own = self.own_streams();
        (rows[own.clone()].to_vec(), rows[..own.start].iter().sum())
    }

    fn id(&self) -> PeerId {
        PeerId(self.index as u32)
    }

    /// Runs a collective call under the watchdog and turns burn's error into a message.
    fn guarded<T>(
        &self,
        what: &str,
        call: impl FnOnce() -> Result<T, burn::collective::CollectiveError>,
    ) -> Result<T> {
        let dog = self.watchdog.as_ref();
        if let Some(w) = dog {
            w.begin(self.local, what);
        }
        let result = call();
        if let Some(w) = dog {
            w.end(self.local);
        }
        result.map_err(|e| {
            let (diagnosis, hint) = match dog {
                Some(w) => (w.diagnosis(), format!(". {}", w.resume_hint())),
                None => Default::default(),
            };
            let peer = self.index;
            anyhow::anyhow!("peer {peer}: {what}: burn-collective failed ({e:?}){diagnosis}{hint}")
        })
    }

    /// Element-wise sum of `values` over all peers.
    fn sum<B: Backend>(
        &self,
        device: &B::Device,
        values: Vec<f32>,
        what: &str,
    ) -> Result<Vec<f32>> {
        let n = values.len();
        let t = Tensor::<B, 1>::from_data(TensorData::new(values, [n]), device);
        let out = self.guarded(what, || {
            all_reduce::<B>(self.id(), t.into_primitive().tensor(), ReduceOperation::Sum)
        })?;
        let out = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(out));
        Ok(out.into_data().iter::<f32>().collect())
    }

    /// Every peer's `value`, in peer order, on every peer. Values travel as MessagePack bytes,
    /// three per f32 (integers below 2^24 are exact in f32 and every other peer adds zeros),
    /// so f64s, infinities and NaNs arrive bit for bit.
    pub fn gather<B: Backend, T: Serialize + DeserializeOwned>(
        &self,
        device: &B::Device,
        value: T,
        what: &str,
    ) -> Result<Vec<T>> {
        if !self.is_parallel() {
            return Ok(vec![value]);
        }
        let bytes = rmp_serde::to_vec(&value).with_context(|| format!("encoding {what}"))?;
        let mut lens = vec![0f32; 2 * self.count];
        lens[2 * self.index] = (bytes.len() & 0xff_ffff) as f32;
        lens[2 * self.index + 1] = (bytes.len() >> 24) as f32;
        let lens = self.sum::<B>(device, lens, what)?;
        let lens: Vec<usize> =
            lens.chunks(2).map(|c| c[0] as usize + ((c[1] as usize) << 24)).collect();
        let words: Vec<usize> = lens.iter().map(|l| l.div_ceil(3)).collect();
        let offset: usize = words[..self.index].iter().sum();
        // At least one element per peer: burn's ring all-reduce slices the tensor by node.
        let mut buf = vec![0f32; words.iter().sum::<usize>().max(self.count)];
        for (i, c) in bytes.chunks(3).enumerate() {
            let w = c.iter().enumerate().fold(0u32, |acc, (j, &b)| acc | u32::from(b) << (8 * j));
            buf[offset + i] = w as f32;
        }
        let buf = self.sum::<B>(device, buf, what)?;
        let mut out = Vec::with_capacity(self.count);
        let mut at = 0;
        for (peer, (&len, &w)) in lens.iter().zip(&words).enumerate() {
            let mut b = Vec::with_capacity(w * 3);
            for &x in &buf[at..at + w] {
                let x = x as u32;
                b.extend_from_slice(&[x as u8, (x >> 8) as u8, (x >> 16) as u8]);
            }
            b.truncate(len);
            out.push(
                rmp_serde::from_slice(&b)
                    .with_context(|| format!("decoding {what} from peer {peer}"))?,
            );
            at += w;
        }
        Ok(out)
    }

    /// Whether any peer's `flag` is set (every peer gets the same answer).
    pub fn any<B: Backend>(&self, device: &B::Device, flag: bool, what: &str) -> Result<bool> {
        Ok(self.gather::<B, bool>(device, flag, what)?.into_iter().any(|f| f))
    }

    /// Sums each gradient of `model` over all peers, parameter by parameter in the module's
    /// order (the same on every peer, whatever the parameter ids).
    pub fn all_reduce_grads<B: AutodiffBackend, M: Module<B>>(
        &self,
        model: &M,
        grads: GradientsParams,
    ) -> Result<GradientsParams> {
        if !self.is_parallel() {
            return Ok(grads);
        }
        struct Reduce<'a, B: AutodiffBackend> {
            peer: &'a Peer,
            grads: GradientsParams,
            error: Option<anyhow::Error>,
            _b: std::marker::PhantomData<B>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Reduce<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if self.error.is_some() {
                    return;
                }
                let g = match self.grads.remove::<B::InnerBackend, D>(param.id) {
                    Some(g) => g,
                    None => param.val().inner().zeros_like(),
                };
                let call = || {
                    all_reduce::<B::InnerBackend>(
                        self.peer.id(),
                        g.into_primitive().tensor(),
                        ReduceOperation::Sum,
                    )
                };
                match self.peer.guarded("the gradient all-reduce", call) {
                    Ok(t) => self.grads.register::<B::InnerBackend, D>(
                        param.id,
                        Tensor::from_primitive(TensorPrimitive::Float(t)),
                    ),
                    Err(e) => self.error = Some(e),
                }
            }
        }
        let mut v = Reduce::<B> { peer: self, grads, error: None, _b: std::marker::PhantomData };
        model.visit(&mut v);
        match v.error {
            Some(e) => Err(e),
            None => Ok(v.grads),
        }
    }

    /// Sums a host vector over all peers on the device (f32: for large, approximate sums).
    pub fn sum_floats<B: Backend>(
        &self,
        device: &B::Device,
        values: Vec<f32>,
        what: &str,
    ) -> Result<Vec<f32>> {
        if !self.is_parallel() {
            return Ok(values);
        }
        self.sum::<B>(device, values, what)
    }

    /// Checks that every peer holds the same weights (a SHA-256 of each parameter's bytes, in
    /// module order) and returns the fingerprint.
    pub fn check_identical<B: Backend, M: Module<B>>(
        &self,
        device: &B::Device,
        model: &M,
    ) -> Result<String> {
        let mine = fingerprint(model);
        let all = self.gather::<B, String>(device, mine.clone(), "the weight check")?;
        if let Some((k, other)) = all.iter().enumerate().find(|(_, f)| **f != mine) {
            bail!(
                "the peers' weights differ: peer {} has {mine}, peer {k} has {other} (a \
                 backend that is not deterministic across devices, or a bug: please report it)",
                self.index
            );
        }
        Ok(mine)
    }

    /// Tells the collective this peer is done.
    pub fn finish<B: Backend>(&self) -> Result<()> {
        if self.is_parallel() {
            self.guarded("finishing the collective", || {
                burn::collective::finish_collective::<B>(self.id())
            })?;
        }
        Ok(())
    }
}

/// The first 16 hex digits of a SHA-256 over every float parameter's bytes, in module order.
pub fn fingerprint<B: Backend, M: Module<B>>(model: &M) -> String {
    use sha2::Digest;
    struct Hash(sha2::Sha256);
    impl<B: Backend> ModuleVisitor<B> for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.update(param.val().into_data().as_bytes());
        }
    }
    let mut h = Hash(sha2::Sha256::new());
    model.visit(&mut h);
    h.0.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Prepares this process's peers, one per device of `devices` (in order), and starts their
/// watchdog; each peer then [`join`]s the collective from its own thread.
pub fn register<B: Backend>(
    topology: &Topology,
    devices: &[B::Device],
    output: &std::path::Path,
) -> Result<(Vec<Peer>, Arc<Watchdog>)> {
    if let Some(c) = &topology.coordinator {
        watchdog::wait_for(c, topology.timeout).with_context(|| {
            format!(
                "cannot reach the coordinator at {c} within {} s (start it first: `tilt \
                 coordinator --port {}`)",
                topology.timeout.as_secs(),
                port_of(c).unwrap_or_default()
            )
        })?;
    }
    topology.collective_config()?;
    quiet_runtime_panics();
    let dog = Watchdog::start(topology, devices.len(), output);
    burn::collective::reset_collective::<B>();
    let peers = (0..devices.len())
        .map(|local| Peer {
            index: topology.peer_index(local),
            count: topology.peers(),
            streams: topology.streams(),
            local,
            watchdog: Some(dog.clone()),
        })
        .collect();
    Ok((peers, dog))
}

/// burn-collective reports a lost connection by panicking in its runtime's worker threads; the
/// peer then gets an error that tilt turns into a message naming the unreachable node. Those
/// panics are logged as one warning line instead of a backtrace (other threads keep the
/// default hook).
fn quiet_runtime_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or_default().to_owned();
            if name.starts_with("tokio-r") {
                log::warn!("burn-collective ({name}): {info}");
            } else {
                default(info);
            }
        }));
    });
}

/// Registers `peer` (from its own thread: registration blocks until every local peer has
/// called it) and tells its watchdog the other nodes' addresses.
pub fn join<B: Backend>(topology: &Topology, peer: &Peer, device: &B::Device) -> Result<()> {
    let config = topology.collective_config()?;
    let (d, c) = (device.clone(), config);
    peer.guarded("registering with the collective", || {
        burn::collective::register::<B>(peer.id(), d, c)
    })?;
    let me = (topology.node_rank, topology.node_address.clone().unwrap_or_default());
    let roster = peer.gather::<B, (u32, String)>(device, me, "the roster")?;
    if let Some(w) = &peer.watchdog {
        w.set_roster(roster);
    }
    Ok(())
}
