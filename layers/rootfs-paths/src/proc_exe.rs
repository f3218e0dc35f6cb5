//! What `/proc/<pid>/exe` names for another program of the container.
//!
//! Every program here runs as the image's loader with the program as its argument, so the
//! kernel's `exe` link of any of them is the loader. A process's own `/proc/self/exe` is
//! answered from its shim's state (`SCAR_FC_EXE`); another process's is read where the
//! kernel keeps that process's environment as it started, `/proc/<pid>/environ`, which
//! holds the same `SCAR_FC_EXE` (the exec put it there). psutil's `Process.exe()`,
//! `killall /usr/bin/NAME` and `pidof` read the link this way. A process not started by the
//! shim (the host's, a static program) has no such entry and keeps the kernel's link.

use crate::proc_path::{Process, process_file};

/// True for `/proc/PID/exe` and `/proc/PID/task/TID/exe` (`self` is the caller's own, which
/// the shim answers without reading a file).
pub fn names_a_process_exe(path: &[u8]) -> bool {
    matches!(process_file(path, b"exe"), Some(Process::Pid(_)))
}

/// The directory of the process (or thread) whose `exe` link `path` is, with its `/`: where
/// its `environ` is.
pub fn process_dir(path: &[u8]) -> Option<&[u8]> {
    path.strip_suffix(b"exe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exe_links_of_processes_and_threads() {
        assert!(names_a_process_exe(b"/proc/42/exe"));
        assert!(names_a_process_exe(b"/proc/42/task/43/exe"));
        for path in [
            &b"/proc/self/exe"[..],
            b"/proc/42/cwd",
            b"/proc/x/exe",
            b"/proc/42/task/exe",
            b"/proc//exe",
            b"/tmp/42/exe",
        ] {
            assert!(!names_a_process_exe(path), "{path:?}");
        }
        assert_eq!(
            process_dir(b"/proc/42/task/43/exe"),
            Some(&b"/proc/42/task/43/"[..])
        );
    }
}
