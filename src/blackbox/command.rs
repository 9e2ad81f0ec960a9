//! External programs as black boxes: `--generator 'cmd:PROGRAM ARGS'`.
//!
//! For users who cannot export their model but can run it: a script around
//! an API, a binary in another language. The program is started once, through
//! `sh -c`, and lives for the whole `sample` run. The protocol is meant to be
//! a few lines in any language with a `.npy` writer:
//!
//! 1. On start the program writes one line of JSON to stdout:
//!    `{"latent_dim": K, "embed_dim": D}`.
//! 2. For each batch modeaudit writes to the program's stdin one `.npy`
//!    array (format version 1.0, little-endian float32 `<f4`, C order) of
//!    shape `[n, K]`: the latent codes. The program answers on stdout with one
//!    `.npy` array of shape `[n, D]` in the same format: the embeddings (they
//!    need not be normalised).
//! 3. At the end modeaudit closes the program's stdin; the program should
//!    exit. Anything it writes to stderr goes to modeaudit's stderr.
//!
//! The greeting and every answer must arrive within the timeout. A program
//! that dies, hangs past the timeout or answers with the wrong shape is
//! killed, and the error says which; the batch is then not committed (the
//! caller commits only complete batches), so the catalog stays as it was.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use ndarray::{Array2, ArrayView2};
use ndarray_npy::WriteNpyExt;
use ndarray_npy::npy::header::Header;
use serde::Deserialize;

use super::BlackBox;
use crate::error::{Error, Result};

/// Largest embedding a program may announce, to refuse nonsense greetings
/// before allocating for them.
const MAX_DIM: usize = 1 << 20;

/// The greeting line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Greeting {
    latent_dim: usize,
    embed_dim: usize,
}

/// A running external black box.
pub struct ExternalProgram {
    spec: String,
    command: String,
    latent_dim: usize,
    embed_dim: usize,
    timeout: Duration,
    session: Mutex<Session>,
}

struct Session {
    child: Child,
    /// `None` once closed, or while a writer thread holds it.
    stdin: Option<ChildStdin>,
    /// Answers read by the reader thread, in order.
    answers: Receiver<std::result::Result<Array2<f32>, String>>,
    /// Set after a failure: the program was killed and cannot be used again.
    broken: Option<String>,
}

impl ExternalProgram {
    /// Starts `command` (the text after `cmd:`) and reads its greeting.
    pub fn start(spec: &str, command: &str, timeout: Duration) -> Result<ExternalProgram> {
        let fail = |reason: String| Error::Generator {
            spec: spec.to_string(),
            reason,
        };
        if command.trim().is_empty() {
            return Err(fail("no program given; use cmd:\"PROGRAM ARGS\"".into()));
        }
        // A process group of its own, so that stopping it also stops what
        // the shell started (sh does not always exec the program it runs).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| fail(format!("cannot start it: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (greeting_tx, greeting_rx) = mpsc::channel();
        let (answer_tx, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("modeaudit-cmd-reader".into())
            .spawn(move || read_replies(stdout, greeting_tx, answer_tx))
            .map_err(|e| fail(format!("cannot start its reader thread: {e}")))?;
        let greeting = match greeting_rx.recv_timeout(timeout) {
            Ok(Ok(line)) => line,
            Ok(Err(reason)) => {
                let status = finish(&mut child);
                return Err(fail(format!("no greeting: {reason}{status}")));
            }
            Err(_) => {
                kill(&mut child);
                return Err(fail(format!(
                    "sent no greeting within {:.0} s (expected one JSON line \
                     {{\"latent_dim\": K, \"embed_dim\": D}}); killed it",
                    timeout.as_secs_f64()
                )));
            }
        };
        let parsed: Greeting = match serde_json::from_str(greeting.trim()) {
            Ok(g) => g,
            Err(e) => {
                kill(&mut child);
                return Err(fail(format!(
                    "its greeting {:?} is not {{\"latent_dim\": K, \"embed_dim\": D}}: {e}",
                    truncate(&greeting, 200)
                )));
            }
        };
        for (name, value) in [
            ("latent_dim", parsed.latent_dim),
            ("embed_dim", parsed.embed_dim),
        ] {
            if value == 0 || value > MAX_DIM {
                kill(&mut child);
                return Err(fail(format!("its greeting gives {name} = {value}")));
            }
        }
        Ok(ExternalProgram {
            spec: spec.to_string(),
            command: command.to_string(),
            latent_dim: parsed.latent_dim,
            embed_dim: parsed.embed_dim,
            timeout,
            session: Mutex::new(Session {
                child,
                stdin: Some(stdin),
                answers,
                broken: None,
            }),
        })
    }

    fn error(&self, reason: String) -> Error {
        Error::Generator {
            spec: self.spec.clone(),
            reason,
        }
    }
}

impl BlackBox for ExternalProgram {
    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "cmd",
            "command": self.command,
            "protocol": "greeting line, then one float32 .npy per batch each way",
        })
    }

    fn preferred_batch(&self) -> usize {
        1024
    }

    fn embed(&self, latents: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let mut session = self.session.lock().expect("session lock");
        if let Some(reason) = &session.broken {
            return Err(self.error(format!("unusable after an earlier failure: {reason}")));
        }
        let n = latents.nrows();
        let mut request = Vec::with_capacity(128 + latents.len() * 4);
        latents
            .as_standard_layout()
            .write_npy(&mut request)
            .expect("writing .npy to memory cannot fail");
        let mut stdin = session
            .stdin
            .take()
            .expect("stdin is present between batches");
        // Written from a thread of its own: a program that stops reading
        // would otherwise block us on a full pipe, out of reach of the timeout.
        let writer = std::thread::spawn(move || {
            let result = stdin.write_all(&request).and_then(|()| stdin.flush());
            (stdin, result)
        });
        let outcome = session.answers.recv_timeout(self.timeout);
        let reason = match outcome {
            Ok(Ok(answer)) => {
                let (stdin, written) = writer.join().expect("writer thread");
                session.stdin = Some(stdin);
                if let Err(e) = written {
                    Some(format!("could not send the latent codes: {e}"))
                } else if answer.dim() != (n, self.embed_dim) {
                    Some(format!(
                        "answered {} x {} for {n} codes; expected {n} x {} (rows x embed_dim)",
                        answer.nrows(),
                        answer.ncols(),
                        self.embed_dim
                    ))
                } else {
                    return Ok(answer);
                }
            }
            Ok(Err(reason)) => {
                let status = finish(&mut session.child);
                let _ = writer.join();
                Some(format!("{reason}{status}"))
            }
            Err(RecvTimeoutError::Timeout) => {
                kill(&mut session.child);
                let _ = writer.join();
                Some(format!(
                    "gave no answer for {n} codes within {:.0} s; killed it (raise --timeout if \
                     it is only slow)",
                    self.timeout.as_secs_f64()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = finish(&mut session.child);
                let _ = writer.join();
                Some(format!("stopped answering{status}"))
            }
        };
        let reason = reason.expect("every other path returned");
        kill(&mut session.child);
        session.stdin = None;
        session.broken = Some(reason.clone());
        Err(self.error(reason))
    }
}

impl Drop for ExternalProgram {
    /// Closes the program's stdin so it can finish, waits a moment for it,
    /// and kills it if it lingers.
    fn drop(&mut self) {
        let Ok(session) = self.session.get_mut() else {
            return;
        };
        session.stdin = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match session.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() && session.broken.is_none() {
                        tracing::warn!("external program {:?} exited with {status}", self.command);
                    }
                    return;
                }
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    kill(&mut session.child);
                    return;
                }
            }
        }
    }
}

