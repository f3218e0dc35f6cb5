//! The system calls that make and finish each new file of a skeleton, off the applier's thread.
//!
//! Building a lazy tree is system calls, about six per file (create, length or bytes, mode,
//! times, `fstat`, close), for tens of thousands of files, and one thread making them leaves
//! the other cores idle while the command waits for its tree. The applier keeps every
//! operation that looks at or changes what a name holds (the checks of what is in the way,
//! removals, links, directories) on its own thread, in the tar's order, so that what a later
//! entry finds by name is what GNU tar would find. It hands over two kinds of jobs:
//! - a file it just created ([`Target::Open`]): its length or few inline bytes, its mode, its
//!   times and its close; none of these changes a name, and an inode a later entry unlinks or
//!   links again is the same inode;
//! - a file to create ([`Target::Create`]) at a new name in a directory the applier knows to
//!   be there. The worker creates it (`O_EXCL`, never following a link), reads its inode,
//!   finishes it and reports back; a name found taken comes back untouched, for the applier's
//!   long way. The applier settles every report before any operation that could touch a name
//!   still being made, or a directory above one (`apply.rs` says which), so the tree is the
//!   one the applier alone would make.
//!
//! Failures are kept, and the first (with the file's name) is the build's error.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use filetime::FileTime;

/// What a new file still needs.
pub(super) enum Content {
    /// A placeholder: this length, no block written.
    Length(u64),
    /// A file small enough to travel with the job.
    Bytes(Vec<u8>),
}

/// The file a job finishes.
pub(super) enum Target {
    /// Created by the applier.
    Open(File),
    /// To be created by the worker, with this mode, and reported.
    Create { mode: u32 },
}

/// One new file, and what it still needs.
pub(super) struct Job {
    pub(super) target: Target,
    /// Where it is (for [`Target::Create`], where to make it), and for errors.
    pub(super) path: PathBuf,
    pub(super) content: Content,
    /// The mode to set when the umask took bits from it at creation.
    pub(super) chmod: Option<u32>,
    pub(super) mtime: i64,
}

/// What became of a [`Target::Create`] job.
pub(super) enum Made {
    /// Made and finished: its device and inode.
    Done(u64, u64),
    /// The name was taken (a lower layer's file): the job comes back, nothing touched.
    Taken(Job),
    /// It failed.
    Failed(io::Error),
}

/// A [`Target::Create`] job's report: the file's path, and what became of it.
pub(super) struct Report {
    pub(super) path: PathBuf,
    pub(super) made: Made,
}

/// Jobs handed over at once: a sleeping worker is woken by a system call, once per batch.
const BATCH: usize = 32;
/// Batches queued at most: each job holds an open descriptor, and Lambda allows 1,024.
const QUEUED: usize = 4;
/// How often a wait for reports checks that the workers are still there.
const WORKERS_CHECKED_EVERY: Duration = Duration::from_millis(200);

/// A job's or the whole queue's result: the failed file and why.
pub(super) type Outcome = Result<(), (PathBuf, io::Error)>;

/// Worker threads finishing new files.
pub(super) struct Finisher {
    jobs: Option<SyncSender<Vec<Job>>>,
    /// The batch being filled.
    batch: Vec<Job>,
    workers: Vec<JoinHandle<Outcome>>,
    reports: Receiver<Report>,
    /// For the jobs done here when the workers are gone.
    reporter: Sender<Report>,
    /// [`Target::Create`] jobs sent and not yet reported.
    unreported: usize,
}

