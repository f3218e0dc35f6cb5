//! New files filled on other threads while the applier goes on with the tar stream.
//!
//! The applier still creates every file itself, in tar order, so every name exists when a
//! later entry needs it (a hard link to it, a whiteout or an opaque directory removing it, a
//! later layer replacing it): the order of the tree's changes is the tar's, whatever the
//! threads do. What it hands over is the rest of a file's cost: writing its bytes (on a tmpfs
//! mostly the page cache allocating and copying, the larger part of a pull's system time),
//! its mode and times, and `close`. A large file is handed over in pieces written at their
//! offsets, possibly by several workers at once; whichever piece lands last sets the mode and
//! times, so no write can follow and change them. A removed or replaced file's pieces land in
//! its unlinked inode, harmlessly.
//!
//! Memory is bounded by a pool of piece buffers: the applier waits for a free one. With one
//! core (a Lambda function below 1,769 MB has one) there are no workers and the applier writes
//! each file inline, as the stream arrives.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use filetime::FileTime;

use super::UnpackError;

/// Bytes per piece: large enough that a piece costs one `pwrite`, small enough that the pool
/// stays a few MiB.
const PIECE: usize = 512 * 1024;
/// Piece buffers in the pool, and so pieces in flight: a few per worker keeps each busy.
const BUFFERS: usize = 8;
/// More workers than this only contend for the same directory locks and page allocator.
const MAX_WORKERS: usize = 4;
/// The inline path's copy buffer.
const COPY_BUFFER: usize = 256 * 1024;

/// What a finished file gets after its bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Finish {
    /// The mode to set, when the umask took bits from the one it was created with.
    pub chmod: Option<u32>,
    /// Its modification (and access) time, seconds since the epoch.
    pub mtime: i64,
}

impl Finish {
    pub fn apply(self, file: &File) -> io::Result<()> {
        if let Some(mode) = self.chmod {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        let time = FileTime::from_unix_time(self.mtime, 0);
        filetime::set_file_handle_times(file, Some(time), Some(time))
    }
}

/// Writes new files' bytes: inline, or through a pool of worker threads.
pub(super) struct Filler {
    buffer: Vec<u8>,
    pool: Option<Pool>,
}

impl std::fmt::Debug for Filler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filler")
            .field(
                "workers",
                &self.pool.as_ref().map_or(0, |p| p.workers.len()),
            )
            .finish()
    }
}

impl Filler {
    /// Workers for this machine's cores: none on one core.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_workers(cores.min(MAX_WORKERS))
    }

    /// `workers` threads, or inline writing when it is 0 or 1.
    pub fn with_workers(workers: usize) -> Self {
        Self {
            buffer: Vec::new(),
            pool: (workers > 1).then(|| Pool::start(workers)),
        }
    }

    /// Fills the new `file` (at `path`) with `size` bytes from `data`, then `finish`es it;
    /// returns the bytes read. Through the pool, a worker's failure surfaces here or at
    /// [`Self::flush`].
    pub fn fill(
        &mut self,
        file: File,
        path: &Path,
        data: &mut impl Read,
        size: u64,
        finish: Finish,
    ) -> Result<u64, UnpackError> {
        match &mut self.pool {
            Some(pool) => pool.fill(file, path, data, size, finish),
            None => {
                if self.buffer.is_empty() {
                    self.buffer = vec![0; COPY_BUFFER];
                }
                fill_inline(file, path, data, &mut self.buffer, finish)
            }
        }
    }

    /// Waits until every file handed over is written and closed; the first failure, if any.
    pub fn flush(&mut self) -> Result<(), UnpackError> {
        match &mut self.pool {
            Some(pool) => pool.flush(),
            None => Ok(()),
        }
    }
}

