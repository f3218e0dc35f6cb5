//! Which process a path under `/proc` names a file of: the one rule for
//! `/proc/{self,thread-self,PID}/FILE` and `/proc/{self,PID}/task/TID/FILE`, which the
//! shim's answers for `cmdline`, `status` and `exe` share.

use crate::buf::parse_decimal;

/// Whose file it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// `/proc/self/…` (a task of it too).
    Caller,
    /// `/proc/thread-self/…`.
    CallingThread,
    /// `/proc/PID/…` (a task of it too): the caller's own or another's.
    Pid(u32),
}

/// `Some` when `path` is `/proc/{self,thread-self,PID}/FILE` or
/// `/proc/{self,PID}/task/TID/FILE` for this `file`.
pub fn process_file(path: &[u8], file: &[u8]) -> Option<Process> {
    let rest = path
        .strip_prefix(b"/proc/")?
        .strip_suffix(file)?
        .strip_suffix(b"/")?;
    let (process, task) = match rest.iter().position(|&b| b == b'/') {
        Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
        None => (rest, None),
    };
    if let Some(task) = task {
        parse_decimal(task.strip_prefix(b"task/")?)?;
        if process == b"thread-self" {
            return None;
        }
    }
    match process {
        b"self" => Some(Process::Caller),
        b"thread-self" => Some(Process::CallingThread),
        digits => parse_decimal(digits).map(Process::Pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_threads_and_what_is_not_one() {
        for (path, whose) in [
            (&b"/proc/self/exe"[..], Process::Caller),
            (b"/proc/thread-self/exe", Process::CallingThread),
            (b"/proc/42/exe", Process::Pid(42)),
            (b"/proc/self/task/7/exe", Process::Caller),
            (b"/proc/42/task/43/exe", Process::Pid(42)),
        ] {
            assert_eq!(process_file(path, b"exe"), Some(whose), "{path:?}");
        }
        for path in [
            &b"/proc/42/cwd"[..],
            b"/proc/42/xexe",
            b"/proc/x/exe",
            b"/proc/42/task/exe",
            b"/proc/42/task/x/exe",
            b"/proc/thread-self/task/7/exe",
            b"/proc//exe",
            b"/proc/exe",
            b"/tmp/42/exe",
        ] {
            assert_eq!(process_file(path, b"exe"), None, "{path:?}");
        }
    }
}