/// Reader thread: the greeting line, then one `.npy` answer after another
/// until the program closes its stdout or sends something unreadable.
fn read_replies(
    stdout: ChildStdout,
    greeting: mpsc::Sender<std::result::Result<String, String>>,
    answers: mpsc::Sender<std::result::Result<Array2<f32>, String>>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => {
            let _ = greeting.send(Err("it closed its stdout before greeting".into()));
            return;
        }
        Ok(_) => {
            let _ = greeting.send(Ok(line));
        }
        Err(e) => {
            let _ = greeting.send(Err(format!("reading its greeting failed: {e}")));
            return;
        }
    }
    loop {
        let answer = read_answer(&mut reader);
        let stop = !matches!(answer, Ok(Some(_)));
        let message = match answer {
            Ok(Some(array)) => Ok(array),
            Ok(None) => Err("it closed its stdout".to_string()),
            Err(reason) => Err(reason),
        };
        if answers.send(message).is_err() || stop {
            return;
        }
    }
}

/// Reads one float32 `.npy` array from a stream; `Ok(None)` at a clean end.
fn read_answer(
    reader: &mut BufReader<ChildStdout>,
) -> std::result::Result<Option<Array2<f32>>, String> {
    if reader
        .fill_buf()
        .map_err(|e| format!("reading its answer failed: {e}"))?
        .is_empty()
    {
        return Ok(None);
    }
    let header =
        Header::from_reader(reader).map_err(|e| format!("its answer is not a .npy array: {e}"))?;
    let descriptor = header.type_descriptor.to_string();
    if descriptor != "'<f4'" && descriptor != "\"<f4\"" {
        return Err(format!(
            "its answer has dtype {descriptor}; expected little-endian float32 '<f4'"
        ));
    }
    if header.layout.is_fortran() {
        return Err("its answer is in Fortran order; write it in C order".into());
    }
    let (rows, cols) = match header.shape.as_slice() {
        [rows, cols] => (*rows, *cols),
        other => {
            return Err(format!(
                "its answer has shape {other:?}; expected [n, embed_dim]"
            ));
        }
    };
    let len = rows
        .checked_mul(cols)
        .filter(|&len| len <= MAX_DIM * (1 << 20))
        .ok_or_else(|| format!("its answer's shape [{rows}, {cols}] is too large"))?;
    let mut bytes = vec![0u8; len * 4];
    reader.read_exact(&mut bytes).map_err(|e| {
        format!("its answer ended early ({e}); expected {rows} x {cols} float32 values")
    })?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Some(
        Array2::from_shape_vec((rows, cols), values).expect("length checked"),
    ))
}

/// Waits briefly for a program that has failed, and describes how it ended.
fn finish(child: &mut Child) -> String {
    for _ in 0..50 {
        if let Ok(Some(status)) = child.try_wait() {
            return format!(" (it exited with {status})");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(child);
    String::new()
}

/// Kills the program's whole process group and reaps it.
fn kill(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals the process group we
        // created at spawn; it touches no memory of ours.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