fn fill_inline(
    mut file: File,
    path: &Path,
    data: &mut impl Read,
    buffer: &mut [u8],
    finish: Finish,
) -> Result<u64, UnpackError> {
    let mut total = 0u64;
    loop {
        let n = match data.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(UnpackError::Stream(e)),
        };
        file.write_all(&buffer[..n])
            .map_err(|e| UnpackError::io(path, e))?;
        total += n as u64;
    }
    finish.apply(&file).map_err(|e| UnpackError::io(path, e))?;
    Ok(total)
}

/// One file being filled: closed when the last of its pieces is dropped.
struct Target {
    file: File,
    path: PathBuf,
    finish: Finish,
    pieces_left: AtomicUsize,
}

/// Bytes of one file at `offset`; `data` goes back to the pool once written.
struct Piece {
    target: Arc<Target>,
    offset: u64,
    data: Vec<u8>,
}

struct Pool {
    /// `None` once the pool is shutting down.
    pieces: Option<SyncSender<Piece>>,
    /// Buffers the workers are done with.
    returned: Receiver<Vec<u8>>,
    /// Buffers the applier holds: every buffer is here, in flight, or in `returned`.
    idle: Vec<Vec<u8>>,
    allocated: usize,
    failed: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<UnpackError>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(count: usize) -> Self {
        let (pieces, queue) = sync_channel::<Piece>(BUFFERS);
        let queue = Arc::new(Mutex::new(queue));
        let (give_back, returned) = channel();
        let failed = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let workers = (0..count)
            .map(|_| {
                let worker = Worker {
                    queue: queue.clone(),
                    give_back: give_back.clone(),
                    failed: failed.clone(),
                    failure: failure.clone(),
                };
                std::thread::spawn(move || worker.run())
            })
            .collect();
        Self {
            pieces: Some(pieces),
            returned,
            idle: Vec::with_capacity(BUFFERS),
            allocated: 0,
            failed,
            failure,
            workers,
        }
    }

    fn fill(
        &mut self,
        file: File,
        path: &Path,
        data: &mut impl Read,
        size: u64,
        finish: Finish,
    ) -> Result<u64, UnpackError> {
        self.check()?;
        let pieces = size.div_ceil(PIECE as u64).max(1);
        let target = Arc::new(Target {
            file,
            path: path.to_path_buf(),
            finish,
            pieces_left: AtomicUsize::new(usize::try_from(pieces).unwrap_or(usize::MAX)),
        });
        let mut offset = 0u64;
        for _ in 0..pieces {
            let mut buffer = self.buffer()?;
            let want = usize::try_from((size - offset).min(PIECE as u64)).unwrap_or(PIECE);
            buffer.resize(want, 0);
            if let Err(e) = data.read_exact(&mut buffer) {
                self.idle.push(buffer);
                return Err(UnpackError::Stream(e));
            }
            let piece = Piece {
                target: target.clone(),
                offset,
                data: buffer,
            };
            offset += want as u64;
            let Some(sender) = &self.pieces else {
                return Err(worker_gone());
            };
            sender.send(piece).map_err(|_| worker_gone())?;
        }
        Ok(offset)
    }

    /// A free buffer: an idle one, a new one while the pool is not full, or the next one a
    /// worker gives back.
    fn buffer(&mut self) -> Result<Vec<u8>, UnpackError> {
        if let Some(buffer) = self.idle.pop() {
            return Ok(buffer);
        }
        if self.allocated < BUFFERS {
            self.allocated += 1;
            return Ok(Vec::with_capacity(PIECE));
        }
        self.returned.recv().map_err(|_| worker_gone())
    }

    fn flush(&mut self) -> Result<(), UnpackError> {
        while self.idle.len() < self.allocated {
            let buffer = self.returned.recv().map_err(|_| worker_gone())?;
            self.idle.push(buffer);
        }
        self.check()
    }

