//! Checkpoints on disk: atomic writes, a versioned manifest, checksummed payload files.
//!
//! Layout under a run's `checkpoints/` directory:
//!
//! ```text
//! checkpoints/
//!   latest                  "step-00000120\n": the newest complete checkpoint (replaced atomically)
//!   step-00000110/
//!   step-00000120/
//!     manifest.json         step, samples seen, λ, tracker states, RNG states, config hash,
//!                           estimator, model architecture, training time,
//!                           and every payload file with its size and SHA-256
//!     policy.mpk, proposal.mpk, optimizer.mpk, ...   (payloads: written by the model crates)
//! ```
//!
//! A checkpoint is written into `step-N.tmp/` (each file fsynced), the manifest last, then the
//! directory is renamed to `step-N/` and `latest` replaced through a temp file and a rename,
//! with the directories fsynced. A crash at any point leaves the previous checkpoint and
//! `latest` intact; a leftover `*.tmp` directory is ignored and removed by the next write.
//! Rewriting an existing `step-N/` (a run resumed from an earlier checkpoint) sets the old one
//! aside as `step-N.replaced.tmp/` until the new one is in place: if `latest` names a `step-N`
//! missing after a crash there, readers take the one set aside, and pruning keeps it.
//! Reading checks the format version and every payload's size and checksum, and each error
//! names the file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The checkpoints' directory under a run's output directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The pointer file's name.
pub const LATEST: &str = "latest";
/// The value of the manifest's `format` field.
pub const FORMAT: &str = "tilt-checkpoint";
/// The manifest version this build writes and reads.
pub const VERSION: u32 = 1;

/// Checkpoint errors; each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// An I/O error on a file or directory.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// There is no checkpoint where one was expected.
    #[error("{}: no checkpoint here (no {MANIFEST}, no {LATEST}, no checkpoints/{LATEST})", path.display())]
    NotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The manifest is not valid JSON of the expected shape (corrupt or truncated).
    #[error("{}: corrupt checkpoint manifest: {source}", path.display())]
    CorruptManifest {
        /// The manifest.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The manifest is of another format or version.
    #[error("{}: unsupported checkpoint format {found} (this build reads {FORMAT} version {VERSION})", path.display())]
    UnsupportedVersion {
        /// The manifest.
        path: PathBuf,
        /// What it says.
        found: String,
    },
    /// `latest` does not name a checkpoint directory.
    #[error("{}: corrupt pointer {content:?}, expected a `step-N` directory name", path.display())]
    BadPointer {
        /// The pointer file.
        path: PathBuf,
        /// Its content.
        content: String,
    },
    /// A file the manifest lists is absent.
    #[error("{}: missing checkpoint file (listed in {MANIFEST})", path.display())]
    MissingFile {
        /// The file.
        path: PathBuf,
    },
    /// A payload file has the wrong size (truncated or overwritten).
    #[error("{}: size {found} bytes, the manifest says {expected} (truncated?)", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// A payload file's content does not match its checksum.
    #[error("{}: SHA-256 {found} does not match the manifest's {expected} (corrupt file)", path.display())]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Checksum in the manifest.
        expected: String,
        /// Checksum of the content.
        found: String,
    },
    /// A value cannot be stored (a non-finite λ, a bad file name, a duplicate file).
    #[error("{0}")]
    Invalid(String),
}

/// Checkpoint results.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_owned(), source }
}

/// A payload file of a checkpoint, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// What it holds (`policy`, `proposal`, `optimizer`, ...).
    pub role: String,
    /// Its file name inside the checkpoint directory.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The SHA-256 of its content, lower-case hex (`sha256sum` prints the same).
    pub sha256: String,
}

/// A random-number generator's state, as the bytes its crate serialises it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngState {
    /// Which stream (`sampler`, `dropout`, ...).
    pub name: String,
    /// The algorithm, e.g. `chacha20`.
    pub algorithm: String,
    /// The state, lower-case hex.
    pub state_hex: String,
}

