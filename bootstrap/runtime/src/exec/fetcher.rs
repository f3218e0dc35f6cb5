//! Lazy trees at exec time: what a program needs before it starts, and the fetcher socket
//! the shim asks for files (`scar_image::lazy` has the tree and its placeholders).
//!
//! The shim sees the program's own opens but not the loader's, nor anything a static
//! program does. So before an exec or a `dlopen`, what the program needs is made whole
//! first: the file itself; its `#!` interpreter, recursively (a file that is neither is run
//! by `/bin/sh`, as `execvp` does); for a dynamic ELF its loader and the closure of its
//! `DT_NEEDED` libraries, found as the loader finds them (`DT_RPATH`/`DT_RUNPATH` with
//! `$ORIGIN`, then the image's library directories). A static program (static-pie ones
//! included) waits for the whole tree: nothing it reads can be asked for ([`beyond_the_shim`]).
//!
//! Go programs make their system calls themselves even when linked dynamically: they are
//! treated as static.
//!
//! The socket speaks `rootfs_paths::fetch`: a file the shim is about to open (by device and
//! inode, whatever path reached it), a program or library about to run or load (by host
//! path), a library loaded by name alone (found in the image's library directories); each
//! is answered once the file and what it needs are in place, or with `EIO` when a fetch
//! failed. The failure is kept for the invocation's report, which names the file.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rootfs_paths::fetch::{self, Request};
use rootfs_paths::protocol;
use scar_image::lazy::{LazyFault, LazyTree};

use super::ExecError;
use super::elf_needs::{ElfNeeds, Head};

/// Libraries followed from one program at most: a bound on a hostile chain of `DT_NEEDED`.
const MAX_CLOSURE: usize = 512;
/// `#!` interpreters followed, as the launch does.
const MAX_SCRIPTS: usize = rootfs_paths::protocol::MAX_SCRIPT_DEPTH;
/// Files larger than this are filled but not parsed (no program or library is this large).
const MAX_PARSED_BYTES: u64 = 1 << 30;
/// Files of the image that bootstrap itself reads before a program runs (the identity
/// entries of `identity.rs`); the profile's own reads fill theirs as they go.
const BOOT_FILES: [&str; 2] = ["etc/passwd", "etc/group"];

/// A file of a program's closure, and how it was reached.
struct Need {
    host: PathBuf,
    /// Run as a program, not loaded (as a library or the loader).
    program: bool,
    /// `#!` interpreters followed to reach it.
    scripts: usize,
}

/// A lazy tree's fetcher: the closure rule, and the socket the shim asks.
#[derive(Debug)]
pub struct Fetcher {
    tree: Arc<LazyTree>,
    /// The tree's root, resolved: what a program may need lies below it.
    root: PathBuf,
    library_dirs: Vec<PathBuf>,
    socket: PathBuf,
    /// Files whose closure is whole already.
    ready: Mutex<HashSet<PathBuf>>,
    /// The first fetch that failed since it was last taken.
    fault: Mutex<Option<ExecError>>,
    /// Set while one answer's thread fills a fetched file's neighbours: one at a time, as
    /// each holds a decoded frame (a command reading every file would otherwise start one
    /// per file it asks for, and memory would grow with them).
    filling_neighbours: AtomicBool,
}