    fn check(&self) -> Result<(), UnpackError> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let taken = self.failure.lock().ok().and_then(|mut slot| slot.take());
        Err(taken.unwrap_or_else(worker_gone))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.pieces = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker_gone() -> UnpackError {
    UnpackError::Stream(io::Error::other("a file-writing thread ended early"))
}

struct Worker {
    queue: Arc<Mutex<Receiver<Piece>>>,
    give_back: Sender<Vec<u8>>,
    failed: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<UnpackError>>>,
}

impl Worker {
    fn run(self) {
        loop {
            let next = match self.queue.lock() {
                Ok(queue) => queue.recv(),
                Err(_) => return,
            };
            let Ok(mut piece) = next else {
                return;
            };
            if let Err(e) = self.write(&piece) {
                self.fail(UnpackError::io(&piece.target.path, e));
            }
            piece.data.clear();
            // The applier may be gone (an error ended the pull): the buffer is then freed.
            let _ = self.give_back.send(std::mem::take(&mut piece.data));
        }
    }

    fn write(&self, piece: &Piece) -> io::Result<()> {
        let target = &piece.target;
        if !self.failed.load(Ordering::Acquire) {
            target.file.write_all_at(&piece.data, piece.offset)?;
        }
        if target.pieces_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            target.finish.apply(&target.file)?;
        }
        Ok(())
    }

    fn fail(&self, error: UnpackError) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(error);
        }
        self.failed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(workers: usize, sizes: &[usize]) -> Vec<(Vec<u8>, i64)> {
        let dir = tempfile::tempdir().unwrap();
        let mut filler = Filler::with_workers(workers);
        for (n, size) in sizes.iter().enumerate() {
            let path = dir.path().join(format!("f{n}"));
            let file = File::create(&path).unwrap();
            let data: Vec<u8> = (0..*size).map(|i| (i % 251) as u8 ^ n as u8).collect();
            let finish = Finish {
                chmod: Some(0o640),
                mtime: 1_000_000 + n as i64,
            };
            let read = filler
                .fill(file, &path, &mut &data[..], *size as u64, finish)
                .unwrap();
            assert_eq!(read, *size as u64);
        }
        filler.flush().unwrap();
        (0..sizes.len())
            .map(|n| {
                let path = dir.path().join(format!("f{n}"));
                let meta = std::fs::metadata(&path).unwrap();
                assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
                let mtime = FileTime::from_last_modification_time(&meta).unix_seconds();
                (std::fs::read(&path).unwrap(), mtime)
            })
            .collect()
    }

    #[test]
    fn the_pool_writes_what_inline_writing_writes() {
        // Empty, small, exactly one piece, pieces and a tail, many pieces: more files than
        // buffers, so the applier waits for the workers.
        let sizes = [
            0,
            1,
            4095,
            PIECE,
            PIECE + 1,
            3 * PIECE + 17,
            9 * PIECE,
            5,
            0,
            100_000,
        ];
        let inline = filled(1, &sizes);
        for (n, (bytes, _)) in inline.iter().enumerate() {
            assert_eq!(bytes.len(), sizes[n]);
        }
        assert_eq!(filled(3, &sizes), inline);
    }

    #[test]
    fn a_short_stream_is_a_stream_error_and_the_pool_still_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        let file = File::create(&path).unwrap();
        let mut filler = Filler::with_workers(2);
        let finish = Finish {
            chmod: None,
            mtime: 0,
        };
        let data = vec![7u8; PIECE + 10];
        let error = filler
            .fill(file, &path, &mut &data[..], 2 * PIECE as u64, finish)
            .unwrap_err();
        assert!(matches!(error, UnpackError::Stream(_)), "{error}");
        filler.flush().unwrap();
    }

    #[test]
    fn a_worker_failure_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read-only");
        std::fs::write(&path, b"").unwrap();
        // Opened for reading only: the worker's write fails with EBADF.
        let file = File::open(&path).unwrap();
        let mut filler = Filler::with_workers(2);
        let finish = Finish {
            chmod: None,
            mtime: 0,
        };
        filler
            .fill(file, &path, &mut &b"data"[..], 4, finish)
            .unwrap();
        let error = filler.flush().unwrap_err();
        assert!(error.to_string().contains("read-only"), "{error}");
    }
}