impl RngState {
    /// A state from raw bytes.
    pub fn new(name: &str, algorithm: &str, state: &[u8]) -> Self {
        Self { name: name.to_owned(), algorithm: algorithm.to_owned(), state_hex: hex(state) }
    }

    /// The raw bytes (`None` if the hex is malformed).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        unhex(&self.state_hex)
    }
}

/// The architecture of the policy a checkpoint holds (GPT-2's config fields that fix the
/// weights' shapes and meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShape {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Width.
    pub n_embd: usize,
    /// Attention heads.
    pub n_head: usize,
    /// The MLP's hidden width.
    pub n_inner: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length.
    pub n_positions: usize,
}

impl ModelShape {
    /// The fields where `self` and `other` differ, as `name A vs B`.
    pub fn differences(&self, other: &ModelShape) -> Vec<String> {
        let fields = |m: &ModelShape| {
            [
                ("n_layer", m.n_layer),
                ("n_embd", m.n_embd),
                ("n_head", m.n_head),
                ("n_inner", m.n_inner),
                ("vocab_size", m.vocab_size),
                ("n_positions", m.n_positions),
            ]
        };
        fields(self)
            .into_iter()
            .zip(fields(other))
            .filter(|((_, a), (_, b))| a != b)
            .map(|((name, a), (_, b))| format!("{name} {a} vs {b}"))
            .collect()
    }
}

/// What a checkpoint holds besides its payload files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingState {
    /// Optimizer steps done.
    pub step: u64,
    /// Training samples drawn so far.
    pub samples_seen: u64,
    /// The fitted λ, one per moment constraint (empty without).
    pub lambda: Vec<f64>,
    /// Named states of the run's trackers (Z tracker, proposal criterion's best value,
    /// adaptive β, ...), each serialised by its owner.
    pub trackers: BTreeMap<String, serde_json::Value>,
    /// The random-number generators' states.
    pub rng: Vec<RngState>,
    /// [`Config::content_hash`](crate::config::Config::content_hash) of the run's config.
    pub config_hash: String,
    /// The estimator (`estimator.kind`) whose state the checkpoint holds (`None` in
    /// checkpoints of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimator: Option<String>,
    /// The policy's architecture (`None` in checkpoints of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelShape>,
    /// Seconds the run had trained when it wrote the checkpoint, over all its resumes
    /// (`None` in checkpoints of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
}

/// The manifest: format, version, training state and the payload files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// The state.
    #[serde(flatten)]
    pub state: TrainingState,
    /// The payload files.
    pub files: Vec<FileEntry>,
}

impl std::ops::Deref for Manifest {
    type Target = TrainingState;

    fn deref(&self) -> &TrainingState {
        &self.state
    }
}

/// The directory name of step `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename over
/// `path`, fsync the directory. Readers see the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| CheckpointError::Invalid(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(&dir)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Fsyncs a directory so that renames in it are durable (a no-op where directories cannot be
/// opened, as on Windows).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A checkpoint being written: files go into `step-N.tmp/`; [`CheckpointWriter::commit`]
/// makes it `step-N/` and points `latest` at it. Dropping it without committing leaves the
/// previous checkpoint as the latest.
#[derive(Debug)]
pub struct CheckpointWriter {
    root: PathBuf,
    step: u64,
    tmp: PathBuf,
    files: Vec<FileEntry>,
}