impl Finisher {
    /// Threads for every core, at least two, at most four: the applier's own work is mostly
    /// reading the tar, the workers' is system calls that wait on the filesystem.
    pub(super) fn start() -> io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (jobs, queue) = sync_channel::<Vec<Job>>(QUEUED);
        let (reporter, reports) = channel();
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..cores.clamp(2, 4))
            .map(|n| {
                let queue = Arc::clone(&queue);
                let reporter = reporter.clone();
                std::thread::Builder::new()
                    .name(format!("scar-finish-{n}"))
                    .spawn(move || work(&queue, &reporter))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            jobs: Some(jobs),
            batch: Vec::with_capacity(BATCH),
            workers,
            reports,
            reporter,
            unreported: 0,
        })
    }

    /// Queues `job`.
    pub(super) fn send(&mut self, job: Job) -> Outcome {
        if matches!(job.target, Target::Create { .. }) {
            self.unreported += 1;
        }
        self.batch.push(job);
        if self.batch.len() < BATCH {
            return Ok(());
        }
        self.flush()
    }

    /// The reports in so far, without waiting.
    pub(super) fn reports_in(&mut self) -> Vec<Report> {
        let reports: Vec<Report> = self.reports.try_iter().collect();
        self.unreported -= reports.len();
        reports
    }

    /// Every report still owed, once all are in.
    pub(super) fn all_reports(&mut self) -> Result<Vec<Report>, (PathBuf, io::Error)> {
        self.flush()?;
        let mut reports = Vec::with_capacity(self.unreported);
        while self.unreported > 0 {
            match self.reports.recv_timeout(WORKERS_CHECKED_EVERY) {
                Ok(report) => {
                    reports.push(report);
                    self.unreported -= 1;
                }
                // A worker that ended (a panic) took its jobs' reports with it.
                Err(RecvTimeoutError::Timeout)
                    if !self.workers.iter().any(JoinHandle::is_finished) => {}
                Err(_) => {
                    return Err((
                        PathBuf::new(),
                        io::Error::other("a file-finishing thread stopped with files unmade"),
                    ));
                }
            }
        }
        Ok(reports)
    }

    /// Hands the batch to the workers; when they are gone (they stopped on a panic, which
    /// [`Self::finish`] reports) its jobs are done here instead.
    fn flush(&mut self) -> Outcome {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let left = match &self.jobs {
            Some(jobs) => match jobs.send(batch) {
                Ok(()) => return Ok(()),
                Err(returned) => returned.0,
            },
            None => batch,
        };
        left.into_iter()
            .try_for_each(|job| run(job, &self.reporter))
    }

    /// Waits for every queued job; the first failure, by file.
    pub(super) fn finish(mut self) -> Outcome {
        self.stop()
    }

    fn stop(&mut self) -> Outcome {
        let mut outcome = self.flush();
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let result = worker.join().unwrap_or_else(|_| {
                Err((
                    PathBuf::new(),
                    io::Error::other("a file-finishing thread panicked"),
                ))
            });
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }
}

impl std::fmt::Debug for Finisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finisher")
            .field("workers", &self.workers.len())
            .field("unreported", &self.unreported)
            .finish()
    }
}