impl Fetcher {
    /// A fetcher for `tree`, listening at `socket` (a path beside the image), with the
    /// image's library directories (host paths, in the loader's order). `preloads` are the
    /// shim builds: the loader loads their libraries from the image into every program.
    pub fn start(
        tree: Arc<LazyTree>,
        library_dirs: Vec<PathBuf>,
        socket: PathBuf,
        preloads: &[&Path],
    ) -> std::io::Result<Arc<Self>> {
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        let root = tree.root().canonicalize()?;
        let fetcher = Arc::new(Self {
            tree,
            root,
            library_dirs,
            socket,
            ready: Mutex::new(HashSet::new()),
            fault: Mutex::new(None),
            filling_neighbours: AtomicBool::new(false),
        });
        let boot_files: Vec<PathBuf> = BOOT_FILES
            .iter()
            .map(|file| fetcher.tree.root().join(file))
            .collect();
        let libraries: Vec<String> = preloads
            .iter()
            .filter_map(|preload| Head::read(preload).ok()?.elf())
            .flat_map(|elf| elf.libraries)
            .collect();
        // All of them fetched together first (one round trip to the store, not one per
        // file); failures are kept for the run's report.
        let together: Vec<PathBuf> = boot_files
            .iter()
            .cloned()
            .chain(
                libraries
                    .iter()
                    .filter_map(|name| fetcher.find_library(name.as_bytes())),
            )
            .collect();
        if let Err(fault) = fetcher.tree.fill_paths(&together) {
            fetcher.record(&fault);
        }
        for file in &boot_files {
            let _ = fetcher.prepare_file(file);
        }
        for name in &libraries {
            let _ = fetcher.prepare_library(name.as_bytes());
        }
        let serving = Arc::clone(&fetcher);
        std::thread::Builder::new()
            .name("scar-fetcher".into())
            .spawn(move || serving.serve(listener))?;
        Ok(fetcher)
    }

    /// The socket's path, for the shim (`SCAR_FC_FETCH`); `None` once the tree is whole.
    pub fn socket(&self) -> Option<&Path> {
        (!self.tree.is_complete()).then_some(self.socket.as_path())
    }

