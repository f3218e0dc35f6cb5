//! Where POSIX named shared memory and semaphores live: `shm_open("/x")` is the file
//! `/dev/shm/x`, `sem_open("/x")` is `/dev/shm/sem.x`, as glibc and musl name them.
//!
//! Lambda has no /dev/shm, so Python's `multiprocessing` Pool, Queue and Lock (all built on
//! `sem_open`) fail there with "Function not implemented". bootstrap maps the container's
//! /dev/shm to a directory of its own, and the shim implements these calls over that path,
//! since libc opens it with an internal call that no wrapper sees.

use crate::buf::PathBuf;

/// The container directory that holds them.
pub const SHM_DIR: &str = "/dev/shm";

/// The longest name a directory entry may have (Linux `NAME_MAX`).
const NAME_MAX: usize = 255;

/// glibc 2.34 and later build the path in a buffer for `/dev/shm/`, the `sem.` prefix and
/// the name: a name that overflows it is `EINVAL`, one that fits but makes too long a file
/// name is the kernel's `ENAMETOOLONG`. Before 2.34 a name of `NAME_MAX - 1` bytes or more
/// is `EINVAL` (both measured, with 2.36 and 2.31).
const GLIBC_NAME_BUFFER: usize = "/dev/shm/".len() + 1 + "sem.".len() + NAME_MAX;

/// The libc whose names these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Libc {
    /// glibc `(major, minor)`.
    Glibc(u32, u32),
    Musl,
}

/// Why a name cannot name a segment or a semaphore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// `EINVAL`: empty, a `/` after the leading ones, `.` or `..` (musl), or longer than
    /// glibc allows.
    Invalid,
    /// `ENAMETOOLONG`: longer than musl allows.
    TooLong,
}

/// What a name is for. glibc files a semaphore as `sem.NAME`, musl as `NAME`, beside the
/// shared memory segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Semaphore,
}

/// The container path of `name` as the image's `libc` names it (leading `/`s dropped, as
/// both do) into `out`.
pub fn container_path(
    name: &[u8],
    kind: Kind,
    libc: Libc,
    out: &mut PathBuf,
) -> Result<(), NameError> {
    let start = name.iter().position(|&b| b != b'/').unwrap_or(name.len());
    let name = &name[start..];
    let prefix: &[u8] = match (kind, libc) {
        (Kind::Semaphore, Libc::Glibc(..)) => b"sem.",
        _ => b"",
    };
    // musl refuses `.` and `..`; glibc opens the directory they name (/dev/shm, /dev) as
    // a segment, or prefixes them as a semaphore.
    let musl_refuses = libc == Libc::Musl && (name == b"." || name == b"..");
    if name.is_empty() || name.contains(&b'/') || musl_refuses {
        return Err(NameError::Invalid);
    }
    let glibc_refuses = |major, minor| {
        if (major, minor) >= (2, 34) {
            SHM_DIR.len() + 1 + prefix.len() + name.len() >= GLIBC_NAME_BUFFER
        } else {
            name.len() + 1 >= NAME_MAX
        }
    };
    match libc {
        Libc::Glibc(major, minor) if glibc_refuses(major, minor) => {
            return Err(NameError::Invalid);
        }
        Libc::Musl if name.len() > NAME_MAX => return Err(NameError::TooLong),
        _ => {}
    }
    out.set(SHM_DIR.as_bytes())
        .and_then(|()| out.push(b"/"))
        .and_then(|()| out.push(prefix))
        .and_then(|()| out.push(name))
        .map_err(|_| NameError::TooLong)
}

