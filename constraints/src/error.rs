//! The crate's one error type.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can go wrong when building or scoring features.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A constraint spec is invalid; `field` is the path of the offending field inside the
    /// constraint, e.g. `feature.pattern` or `moment`.
    #[error("constraint `{constraint}`, field `{field}`: {reason}")]
    Spec {
        /// The constraint's `name` (or `#<index>` when it has none).
        constraint: String,
        /// The field, as a dotted path inside the constraint.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A word or word-list entry is empty (or only whitespace).
    #[error("empty word in {what}")]
    EmptyWord {
        /// Which feature: `word` or `wordlist`.
        what: &'static str,
    },

    /// A word list has no words.
    #[error("the word list is empty{}", from.as_ref().map(|p| format!(" (file `{}`)", p.display())).unwrap_or_default())]
    EmptyWordList {
        /// The file it was read from, if any.
        from: Option<PathBuf>,
    },

    /// A word-list file cannot be read.
    #[error("cannot read word-list file `{}`: {error}", path.display())]
    WordListFile {
        /// The path as resolved.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },

    /// A regular expression does not compile.
    #[error("invalid regex `{pattern}`: {error}")]
    Regex {
        /// The pattern as written by the user.
        pattern: String,
        /// The compiler's error.
        error: Box<regex::Error>,
    },

    /// A combinator (`and`, `or`, `not`, a pointwise constraint) was given a feature whose values
    /// are not in {0, 1}.
    #[error("{what} needs a binary feature (values in {{0, 1}}), but `{feature}` is real-valued")]
    NotBinaryFeature {
        /// The combinator or use.
        what: &'static str,
        /// The real-valued feature's name.
        feature: String,
    },

    /// A combinator over no features.
    #[error("`{what}` needs at least one feature")]
    NoFeatures {
        /// `and` or `or`.
        what: &'static str,
    },

    /// A number in a feature's parameters is not usable (NaN, infinite, out of range).
    #[error("invalid `{parameter}` = {value}: {reason}")]
    Parameter {
        /// The parameter's name, e.g. `at` or `timeout_s`.
        parameter: &'static str,
        /// The value given.
        value: f64,
        /// What a valid value is.
        reason: &'static str,
    },

    /// A feature gave a value outside {0, 1} where b(x) ∈ {0, 1} was required.
    #[error(
        "feature `{feature}` gave {value} for sample {index}, but a binary value (0 or 1) is required"
    )]
    NotBinaryValue {
        /// The feature's name.
        feature: String,
        /// The sample's index in the batch.
        index: usize,
        /// The value it gave.
        value: f64,
    },

    /// A feature returned a different number of values than samples it was given.
    #[error("feature `{feature}` returned {got} values for {expected} samples")]
    BatchSize {
        /// The feature's name.
        feature: String,
        /// The batch size.
        expected: usize,
        /// The number of values returned.
        got: usize,
    },

    /// The sentiment analyser panicked on a text.
    #[error("the VADER sentiment analyser failed on sample {index}")]
    Sentiment {
        /// The sample's index in the batch.
        index: usize,
    },

    /// An external scorer failed; `command` is its argv joined by spaces.
    #[error("external scorer `{command}`: {problem}")]
    External {
        /// The program and its arguments, joined by spaces.
        command: String,
        /// What went wrong.
        problem: ExternalProblem,
    },
}

/// How an external scorer failed (see [`Error::External`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalProblem {
    /// The command line is empty.
    #[error("the command is empty")]
    EmptyCommand,

    /// The program is not on `PATH` or not a file.
    #[error("program `{program}` not found{}", if program.contains('/') { "" } else { " on PATH" })]
    NotFound {
        /// The program as resolved.
        program: String,
    },

    /// The process could not be started.
    #[error("cannot start the program: {0}")]
    Spawn(std::io::Error),

    /// Writing to its stdin or reading its stdout failed (other than a closed pipe).
    #[error("I/O error while talking to the program: {0}")]
    Io(std::io::Error),

    /// It did not answer within the timeout (if it was still running, it has been killed and
    /// reaped; a process it left holding its stdout open is not waited for).
    #[error("no complete answer within the timeout of {seconds} s{}", stderr_suffix(stderr))]
    Timeout {
        /// The timeout in seconds.
        seconds: f64,
        /// The tail of what it wrote to stderr.
        stderr: String,
    },

    /// It exited unsuccessfully (non-zero status or killed by a signal).
    #[error("it exited with {status}{}", stderr_suffix(stderr))]
    Exit {
        /// Its exit status.
        status: ExitStatus,
        /// The tail of what it wrote to stderr.
        stderr: String,
    },

    /// It answered a different number of lines than samples it was sent.
    #[error("it answered {got} lines for {expected} samples{}", stderr_suffix(stderr))]
    LineCount {
        /// The number of samples sent.
        expected: usize,
        /// The number of lines received.
        got: usize,
        /// The tail of what it wrote to stderr.
        stderr: String,
    },

    /// A line of its answer is not an acceptable number.
    #[error("line {line} of its answer, `{text}`, {reason}")]
    Garbage {
        /// The 1-based line number.
        line: usize,
        /// The line (truncated to 80 characters).
        text: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with:\n{}", stderr.trim_end())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