impl CheckpointWriter {
    /// Starts checkpoint `step` under `root` (created if needed), discarding a leftover
    /// `step-N.tmp/` of an interrupted write.
    pub fn begin(root: &Path, step: u64) -> Result<Self> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let tmp = root.join(format!("{}.tmp", step_dir_name(step)));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        Ok(Self { root: root.to_owned(), step, tmp, files: Vec::new() })
    }

    /// Adds a payload file from bytes.
    pub fn add_file(&mut self, role: &str, name: &str, bytes: &[u8]) -> Result<()> {
        self.add_file_with(role, name, |w| w.write_all(bytes))
    }

    /// Adds a payload file written by `write` (e.g. a model serialiser), hashing it on the way.
    pub fn add_file_with(
        &mut self,
        role: &str,
        name: &str,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        let plain = !name.is_empty()
            && name != MANIFEST
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !plain {
            return Err(CheckpointError::Invalid(format!(
                "checkpoint file name {name:?} must be a plain name of letters, digits, `.`, `_`, `-`"
            )));
        }
        if self.files.iter().any(|f| f.name == name || f.role == role) {
            return Err(CheckpointError::Invalid(format!(
                "checkpoint file {name:?} (role {role:?}) added twice"
            )));
        }
        let path = self.tmp.join(name);
        let file = File::create(&path).map_err(io_err(&path))?;
        let mut w =
            HashingWriter { inner: io::BufWriter::new(file), hasher: Sha256::new(), bytes: 0 };
        write(&mut w).map_err(io_err(&path))?;
        let file = w.inner.into_inner().map_err(|e| io_err(&path)(e.into_error()))?;
        file.sync_all().map_err(io_err(&path))?;
        self.files.push(FileEntry {
            role: role.to_owned(),
            name: name.to_owned(),
            bytes: w.bytes,
            sha256: hex(&w.hasher.finalize()),
        });
        Ok(())
    }

    /// Writes the manifest, renames `step-N.tmp/` to `step-N/` and points `latest` at it.
    /// Returns the checkpoint's directory.
    pub fn commit(self, state: TrainingState) -> Result<PathBuf> {
        if state.step != self.step {
            return Err(CheckpointError::Invalid(format!(
                "state is at step {} but the checkpoint was begun for step {}",
                state.step, self.step
            )));
        }
        if let Some(x) = state.lambda.iter().find(|x| !x.is_finite()) {
            return Err(CheckpointError::Invalid(format!(
                "λ contains {x}: not storable (the fit diverged?)"
            )));
        }
        let manifest =
            Manifest { format: FORMAT.to_owned(), version: VERSION, state, files: self.files };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        write_atomic(&self.tmp.join(MANIFEST), &json)?;
        let name = step_dir_name(self.step);
        let dir = self.root.join(&name);
        // A checkpoint of the same step from an earlier, abandoned branch of the run. While it
        // is set aside, `latest` may name the missing `step-N`: readers then take the one set
        // aside (see [`pointed_dir`]).
        let replaced = self.root.join(replaced_name(&name));
        if dir.exists() {
            if replaced.exists() {
                fs::remove_dir_all(&replaced).map_err(io_err(&replaced))?;
            }
            fs::rename(&dir, &replaced).map_err(io_err(&dir))?;
        }
        fs::rename(&self.tmp, &dir).map_err(io_err(&dir))?;
        sync_dir(&self.root)?;
        write_atomic(&self.root.join(LATEST), format!("{name}\n").as_bytes())?;
        if replaced.exists() {
            fs::remove_dir_all(&replaced).map_err(io_err(&replaced))?;
        }
        Ok(dir)
    }
}

/// The name a `step-N` directory is set aside under while a new `step-N` replaces it.
fn replaced_name(step_dir: &str) -> String {
    format!("{step_dir}.replaced.tmp")
}

/// The directory `latest` (naming `name`) means: `name`, or, after a crash while `name` was
/// being rewritten, the complete old one set aside as `name.replaced.tmp`.
fn pointed_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let replaced = root.join(replaced_name(name));
    if !dir.exists() && replaced.join(MANIFEST).is_file() { replaced } else { dir }
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A checkpoint read from disk and verified.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    manifest: Manifest,
}

