//! The last system calls of each new file of a skeleton, made off the applier's thread.
//!
//! Building a lazy tree is system calls, about six per file (create, length or bytes, mode,
//! times, `fstat`, close), for tens of thousands of files, and one thread making them leaves
//! the other cores idle while the command waits for its tree. The applier keeps every
//! operation on names (create, link, remove, the checks of what is in the way) on its own
//! thread, in the tar's order, so what a later entry finds by name is what GNU tar would find;
//! it hands over only what acts on the open descriptor of a file it just created: its length
//! or its few inline bytes, its mode, its times and its close. None of these changes a name or
//! a directory, and an inode a later entry unlinks or links again is the same inode, so the
//! tree is the one the applier alone would make once [`Finisher::finish`] returned.
//!
//! Failures are kept, and the first (with the file's name) is the build's error.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use filetime::FileTime;

/// What a new file still needs.
pub(super) enum Content {
    /// A placeholder: this length, no block written.
    Length(u64),
    /// A file small enough to travel with the job.
    Bytes(Vec<u8>),
}

/// One new file, open, and what it still needs.
pub(super) struct Job {
    pub(super) file: File,
    /// For errors.
    pub(super) path: PathBuf,
    pub(super) content: Content,
    /// The mode to set when the umask took bits from it at creation.
    pub(super) chmod: Option<u32>,
    pub(super) mtime: i64,
}

/// Jobs handed over at once: a sleeping worker is woken by a system call, once per batch.
const BATCH: usize = 32;
/// Batches queued at most: each job holds an open descriptor, and Lambda allows 1,024.
const QUEUED: usize = 4;

/// A job's or the whole queue's result: the failed file and why.
pub(super) type Outcome = Result<(), (PathBuf, io::Error)>;

/// Worker threads finishing new files.
pub(super) struct Finisher {
    jobs: Option<SyncSender<Vec<Job>>>,
    /// The batch being filled.
    batch: Vec<Job>,
    workers: Vec<JoinHandle<Outcome>>,
}

impl Finisher {
    /// Threads for all cores but the applier's, at least one, at most three (beyond that the
    /// applier's own calls are the limit).
    pub(super) fn start() -> io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (jobs, queue) = sync_channel::<Vec<Job>>(QUEUED);
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..cores.clamp(2, 4) - 1)
            .map(|n| {
                let queue = Arc::clone(&queue);
                std::thread::Builder::new()
                    .name(format!("scar-finish-{n}"))
                    .spawn(move || work(&queue))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            jobs: Some(jobs),
            batch: Vec::with_capacity(BATCH),
            workers,
        })
    }

    /// Queues `job`.
    pub(super) fn send(&mut self, job: Job) -> Outcome {
        self.batch.push(job);
        if self.batch.len() < BATCH {
            return Ok(());
        }
        self.flush()
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
        left.into_iter().try_for_each(finish_now)
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
fn work(queue: &Mutex<Receiver<Vec<Job>>>) -> Outcome {
    let mut outcome = Ok(());
    loop {
        let batch = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(batch) = batch else {
            return outcome;
        };
        for job in batch {
            let result = finish_now(job);
            if outcome.is_ok() {
                outcome = result;
            }
        }
    }
}

/// Does `job` on the calling thread.
pub(super) fn finish_now(job: Job) -> Outcome {
    let Job {
        mut file,
        path,
        content,
        chmod,
        mtime,
    } = job;
    match content {
        Content::Length(length) => file.set_len(length),
        Content::Bytes(bytes) => file.write_all(&bytes),
    }
    .and_then(|()| settle(&file, chmod, mtime))
    .map_err(|e| (path, e))
}

/// A written file's last touches: the mode the umask took bits from (`chmod`), then its times.
pub(super) fn settle(file: &File, chmod: Option<u32>, mtime: i64) -> io::Result<()> {
    if let Some(mode) = chmod {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    let time = FileTime::from_unix_time(mtime, 0);
    filetime::set_file_handle_times(file, Some(time), Some(time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn job(path: PathBuf, content: Content, chmod: Option<u32>, mtime: i64) -> Job {
        Job {
            file: File::create(&path).expect("create"),
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
                file: File::open(&bad).expect("open"),
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
