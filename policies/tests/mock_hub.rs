//! A local server that answers as the Hugging Face hub does: `/{model}/resolve/{revision}/{file}`,
//! ranged GETs, `ETag` and `X-Repo-Commit` headers, 404 for a missing file. Shared by the
//! download tests of tilt-policies and of the `tilt download` command; std only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// model id → revision → file name → bytes.
pub type Repos = BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<u8>>>>;

/// A hub on 127.0.0.1 that serves `repos` and logs the requests it answers.
pub struct MockHub {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The path of every request, in order.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl MockHub {
    pub fn start(repos: Repos) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let repos = Arc::new(repos);
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (repos, log) = (repos.clone(), shared.clone());
                std::thread::spawn(move || serve(stream, &repos, &log));
            }
        });
        Self { endpoint, log }
    }
}

/// One request on a connection that is then closed.
fn serve(stream: TcpStream, repos: &Repos, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap() == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = v.trim().strip_prefix("bytes=").map(str::to_owned);
        }
    }
    log.lock().unwrap().push(path.clone());
    let mut out = stream;
    match find(repos, &path) {
        Some((commit, bytes)) => {
            let (start, end) = span(range.as_deref(), bytes.len());
            let body = &bytes[start..=end];
            let head = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\
                 Content-Range: bytes {start}-{end}/{}\r\nETag: \"{}\"\r\n\
                 X-Repo-Commit: {commit}\r\nConnection: close\r\n\r\n",
                body.len(),
                bytes.len(),
                etag(bytes),
            );
            out.write_all(head.as_bytes()).unwrap();
            let _ = out.write_all(body);
        }
        None => {
            let body = b"Entry not found";
            let head = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nX-Error-Code: EntryNotFound\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            out.write_all(head.as_bytes()).unwrap();
            let _ = out.write_all(body);
        }
    }
    let _ = out.flush();
    let _ = reader.read(&mut [0; 1]);
}

/// `/{owner}/{name}/resolve/{revision}/{file}` → (commit, bytes).
fn find<'a>(repos: &'a Repos, path: &str) -> Option<(String, &'a Vec<u8>)> {
    let (model, rest) = path.trim_start_matches('/').split_once("/resolve/")?;
    let (revision, file) = rest.split_once('/')?;
    let bytes = repos.get(model)?.get(revision)?.get(file)?;
    Some((commit_of(model, revision), bytes))
}

/// The commit a revision names: 40 hex digits made from the model and revision.
fn commit_of(model: &str, revision: &str) -> String {
    let h = fnv(format!("{model}@{revision}").as_bytes());
    format!("{h:016x}{h:016x}{:08x}", h as u32)
}

fn etag(bytes: &[u8]) -> String {
    format!("{:016x}{:08x}", fnv(bytes), bytes.len())
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The inclusive byte span of a `Range: bytes=a-b` / `bytes=a-` header (whole file without one).
fn span(range: Option<&str>, len: usize) -> (usize, usize) {
    let Some((a, b)) = range.and_then(|r| r.split_once('-')) else { return (0, len - 1) };
    let start = a.parse().unwrap_or(0);
    let end = b.parse().map_or(len - 1, |e: usize| e.min(len - 1));
    (start, end)
}