impl Checkpoint {
    /// Reads `dir/manifest.json` and verifies every payload file's size and checksum.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CheckpointError::NotFound { path: dir.to_owned() });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        // Check the format and version first, so an old or foreign manifest is named as such.
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let header: Header = serde_json::from_slice(&text)
            .map_err(|source| CheckpointError::CorruptManifest { path: path.clone(), source })?;
        if header.format != FORMAT || header.version != VERSION {
            return Err(CheckpointError::UnsupportedVersion {
                path,
                found: format!("{} version {}", header.format, header.version),
            });
        }
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|source| CheckpointError::CorruptManifest { path: path.clone(), source })?;
        for f in &manifest.files {
            verify(&dir.join(&f.name), f)?;
        }
        Ok(Self { dir: dir.to_owned(), manifest })
    }

    /// The newest complete checkpoint under `root` (`None` when there is none yet).
    pub fn latest(root: &Path) -> Result<Option<Self>> {
        let pointer = root.join(LATEST);
        let content = match fs::read_to_string(&pointer) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&pointer)(e)),
        };
        let name = content.trim();
        if parse_step_dir(name).is_none() {
            return Err(CheckpointError::BadPointer { path: pointer, content });
        }
        Self::read(&pointed_dir(root, name)).map(Some)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The path of the payload file with this role (`None` if it has none).
    pub fn file(&self, role: &str) -> Option<PathBuf> {
        self.manifest.files.iter().find(|f| f.role == role).map(|f| self.dir.join(&f.name))
    }
}

/// Finds the checkpoint a `--resume DIR` means: a checkpoint directory, a checkpoints root
/// (with `latest`), or a run's output directory (with `checkpoints/latest`).
pub fn resolve(dir: &Path) -> Result<Checkpoint> {
    if dir.join(MANIFEST).exists() {
        return Checkpoint::read(dir);
    }
    for root in [dir.to_owned(), dir.join(CHECKPOINTS_DIR)] {
        if let Some(c) = Checkpoint::latest(&root)? {
            return Ok(c);
        }
    }
    Err(CheckpointError::NotFound { path: dir.to_owned() })
}

/// Removes all but the newest `keep` complete checkpoints under `root` (never the one
/// `latest` names), and leftover `*.tmp` directories (except a set-aside checkpoint that
/// `latest` still means, see [`Checkpoint::latest`]). `keep = 0` keeps all.
pub fn prune(root: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    let latest = fs::read_to_string(root.join(LATEST)).ok().map(|s| s.trim().to_owned());
    let pointed = latest.as_deref().map(|name| pointed_dir(root, name));
    let mut steps = Vec::new();
    let mut removed = Vec::new();
    for entry in fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let set_aside_latest = pointed.as_deref() == Some(entry.path().as_path());
        if name.ends_with(".tmp") && name.starts_with("step-") && !set_aside_latest {
            fs::remove_dir_all(entry.path()).map_err(io_err(&entry.path()))?;
            removed.push(entry.path());
        } else if let Some(step) = parse_step_dir(&name) {
            steps.push((step, name));
        }
    }
    if keep == 0 {
        return Ok(removed);
    }
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for (_, name) in steps.into_iter().take(excess) {
        if latest.as_deref() == Some(name.as_str()) {
            continue;
        }
        let path = root.join(&name);
        fs::remove_dir_all(&path).map_err(io_err(&path))?;
        removed.push(path);
    }
    Ok(removed)
}

fn verify(path: &Path, entry: &FileEntry) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CheckpointError::MissingFile { path: path.to_owned() });
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if meta.len() != entry.bytes {
        return Err(CheckpointError::SizeMismatch {
            path: path.to_owned(),
            expected: entry.bytes,
            found: meta.len(),
        });
    }
    let mut hasher = Sha256::new();
    let mut file = File::open(path).map_err(io_err(path))?;
    io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    let found = hex(&hasher.finalize());
    if found != entry.sha256 {
        return Err(CheckpointError::ChecksumMismatch {
            path: path.to_owned(),
            expected: entry.sha256.clone(),
            found,
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&b), "0001abff");
        assert_eq!(unhex("0001abff").unwrap(), b);
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn step_dir_names() {
        assert_eq!(step_dir_name(120), "step-00000120");
        assert_eq!(parse_step_dir("step-00000120"), Some(120));
        assert_eq!(parse_step_dir("step-12.tmp"), None);
        assert_eq!(parse_step_dir("step-"), None);
        assert_eq!(parse_step_dir("latest"), None);
    }
}
