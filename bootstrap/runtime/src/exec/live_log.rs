//! The command's output, live, in the runtime's log (Lambda sends the runtime's stderr to
//! CloudWatch): line by line as it is produced, each line tagged (with the request id), as
//! text or as Lambda's JSON log record.
//!
//! The command never waits for the log: the reader thread that captures its output hands
//! complete lines to one writer thread through a bounded queue (at most [`MAX_IN_FLIGHT`]
//! bytes). When the queue is full the lines are dropped, counted, and a marker line says how
//! many; the response still carries the captured output. A line longer than [`MAX_LINE`]
//! (under CloudWatch's 256 KB event limit) is split.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Bytes queued for the writer at most; beyond, lines are dropped and counted.
pub const MAX_IN_FLIGHT: usize = 8 * 1024 * 1024;
/// The longest line logged as one event; longer lines are split.
pub const MAX_LINE: usize = 200 * 1024;
/// Chunks handed to the writer once the queue holds at least this many bytes.
const CHUNK: usize = 64 * 1024;

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// `TAG<TAB>line`.
    Text,
    /// `{"timestamp","level","requestId","message","stream"}`, one object a line.
    Json,
}

/// Where a run's output lines go: the process-wide writer, tagged for this run.
#[derive(Debug, Clone)]
pub struct LiveLog {
    tag: Arc<str>,
    format: LineFormat,
}

enum Message {
    Lines {
        tag: Arc<str>,
        format: LineFormat,
        bytes: Vec<u8>,
    },
    Dropped {
        tag: Arc<str>,
        format: LineFormat,
        lines: u64,
    },
    Flush(std::sync::mpsc::Sender<()>),
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

fn writer() -> Option<&'static SyncSender<Message>> {
    static WRITER: OnceLock<Option<SyncSender<Message>>> = OnceLock::new();
    WRITER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1024);
            std::thread::Builder::new()
                .name("scar-live-log".into())
                .spawn(move || write_lines(&rx))
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