    /// The first fetch that failed since the last call, naming the file.
    pub fn take_fault(&self) -> Option<ExecError> {
        self.fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Whether this run's commands asked for files the stored access trace lacks.
    pub fn has_unsaved_trace(&self) -> bool {
        self.tree.has_unsaved_trace()
    }

    /// Stores the image's access trace if this run's commands asked for files it lacked
    /// (`scar_image::trace`). Best effort: the trace is a hint for the next cold start, and
    /// a role that may not write it loses only that (said once per process). Blocks.
    pub fn save_trace(&self) {
        static REFUSED: std::sync::Once = std::sync::Once::new();
        match self.tree.save_trace() {
            Ok(0) => {}
            Ok(entries) => tracing::debug!(entries, "access trace stored"),
            Err(e) => REFUSED.call_once(|| {
                tracing::warn!(error = %e, "cannot store the access trace beside the image: the next cold start fetches in the skeletons' order (SCAR_LAZY_TRACE=0 stops trying)");
            }),
        }
    }

    /// Makes the program at `host` and what it needs whole (see the module head).
    pub fn prepare_program(&self, host: &Path) -> Result<(), LazyFault> {
        let mut seen = HashSet::new();
        self.needs(host, &mut seen)
            .inspect_err(|fault| self.record(fault))?;
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(seen);
        Ok(())
    }

    /// Makes a library that a program loads by name alone (`dlopen("libz.so.1")`) whole,
    /// as the loader would find it in the image's library directories.
    pub fn prepare_library(&self, name: &[u8]) -> Result<(), LazyFault> {
        match self.find_library(name) {
            Some(library) => self.prepare_program(&library),
            None => Ok(()),
        }
    }

    /// Where the loader finds a library named alone: the first of the image's library
    /// directories that has it.
    fn find_library(&self, name: &[u8]) -> Option<PathBuf> {
        if name.contains(&b'/') {
            return None;
        }
        self.library_dirs
            .iter()
            .map(|d| d.join(std::ffi::OsStr::from_bytes(name)))
            .find(|p| p.exists())
    }

    /// Makes one file whole.
    pub fn prepare_file(&self, host: &Path) -> Result<(), LazyFault> {
        self.tree
            .fill_path(host)
            .map(drop)
            .inspect_err(|fault| self.record(fault))
    }

    fn record(&self, fault: &LazyFault) {
        let mut slot = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert_with(|| ExecError::from(fault));
    }

    /// Makes `program` and its closure whole, one level at a time: the files a level names
    /// (interpreter, loader, libraries) are only known once its own are in place, and each
    /// level's are fetched together ([`LazyTree::fill_paths`]).
    fn needs(&self, program: &Path, seen: &mut HashSet<PathBuf>) -> Result<(), LazyFault> {
        let mut level = vec![Need {
            host: program.to_path_buf(),
            program: true,
            scripts: 0,
        }];
        while !level.is_empty() {
            {
                let ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
                level.retain(|need| {
                    seen.len() <= MAX_CLOSURE
                        && seen.insert(need.host.clone())
                        && !ready.contains(&need.host)
                });
            }
            let hosts: Vec<PathBuf> = level.iter().map(|need| need.host.clone()).collect();
            self.tree.fill_paths(&hosts)?;
            let mut next = Vec::new();
            for need in &level {
                self.follow(need, &mut next)?;
            }
            level = next;
        }
        Ok(())
    }

    /// What the file `need` names needs in turn (it is in place): its `#!` interpreter, or
    /// `/bin/sh` for a program that is neither script nor ELF, or an ELF's loader and
    /// libraries; a program the shim cannot follow waits here for the whole tree.
    fn follow(&self, need: &Need, next: &mut Vec<Need>) -> Result<(), LazyFault> {
        let (host, program, scripts) = (&need.host, need.program, need.scripts);
        // Only the tree's own regular files are read: a request may name any path.
        let file = host
            .canonicalize()
            .ok()
            .filter(|p| p.starts_with(&self.root));
        let parsable = file.as_deref().and_then(|p| std::fs::metadata(p).ok());
        if !parsable.is_some_and(|m| m.is_file() && m.len() <= MAX_PARSED_BYTES) {
            return Ok(());
        }
        let Ok(head) = Head::read(host) else {
            // Unreadable: the exec fails by itself, with the system's error.
            return Ok(());
        };
        if let Some(shebang) = rootfs_paths::script::parse(head.bytes()) {
            if scripts < MAX_SCRIPTS {
                next.push(Need {
                    host: self.in_tree(shebang.interpreter),
                    program: true,
                    scripts: scripts + 1,
                });
            }
            return Ok(());
        }
        let Some(elf) = head.elf() else {
            if program {
                next.push(Need {
                    host: self.in_tree(b"/bin/sh"),
                    program: true,
                    scripts: scripts + 1,
                });
            }
            return Ok(());
        };
        let name = file
            .as_deref()
            .and_then(Path::file_name)
            .unwrap_or_default();
        if program && beyond_the_shim(&elf, name.as_encoded_bytes()) {
            return self.tree.fill_all().map(drop);
        }
        let library = |host| Need {
            host,
            program: false,
            scripts,
        };
        if let Some(loader) = &elf.interpreter {
            next.push(library(self.in_tree(loader.as_bytes())));
        }
        // The loader is handed the file itself, and takes `$ORIGIN` from it.
        let origin = file.as_deref().unwrap_or(host);
        let origin = origin.parent().unwrap_or(origin);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for list in &elf.search {
            for dir in list.split(':').filter(|d| !d.is_empty()) {
                dirs.push(match dir.strip_prefix("$ORIGIN") {
                    Some(rest) => origin.join(rest.trim_start_matches('/')),
                    None => self.in_tree(dir.as_bytes()),
                });
            }
        }
        dirs.extend(self.library_dirs.iter().cloned());
        for name in &elf.libraries {
            let found = if name.contains('/') {
                Some(self.in_tree(name.as_bytes()))
            } else {
                dirs.iter().map(|d| d.join(name)).find(|p| p.exists())
            };
            next.extend(found.map(library));
        }
        Ok(())
    }

    /// The host path of a container path (symlinks in the tree are confined, so following
    /// them from here stays inside it).
    fn in_tree(&self, container: &[u8]) -> PathBuf {
        let start = container.iter().take_while(|&&b| b == b'/').count();
        self.tree
            .root()
            .join(std::ffi::OsStr::from_bytes(&container[start..]))
    }

    fn serve(self: Arc<Self>, listener: UnixListener) {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            // Shared so that it is still here to answer when no thread can start (the
            // command has the function's threads): one request at a time rather than a shim
            // left without an answer.
            let stream = Arc::new(stream);
            let (fetcher, answering) = (Arc::clone(&self), Arc::clone(&stream));
            let spawned = std::thread::Builder::new()
                .name("scar-fetch".into())
                .spawn(move || fetcher.answer(&answering));
            if let Err(e) = spawned {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::warn!(
                        error = %e,
                        "no thread can start to answer the shim's file requests (the \
                         command has the function's threads): answering them one at a time"
                    );
                });
                self.answer(&stream);
            }
            if self.tree.is_complete() {
                // Whole: shims that still ask find no socket and carry on at once.
                let _ = std::fs::remove_file(&self.socket);
            }
        }
    }

    fn answer(&self, mut stream: &UnixStream) {
        let mut line = Vec::new();
        let read = BufReader::new(stream)
            .take(fetch::REQUEST_MAX as u64)
            .read_until(b'\n', &mut line);
        let request = read
            .ok()
            .and_then(|_| line.strip_suffix(b"\n"))
            .and_then(Request::parse);
        let started = std::time::Instant::now();
        let result = match request {
            Some(Request::File { dev, ino }) => self
                .tree
                .fill_inode(dev, ino)
                .map(drop)
                .inspect_err(|f| self.record(f)),
            Some(Request::Program(path)) => {
                self.prepare_program(Path::new(std::ffi::OsStr::from_bytes(path)))
            }
            Some(Request::Library(name)) => self.prepare_library(name),
            None => {
                tracing::warn!(request = %String::from_utf8_lossy(&line), "malformed fetch request");
                let mut answer = [0u8; 24];
                let _ = stream.write_all(fetch::encode_answer(libc::EINVAL, &mut answer));
                return;
            }
        };
        let errno = match result {
            Ok(()) => 0,
            Err(fault) => {
                tracing::error!(error = %fault, "a file of the image could not be fetched");
                libc::EIO
            }
        };
        let mut answer = [0u8; 24];
        // How long a program waited: where a lazy cold start's time goes, request by request.
        tracing::trace!(
            request = %String::from_utf8_lossy(&line).trim_end(),
            errno,
            ms = started.elapsed().as_millis() as u64,
            "fetch request answered"
        );
        let _ = stream.write_all(fetch::encode_answer(errno, &mut answer));
        if let (Some(Request::File { dev, ino }), 0) = (request, errno)
            && self
                .filling_neighbours
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            // After the answer, so the caller goes on: the file's frame is decoded (and
            // cached) already, and its neighbours in the image are likely read next. A
            // failure here is met again, and reported, when one of them is asked for.
            if let Err(e) = self.tree.fill_neighbours_of_inode(dev, ino) {
                tracing::debug!(error = %e, "filling a fetched file's neighbours failed");
            }
            self.filling_neighbours.store(false, Ordering::Release);
        }
    }
}