impl Drop for Finisher {
    /// A build abandoned half-way still closes every descriptor it opened before it goes.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Takes jobs until the queue closes; after a failure it still drains the queue (closing the
/// descriptors) and keeps the first failure.
fn work(queue: &Mutex<Receiver<Vec<Job>>>, reporter: &Sender<Report>) -> Outcome {
    let mut outcome = Ok(());
    loop {
        let batch = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(batch) = batch else {
            return outcome;
        };
        for job in batch {
            let result = run(job, reporter);
            if outcome.is_ok() {
                outcome = result;
            }
        }
    }
}

/// Does `job` on the calling thread; a [`Target::Create`] job's outcome goes to `reporter`
/// (whose receiver, gone with an abandoned build, is no one's concern).
fn run(job: Job, reporter: &Sender<Report>) -> Outcome {
    let Target::Create { mode } = job.target else {
        return finish_now(job);
    };
    let path = job.path.clone();
    let made = match create_file(&path, mode) {
        Ok(file) => match file.metadata() {
            Ok(meta) => {
                let inode = (meta.dev(), meta.ino());
                match finish_now(Job {
                    target: Target::Open(file),
                    ..job
                }) {
                    Ok(()) => Made::Done(inode.0, inode.1),
                    Err((_, e)) => Made::Failed(e),
                }
            }
            Err(e) => Made::Failed(e),
        },
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Made::Taken(job),
        Err(e) => Made::Failed(e),
    };
    let _ = reporter.send(Report { path, made });
    Ok(())
}

/// Does `job`, whose file is open, on the calling thread.
pub(super) fn finish_now(job: Job) -> Outcome {
    let Job {
        target,
        path,
        content,
        chmod,
        mtime,
    } = job;
    let Target::Open(mut file) = target else {
        return Err((
            path,
            io::Error::other("a file to create reached finish_now"),
        ));
    };
    let atime = match content {
        // The mark that tells `stat` (through the shim) a placeholder from a sparse file.
        Content::Length(length) => file
            .set_len(length)
            .map(|()| FileTime::from_unix_time(mtime, rootfs_paths::fetch::PLACEHOLDER_ATIME_NSEC)),
        Content::Bytes(bytes) => file
            .write_all(&bytes)
            .map(|()| FileTime::from_unix_time(mtime, 0)),
    };
    atime
        .and_then(|atime| settle_times(&file, chmod, atime, mtime))
        .map_err(|e| (path, e))
}

/// A written file's last touches: the mode the umask took bits from (`chmod`), then its times.
pub(super) fn settle(file: &File, chmod: Option<u32>, mtime: i64) -> io::Result<()> {
    settle_times(file, chmod, FileTime::from_unix_time(mtime, 0), mtime)
}

fn settle_times(file: &File, chmod: Option<u32>, atime: FileTime, mtime: i64) -> io::Result<()> {
    if let Some(mode) = chmod {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    let mtime = FileTime::from_unix_time(mtime, 0);
    filetime::set_file_handle_times(file, Some(atime), Some(mtime))
}

/// A new file with its final mode: the descriptor stays writable even for a read-only mode,
/// and [`settle`]'s fchmod is only needed when the umask took bits away. It never follows or
/// replaces what is at `full`.
pub(super) fn create_file(full: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn job(path: PathBuf, content: Content, chmod: Option<u32>, mtime: i64) -> Job {
        Job {
            target: Target::Open(File::create(&path).expect("create")),
            path,
            content,
            chmod,
            mtime,
        }
    }

    #[test]
    fn every_queued_file_is_finished_when_finish_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut finisher = Finisher::start().expect("start");
        for n in 0..500u64 {
            let path = dir.path().join(format!("f{n}"));
            let content = if n % 2 == 0 {
                Content::Length(n * 4096)
            } else {
                Content::Bytes(vec![n as u8; n as usize])
            };
            let chmod = (n % 3 == 0).then_some(0o751);
            finisher
                .send(job(path, content, chmod, 1_000_000 + n as i64))
                .expect("send");
        }
        finisher.finish().expect("finish");
        for n in 0..500u64 {
            let meta = fs::metadata(dir.path().join(format!("f{n}"))).expect("stat");
            let size = if n % 2 == 0 { n * 4096 } else { n };
            assert_eq!(meta.len(), size, "f{n}");
            assert_eq!(meta.mtime(), 1_000_000 + n as i64, "f{n}");
            if n % 3 == 0 {
                assert_eq!(meta.mode() & 0o7777, 0o751, "f{n}");
            }
            if n % 2 == 0 {
                assert_eq!(meta.blocks(), 0, "f{n}: a placeholder has no block");
            }
        }
    }

    #[test]
    fn a_failure_names_its_file_and_the_rest_are_still_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut finisher = Finisher::start().expect("start");
        // Opened read-only: its length cannot be set.
        let bad = dir.path().join("read-only");
        File::create(&bad).expect("create");
        finisher
            .send(Job {
                target: Target::Open(File::open(&bad).expect("open")),
                path: bad.clone(),
                content: Content::Length(10),
                chmod: None,
                mtime: 0,
            })
            .expect("send");
        let good = dir.path().join("good");
        finisher
            .send(job(good.clone(), Content::Length(7), None, 42))
            .expect("send");
        let (path, _) = finisher.finish().expect_err("the read-only file fails");
        assert_eq!(path, bad);
        let meta = fs::metadata(&good).expect("stat");
        assert_eq!((meta.len(), meta.mtime()), (7, 42));
    }
}