fn write_lines(rx: &Receiver<Message>) {
    let stderr = std::io::stderr();
    for message in rx {
        let mut out = std::io::BufWriter::with_capacity(CHUNK, stderr.lock());
        match message {
            Message::Lines { tag, format, bytes } => {
                for line in bytes.split_inclusive(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    let _ = write_line(&mut out, &tag, format, line);
                }
                IN_FLIGHT.fetch_sub(bytes.len(), Ordering::Relaxed);
            }
            Message::Dropped { tag, format, lines } => {
                let marker = format!(
                    "[scar: {lines} lines of output not logged: the log fell behind; the response carries the output]"
                );
                let _ = write_line(&mut out, &tag, format, marker.as_bytes());
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
        let _ = out.flush();
    }
}

fn write_line(
    out: &mut impl Write,
    tag: &str,
    format: LineFormat,
    line: &[u8],
) -> std::io::Result<()> {
    match format {
        LineFormat::Text => {
            out.write_all(tag.as_bytes())?;
            out.write_all(b"\t")?;
            out.write_all(line)?;
            out.write_all(b"\n")
        }
        LineFormat::Json => {
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Record<'a> {
                timestamp: String,
                level: &'static str,
                request_id: &'a str,
                message: std::borrow::Cow<'a, str>,
                stream: &'static str,
            }
            let record = Record {
                timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                level: "INFO",
                request_id: tag,
                message: String::from_utf8_lossy(line),
                stream: "output",
            };
            serde_json::to_writer(&mut *out, &record).map_err(std::io::Error::other)?;
            out.write_all(b"\n")
        }
    }
}

impl LiveLog {
    /// Lines tagged `tag` (the request id), in `format`.
    pub fn new(tag: &str, format: LineFormat) -> Self {
        Self {
            tag: tag.into(),
            format,
        }
    }

    /// A splitter for one run's output stream.
    pub(crate) fn lines(&self) -> LineSplitter {
        LineSplitter {
            log: self.clone(),
            pending: Vec::new(),
            partial: 0,
            dropped: 0,
        }
    }

    /// Waits (up to `timeout`) until every line queued so far is written.
    pub fn flush(timeout: Duration) {
        let Some(tx) = writer() else { return };
        let (done, wait) = std::sync::mpsc::channel();
        if tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

/// Appends `bytes` to `pending`, breaking any line at [`MAX_LINE`] bytes; `partial` counts
/// the bytes after the last newline.
fn split_lines(pending: &mut Vec<u8>, partial: &mut usize, bytes: &[u8]) {
    for mut piece in bytes.split_inclusive(|&b| b == b'\n') {
        loop {
            let ends_line = piece.last() == Some(&b'\n');
            let text = piece.len() - usize::from(ends_line);
            let room = MAX_LINE - *partial;
            if text <= room {
                pending.extend_from_slice(piece);
                *partial = if ends_line { 0 } else { *partial + piece.len() };
                break;
            }
            pending.extend_from_slice(&piece[..room]);
            pending.push(b'\n');
            *partial = 0;
            piece = &piece[room..];
        }
    }
}

/// Cuts a byte stream into whole lines for the writer; owned by the reader thread.
pub(crate) struct LineSplitter {
    log: LiveLog,
    pending: Vec<u8>,
    /// Bytes of `pending` after its last newline.
    partial: usize,
    dropped: u64,
}

impl LineSplitter {
    /// Takes the next bytes of the stream.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        split_lines(&mut self.pending, &mut self.partial, bytes);
        if self.pending.len() >= CHUNK {
            self.send_complete();
        }
    }

    /// Sends every complete line buffered so far.
    fn send_complete(&mut self) {
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let rest = self.pending.split_off(end + 1);
        let lines = std::mem::replace(&mut self.pending, rest);
        self.send(lines);
    }

    fn send(&mut self, bytes: Vec<u8>) {
        let Some(tx) = writer() else { return };
        let count = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        if self.dropped > 0 {
            let marker = Message::Dropped {
                tag: Arc::clone(&self.log.tag),
                format: self.log.format,
                lines: self.dropped,
            };
            if tx.try_send(marker).is_ok() {
                self.dropped = 0;
            }
        }
        let size = bytes.len();
        if IN_FLIGHT.fetch_add(size, Ordering::Relaxed) + size > MAX_IN_FLIGHT {
            IN_FLIGHT.fetch_sub(size, Ordering::Relaxed);
            self.dropped += count;
            return;
        }
        let message = Message::Lines {
            tag: Arc::clone(&self.log.tag),
            format: self.log.format,
            bytes,
        };
        match tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                IN_FLIGHT.fetch_sub(size, Ordering::Relaxed);
                self.dropped += count;
            }
        }
    }

    /// The stream ended: the last line, even without its newline, and the drop count.
    pub(crate) fn finish(mut self) {
        if !self.pending.is_empty() && self.pending.last() != Some(&b'\n') {
            self.pending.push(b'\n');
        }
        if !self.pending.is_empty() {
            let lines = std::mem::take(&mut self.pending);
            self.send(lines);
        }
        if self.dropped > 0
            && let Some(tx) = writer()
        {
            let _ = tx.send(Message::Dropped {
                tag: Arc::clone(&self.log.tag),
                format: self.log.format,
                lines: self.dropped,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_have_lambdas_fields() {
        let mut out = Vec::new();
        write_line(&mut out, "req-1", LineFormat::Json, b"hello \xff").unwrap();
        let record: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(record["requestId"], "req-1");
        assert_eq!(record["level"], "INFO");
        assert_eq!(record["message"], "hello \u{fffd}");
        assert_eq!(record["stream"], "output");
        assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));
        let mut text = Vec::new();
        write_line(&mut text, "req-1", LineFormat::Text, b"hello").unwrap();
        assert_eq!(text, b"req-1\thello\n");
    }

    #[test]
    fn long_lines_are_split_and_a_last_line_without_newline_is_kept() {
        let (mut pending, mut partial) = (Vec::new(), 0);
        split_lines(&mut pending, &mut partial, &vec![b'a'; MAX_LINE * 2 + 10]);
        split_lines(&mut pending, &mut partial, b"\nend");
        let pieces: Vec<usize> = pending.split(|&b| b == b'\n').map(<[u8]>::len).collect();
        assert_eq!(
            pieces,
            [MAX_LINE, MAX_LINE, 10, 3],
            "split at MAX_LINE, the rest kept"
        );
        assert_eq!(partial, 3);
        let mut lines = LiveLog::new("t", LineFormat::Text).lines();
        lines.push(b"one\ntwo");
        lines.finish();
        LiveLog::flush(Duration::from_secs(2));
    }
}