/// Whether a program, run, does what the shim cannot see, so that it starts only on a whole
/// tree: a Go program (its own system calls), a static one, or a static-pie one (a dynamic
/// section too, and the PIE flag a shared library opened by path has not). Not a loader run
/// as a program, whose program the shim prepares itself (its exec.rs), nor the image's
/// `ldconfig`, which runs only to print a cache (`protocol::Ldconfig`) that the exec path
/// prepares.
fn beyond_the_shim(elf: &ElfNeeds, name: &[u8]) -> bool {
    let no_loader = elf.interpreter.is_none() && (!elf.dynamic || elf.pie);
    elf.go || (no_loader && !protocol::is_ldconfig(name) && protocol::loader_named(name).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_the_shim_cannot_follow_wait_for_the_whole_tree() {
        let elf = |interpreter: Option<&str>, dynamic, pie, go| ElfNeeds {
            interpreter: interpreter.map(str::to_owned),
            dynamic,
            pie,
            go,
            ..ElfNeeds::default()
        };
        let loader = Some("/lib64/ld-linux-x86-64.so.2");
        assert!(beyond_the_shim(
            &elf(None, false, false, false),
            b"busybox.static"
        ));
        assert!(beyond_the_shim(
            &elf(None, true, true, false),
            b"tool-static-pie"
        ));
        assert!(beyond_the_shim(
            &elf(loader, true, true, true),
            b"go-program"
        ));
        assert!(!beyond_the_shim(
            &elf(loader, true, true, false),
            b"python3.11"
        ));
        assert!(!beyond_the_shim(&elf(None, true, false, false), b"_ssl.so"));
        assert!(!beyond_the_shim(&elf(None, true, true, false), b"ldconfig"));
        assert!(!beyond_the_shim(
            &elf(None, true, false, false),
            b"ld-linux-x86-64.so.2"
        ));
    }
}