/// What tells apart, besides the file, the opens of a semaphore that one process keeps: a
/// second `sem_open` of the same file gets the first one's address only when this is the
/// same. musl looks at the file alone (0); glibc before 2.34 at the name without its leading
/// `/`s, glibc 2.34 and later at the name as given, so that `/x` and `x` are two mappings of
/// one semaphore there (measured with 2.36 and 2.31). The name is kept as a 64-bit FNV-1a
/// hash, which needs no storage for the name.
pub fn mapping_key(name: &[u8], libc: Libc) -> u64 {
    let key = match libc {
        Libc::Musl => return 0,
        Libc::Glibc(major, minor) if (major, minor) >= (2, 34) => name,
        Libc::Glibc(..) => {
            let start = name.iter().position(|&b| b != b'/').unwrap_or(name.len());
            &name[start..]
        }
    };
    key.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_keys_follow_each_libcs_rule() {
        const BULLSEYE: Libc = Libc::Glibc(2, 31);
        assert_eq!(mapping_key(b"/x", Musl), mapping_key(b"y", Musl));
        assert_eq!(mapping_key(b"//x", BULLSEYE), mapping_key(b"x", BULLSEYE));
        assert_ne!(mapping_key(b"/x", BULLSEYE), mapping_key(b"/y", BULLSEYE));
        assert_ne!(mapping_key(b"/x", BOOKWORM), mapping_key(b"x", BOOKWORM));
        assert_eq!(mapping_key(b"/x", BOOKWORM), mapping_key(b"/x", BOOKWORM));
    }

    fn path(name: &[u8], kind: Kind, libc: Libc) -> Result<std::string::String, NameError> {
        let mut out = PathBuf::new();
        container_path(name, kind, libc, &mut out)?;
        Ok(std::string::String::from_utf8(out.as_bytes().to_vec()).unwrap())
    }

    use Kind::{Memory, Semaphore};
    use Libc::Musl;
    const BOOKWORM: Libc = Libc::Glibc(2, 36);

    #[test]
    fn names_sit_in_dev_shm_with_the_leading_slashes_dropped() {
        assert_eq!(
            path(b"/mp-abc", Semaphore, BOOKWORM).unwrap(),
            "/dev/shm/sem.mp-abc"
        );
        assert_eq!(
            path(b"/mp-abc", Semaphore, Musl).unwrap(),
            "/dev/shm/mp-abc"
        );
        assert_eq!(
            path(b"//psm_1", Memory, BOOKWORM).unwrap(),
            "/dev/shm/psm_1"
        );
        assert_eq!(path(b"plain", Memory, Musl).unwrap(), "/dev/shm/plain");
    }

    #[test]
    fn names_that_would_leave_the_directory_are_invalid() {
        for libc in [BOOKWORM, Musl] {
            for bad in [&b""[..], b"/", b"///", b"/a/b", b"a/"] {
                assert_eq!(path(bad, Memory, libc), Err(NameError::Invalid), "{bad:?}");
            }
            assert_eq!(path(b"...", Memory, libc).unwrap(), "/dev/shm/...");
        }
        for dots in [&b"."[..], b"/..", b".."] {
            assert_eq!(
                path(dots, Memory, Musl),
                Err(NameError::Invalid),
                "{dots:?}"
            );
            assert_eq!(
                path(dots, Semaphore, Musl),
                Err(NameError::Invalid),
                "{dots:?}"
            );
        }
        // As glibc 2.36 does: the directory itself, or an ordinary name after the prefix.
        assert_eq!(path(b"/.", Memory, BOOKWORM).unwrap(), "/dev/shm/.");
        assert_eq!(path(b"..", Semaphore, BOOKWORM).unwrap(), "/dev/shm/sem...");
    }

    /// The edges measured with glibc 2.36, 2.31 and musl 1.2.3 (`shm_open` and `sem_open`
    /// of names of 250 to 300 bytes): what glibc does not refuse itself, a file name past
    /// NAME_MAX, is left for the kernel to refuse.
    #[test]
    fn long_names_end_where_each_libc_ends_them() {
        let n = |len: usize| std::vec![b'n'; len];
        assert!(path(&n(259), Memory, BOOKWORM).is_ok());
        assert_eq!(path(&n(260), Memory, BOOKWORM), Err(NameError::Invalid));
        assert!(path(&n(255), Semaphore, BOOKWORM).is_ok());
        assert_eq!(path(&n(256), Semaphore, BOOKWORM), Err(NameError::Invalid));
        assert!(path(&n(255), Semaphore, Musl).is_ok());
        assert_eq!(path(&n(256), Semaphore, Musl), Err(NameError::TooLong));
        assert_eq!(path(&n(300), Memory, Musl), Err(NameError::TooLong));
        let bullseye = Libc::Glibc(2, 31);
        assert!(path(&n(253), Memory, bullseye).is_ok());
        assert_eq!(path(&n(254), Memory, bullseye), Err(NameError::Invalid));
        assert!(path(&n(253), Semaphore, bullseye).is_ok());
        assert_eq!(path(&n(254), Semaphore, bullseye), Err(NameError::Invalid));
    }
}
