//! A user's program as a feature ([`External`]): JSON lines in, one number per line out.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use wait_timeout::ChildExt;

use crate::error::{Error, ExternalProblem, Result};
use crate::feature::{Feature, Sample, is_bit};

/// The default time a program has to answer one batch: enough to load a small classifier
/// and score a few hundred texts on a CPU.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// At most this much of a program's stdout is read (about 64 bytes per answer for a million
/// samples); a program that writes more is answering garbage.
const STDOUT_LIMIT: u64 = 64 << 20;

/// How much of a program's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;

/// How long to wait, once the program has exited, for its stderr to drain and for the stdin
/// writer to report: both are nearly done by then, unless a child of the program still holds
/// the pipes; this bounds the delay such a child can cause.
const GRACE: Duration = Duration::from_secs(1);

/// A user's program as a feature, e.g. a Python classifier.
///
/// # Protocol
/// For every batch the program is started afresh (argv as given, in the working directory set
/// with [`External::new`]), and gets one JSON object per sample on stdin, one per line:
/// `{"text": "...", "tokens": [50256, 11], "eos": false}`; stdin is then closed. It must write
/// exactly one number per line to stdout, in the same order (anything `f64::from_str` reads:
/// `1`, `0.25`, `-3e-2`), and exit with status 0. An empty batch does not start it.
///
/// It fails with [`Error::External`] naming the command when the program cannot be found or
/// started, exits non-zero or is killed by a signal (the message ends with the tail of its
/// stderr), answers too few or too many lines, answers something that is not a number, NaN
/// (unless allowed), ±infinity, or a value other than 0 or 1 when declared binary, or does not
/// finish within the timeout: it is then killed and reaped, so neither a hang nor a zombie
/// outlives the call. (Processes the program itself started are its business: one that keeps
/// the program's stdout open makes the call time out, but is neither waited for nor killed.)
///
/// # Why a process per batch
/// A fresh process per batch keeps no state between batches, cannot get out of step with the
/// samples after an error, and a crash or a timeout costs one batch, not a stuck pipe. The price
/// is the program's start-up for every batch (tens of milliseconds for Python, seconds if it
/// loads a large model), so score large batches: a whole step's samples in one call.
///
/// stdin is written and stdout and stderr are read on their own threads, so a program that
/// answers while it still reads cannot deadlock on full pipes, whatever the batch size.
#[derive(Debug, Clone)]
pub struct External {
    name: String,
    shown: String,
    program: PathBuf,
    args: Vec<String>,
    dir: Option<PathBuf>,
    timeout: Duration,
    binary: bool,
    allow_nan: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    text: &'a str,
    tokens: &'a [u32],
    eos: bool,
}

impl External {
    /// The program `command[0]` with arguments `command[1..]`, run in `dir` (the caller's
    /// working directory if `None`). A `command[0]` with a `/` is a path (relative ones are
    /// resolved against `dir`); without one it is looked up on `PATH`, now, so that a missing
    /// program is reported when the plan is built, not at the first batch.
    ///
    /// Real-valued, [`DEFAULT_TIMEOUT`], NaN rejected; see the setters.
    pub fn new<S: AsRef<str>>(command: &[S], dir: Option<&Path>) -> Result<Self> {
        let command: Vec<String> = command.iter().map(|s| s.as_ref().to_owned()).collect();
        let shown = command.join(" ");
        let fail = |problem| Error::External { command: shown.clone(), problem };
        let Some((program, args)) = command.split_first() else {
            return Err(fail(ExternalProblem::EmptyCommand));
        };
        if program.trim().is_empty() {
            return Err(fail(ExternalProblem::EmptyCommand));
        }
        let program = resolve(program, dir).map_err(fail)?;
        Ok(Self {
            name: format!("external `{shown}`"),
            program,
            args: args.to_vec(),
            shown,
            dir: dir.map(Path::to_owned),
            timeout: DEFAULT_TIMEOUT,
            binary: false,
            allow_nan: false,
        })
    }

    /// Sets the time the program has for one batch.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Declares the program's answers binary (each 0 or 1, checked), so that it can serve as a
    /// pointwise constraint or inside `and`/`or`/`not`.
    pub fn with_binary(mut self, binary: bool) -> Self {
        self.binary = binary;
        self
    }

    /// Accepts `NaN` answers (rejected by default; a NaN moment poisons λ fitting).
    pub fn with_allow_nan(mut self, allow_nan: bool) -> Self {
        self.allow_nan = allow_nan;
        self
    }

