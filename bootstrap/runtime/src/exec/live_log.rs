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
    // Reused for every batch: the tagged text of a chunk, written with one call.
    let mut text = Vec::with_capacity(4 * CHUNK);
    for message in rx {
        let mut out = std::io::BufWriter::with_capacity(CHUNK, stderr.lock());
        match message {
            Message::Lines {
                tag,
                format: LineFormat::Text,
                bytes,
            } => {
                text.clear();
                tag_lines(&mut text, &tag, &bytes);
                let _ = out.write_all(&text);
                IN_FLIGHT.fetch_sub(bytes.len(), Ordering::Relaxed);
            }
            Message::Lines {
                tag,
                format: LineFormat::Json,
                bytes,
            } => {
                // One time for the batch: its lines were read together, within milliseconds.
                let timestamp = now_rfc3339();
                for line in bytes.split_inclusive(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    let _ = write_record(&mut out, &timestamp, &tag, line);
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

/// `TAG<TAB>line` for each line of `lines` (complete lines, each ending in a newline), into
/// `out`: the newlines found by `memchr`, each line copied whole, as this is the path a
/// command printing millions of short lines takes.
fn tag_lines(out: &mut Vec<u8>, tag: &str, lines: &[u8]) {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', lines) {
        out.extend_from_slice(tag.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(&lines[start..=end]);
        start = end + 1;
    }
    if start < lines.len() {
        out.extend_from_slice(tag.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(&lines[start..]);
        out.push(b'\n');
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Lambda's JSON log record for one line.
fn write_record(
    out: &mut impl Write,
    timestamp: &str,
    tag: &str,
    line: &[u8],
) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Record<'a> {
        timestamp: &'a str,
        level: &'static str,
        request_id: &'a str,
        message: std::borrow::Cow<'a, str>,
        stream: &'static str,
    }
    let record = Record {
        timestamp,
        level: "INFO",
        request_id: tag,
        message: String::from_utf8_lossy(line),
        stream: "output",
    };
    serde_json::to_writer(&mut *out, &record).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

fn write_line(
    out: &mut impl Write,
    tag: &str,
    format: LineFormat,
    line: &[u8],
) -> std::io::Result<()> {
    match format {
        LineFormat::Text => {
            let mut text = Vec::with_capacity(tag.len() + line.len() + 2);
            tag_lines(&mut text, tag, line);
            out.write_all(&text)
        }
        LineFormat::Json => write_record(out, &now_rfc3339(), tag, line),
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
/// the bytes after the last newline. The newlines are found by `memchr` and the bytes
/// between breaks copied in one piece: output of short lines costs a scan, not a loop a line.
fn split_lines(pending: &mut Vec<u8>, partial: &mut usize, bytes: &[u8]) {
    // `copied`: bytes of `bytes` already in `pending`; `line`: where the current line starts
    // in `bytes`, `before`: its bytes that came in earlier calls.
    let (mut copied, mut line, mut before) = (0, 0, *partial);
    let mut cut_long = |end: usize, line: &mut usize, before: &mut usize, copied: &mut usize| {
        while *before + (end - *line) > MAX_LINE {
            let cut = *line + (MAX_LINE - *before);
            pending.extend_from_slice(&bytes[*copied..cut]);
            pending.push(b'\n');
            (*copied, *line, *before) = (cut, cut, 0);
        }
    };
    for newline in memchr::memchr_iter(b'\n', bytes) {
        cut_long(newline, &mut line, &mut before, &mut copied);
        (line, before) = (newline + 1, 0);
    }
    cut_long(bytes.len(), &mut line, &mut before, &mut copied);
    pending.extend_from_slice(&bytes[copied..]);
    *partial = before + (bytes.len() - line);
}

/// The line splitter as first written, one piece at a time: the oracle [`split_lines`] is
/// checked against.
#[cfg(test)]
fn split_lines_by_piece(pending: &mut Vec<u8>, partial: &mut usize, bytes: &[u8]) {
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
        let Some(end) = memchr::memrchr(b'\n', &self.pending) else {
            return;
        };
        let rest = self.pending.split_off(end + 1);
        let lines = std::mem::replace(&mut self.pending, rest);
        self.send(lines);
    }

    fn send(&mut self, bytes: Vec<u8>) {
        let Some(tx) = writer() else { return };
        let count = memchr::memchr_iter(b'\n', &bytes).count() as u64;
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

    /// Line lengths where splitting can go wrong: short ones, those at and around the limit
    /// and its multiples, and any other.
    fn line_length() -> impl proptest::strategy::Strategy<Value = usize> {
        use proptest::prelude::*;
        prop_oneof![
            0usize..40,
            (0usize..3, 0usize..3).prop_map(|(k, d)| (k + 1) * MAX_LINE + d - 1),
            0usize..MAX_LINE * 2 + 2,
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Streams of short, long and overlong lines, cut into chunks anywhere: the same
        /// bytes and the same partial count as the piece-by-piece splitter.
        #[test]
        fn the_splitter_agrees_with_the_piece_by_piece_one(
            lines in proptest::collection::vec((line_length(), proptest::bool::ANY), 0..6),
            cuts in proptest::collection::vec(0usize..MAX_LINE * 4, 0..6),
        ) {
            let mut stream = Vec::new();
            for (i, (len, newline)) in lines.iter().enumerate() {
                stream.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, *len));
                if *newline {
                    stream.push(b'\n');
                }
            }
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            bounds.push(0);
            bounds.push(stream.len());
            bounds.sort_unstable();
            let (mut fast, mut fast_partial) = (Vec::new(), 0);
            let (mut slow, mut slow_partial) = (Vec::new(), 0);
            for pair in bounds.windows(2) {
                split_lines(&mut fast, &mut fast_partial, &stream[pair[0]..pair[1]]);
                split_lines_by_piece(&mut slow, &mut slow_partial, &stream[pair[0]..pair[1]]);
                proptest::prop_assert_eq!(fast_partial, slow_partial);
            }
            proptest::prop_assert!(fast == slow);
        }
    }

    #[test]
    fn text_lines_are_tagged_one_by_one() {
        let mut out = Vec::new();
        tag_lines(&mut out, "req", b"a\n\nlast");
        assert_eq!(out, b"req\ta\nreq\t\nreq\tlast\n");
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