    /// The time the program has for one batch.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn fail(&self, problem: ExternalProblem) -> Error {
        Error::External { command: self.shown.clone(), problem }
    }

    fn run(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>, ExternalProblem> {
        let mut input = Vec::with_capacity(samples.len() * 64);
        for s in samples {
            let line = Line { text: s.text, tokens: s.tokens, eos: s.eos };
            serde_json::to_writer(&mut input, &line).map_err(|e| ExternalProblem::Io(e.into()))?;
            input.push(b'\n');
        }

        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(ExternalProblem::Spawn)?;
        let (writer, stdout, stderr) = pipes(&mut child, input);

        let status = match child.wait_timeout(self.timeout) {
            Ok(Some(status)) => status,
            Ok(None) => return Err(self.kill(&mut child, &stderr)),
            Err(e) => {
                let _ = self.kill(&mut child, &stderr);
                return Err(ExternalProblem::Io(e));
            }
        };
        // The program has exited and is reaped. Its pipes close unless it left children holding
        // them, so the wait for its answer is bounded by the deadline, and the others by GRACE.
        if !status.success() {
            let stderr = recv_until(&stderr, Instant::now() + GRACE).unwrap_or_default();
            return Err(ExternalProblem::Exit { status, stderr });
        }
        let out = match recv_until(&stdout, deadline) {
            Some(out) => out.map_err(ExternalProblem::Io)?,
            None => {
                let stderr = recv_until(&stderr, Instant::now() + GRACE).unwrap_or_default();
                return Err(ExternalProblem::Timeout {
                    seconds: self.timeout.as_secs_f64(),
                    stderr,
                });
            }
        };
        let stderr_tail = recv_until(&stderr, Instant::now() + GRACE).unwrap_or_default();
        match recv_until(&writer, Instant::now() + GRACE) {
            Some(Err(e)) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(ExternalProblem::Io(e));
            }
            _ => {}
        }
        log::debug!("{} scored {} samples in {:?}", self.name, samples.len(), start.elapsed());
        self.parse(&out, samples.len(), stderr_tail)
    }

    /// Kills and reaps a program that ran out of time.
    fn kill(&self, child: &mut Child, stderr: &Receiver<String>) -> ExternalProblem {
        // kill fails only if the process has already exited; wait reaps it either way.
        let _ = child.kill();
        let _ = child.wait();
        let stderr = recv_until(stderr, Instant::now() + GRACE).unwrap_or_default();
        ExternalProblem::Timeout { seconds: self.timeout.as_secs_f64(), stderr }
    }

    fn parse(
        &self,
        out: &[u8],
        expected: usize,
        stderr: String,
    ) -> Result<Vec<f64>, ExternalProblem> {
        let text = String::from_utf8_lossy(out);
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != expected {
            return Err(ExternalProblem::LineCount { expected, got: lines.len(), stderr });
        }
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let garbage = |reason| ExternalProblem::Garbage {
                    line: i + 1,
                    text: line.chars().take(80).collect(),
                    reason,
                };
                let value: f64 = line.trim().parse().map_err(|_| garbage("is not a number"))?;
                if value.is_nan() && !self.allow_nan {
                    Err(garbage("is NaN (set `allow_nan = true` to accept it)"))
                } else if value.is_infinite() {
                    Err(garbage("is infinite"))
                } else if self.binary && !is_bit(value) {
                    Err(garbage("is not 0 or 1, and the scorer is declared binary"))
                } else {
                    Ok(value)
                }
            })
            .collect()
    }
}

impl Feature for External {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_binary(&self) -> bool {
        self.binary
    }

    fn score(&self, samples: &[Sample<'_>]) -> Result<Vec<f64>> {
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        self.run(samples).map_err(|p| self.fail(p))
    }
}

type Pipes = (Receiver<std::io::Result<()>>, Receiver<std::io::Result<Vec<u8>>>, Receiver<String>);

/// Starts the threads that write `input` to the child's stdin and read its stdout and stderr.
/// They are detached: each ends when its pipe closes, and a caller that stops waiting for one
/// (a timeout) never blocks on it.
fn pipes(child: &mut Child, input: Vec<u8>) -> Pipes {
    let (writer_tx, writer_rx) = mpsc::channel();
    let (stdout_tx, stdout_rx) = mpsc::channel();
    let (stderr_tx, stderr_rx) = mpsc::channel();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    thread::spawn(move || {
        let result = stdin.map_or(Ok(()), |mut stdin| {
            stdin.write_all(&input).and_then(|()| stdin.flush())
            // stdin is dropped here, closing the pipe: the program sees end of input.
        });
        let _ = writer_tx.send(result);
    });
    thread::spawn(move || {
        let mut out = Vec::new();
        let result = match stdout {
            Some(stdout) => stdout.take(STDOUT_LIMIT).read_to_end(&mut out).map(|_| out),
            None => Ok(out),
        };
        let _ = stdout_tx.send(result);
    });
    thread::spawn(move || {
        let _ = stderr_tx.send(stderr.map(read_tail).unwrap_or_default());
    });
    (writer_rx, stdout_rx, stderr_rx)
}

/// Reads a pipe to its end, keeping the last [`STDERR_TAIL`] bytes.
fn read_tail(mut pipe: impl Read) -> String {
    let mut tail = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut chunk) {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 2 * STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// The value sent on `rx`, if it comes before `deadline`.
fn recv_until<T>(rx: &Receiver<T>, deadline: Instant) -> Option<T> {
    // A timeout and a thread that ended without sending (it cannot) both mean "no value".
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
}

/// Finds the program: a path (relative to `dir` if relative) or a name on `PATH`.
fn resolve(program: &str, dir: Option<&Path>) -> Result<PathBuf, ExternalProblem> {
    let not_found = |p: &Path| ExternalProblem::NotFound { program: p.display().to_string() };
    if program.contains('/') {
        let path = Path::new(program);
        let path = match dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        };
        return if path.is_file() { Ok(path) } else { Err(not_found(&path)) };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| not_found(Path::new(program)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> External {
        External::new(&["python3", "-c", "pass"], None).unwrap()
    }

    #[test]
    fn parses_numbers() {
        let values = echo().parse(b"1\n0.25\n -3e-2 \r\n", 3, String::new()).unwrap();
        assert_eq!(values, [1.0, 0.25, -0.03]);
        assert_eq!(echo().parse(b"1\n2", 2, String::new()).unwrap(), [1.0, 2.0]);
    }

    #[test]
    fn rejects_garbage() {
        let e = echo();
        assert!(matches!(
            e.parse(b"1\n", 2, String::new()),
            Err(ExternalProblem::LineCount { expected: 2, got: 1, .. })
        ));
        assert!(matches!(
            e.parse(b"1\n\n", 2, String::new()),
            Err(ExternalProblem::Garbage { line: 2, .. })
        ));
        assert!(matches!(
            e.parse(b"yes\n", 1, String::new()),
            Err(ExternalProblem::Garbage { line: 1, reason: "is not a number", .. })
        ));
        assert!(matches!(
            e.parse(b"NaN\n", 1, String::new()),
            Err(ExternalProblem::Garbage { .. })
        ));
        assert!(matches!(
            e.parse(b"inf\n", 1, String::new()),
            Err(ExternalProblem::Garbage { .. })
        ));
        let nan = echo().with_allow_nan(true).parse(b"nan\n", 1, String::new()).unwrap();
        assert!(nan[0].is_nan());
        let binary = echo().with_binary(true);
        assert_eq!(binary.parse(b"0\n1.0\n", 2, String::new()).unwrap(), [0.0, 1.0]);
        assert!(matches!(
            binary.parse(b"0\n0.5\n", 2, String::new()),
            Err(ExternalProblem::Garbage { line: 2, .. })
        ));
    }

    #[test]
    fn resolves_programs() {
        assert!(resolve("python3", None).unwrap().is_absolute());
        assert!(matches!(
            resolve("no-such-program-tilt", None),
            Err(ExternalProblem::NotFound { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clf.sh"), "").unwrap();
        assert_eq!(resolve("./clf.sh", Some(dir.path())).unwrap(), dir.path().join("./clf.sh"));
        let err = resolve("./other.sh", Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("other.sh"), "{err}");
        assert!(!err.to_string().contains("PATH"), "{err}");
    }

    #[test]
    fn empty_command_and_batch() {
        let none: [&str; 0] = [];
        let err = External::new(&none, None).unwrap_err();
        assert!(matches!(err, Error::External { problem: ExternalProblem::EmptyCommand, .. }));
        assert!(External::new(&[""], None).is_err());
        // An empty batch never starts the program (which would fail here).
        let f = External::new(&["python3", "-c", "import sys; sys.exit(1)"], None).unwrap();
        assert_eq!(f.score(&[]).unwrap(), Vec::<f64>::new());
        assert_eq!(f.timeout(), DEFAULT_TIMEOUT);
        assert_eq!(f.name(), "external `python3 -c import sys; sys.exit(1)`");
    }
}
