//! Fake root's credentials across an exec.
//!
//! The kernel keeps a process's ids through `execve` (the saved ids become the effective
//! ones), so a program that drops to another user and then runs another program (`su`,
//! `runuser`, `setpriv`, a package script's `start-stop-daemon --chuid`) starts that one as
//! the user it dropped to. Under fake root the ids are the shim's, kept in the process's
//! memory, so the exec path hands them on in [`CREDS`](crate::protocol::CREDS) and the
//! new program's shim starts from them. A program started without it is root, as a fresh
//! `bootstrap run --fakeroot` is.

use crate::buf::{decimal, parse_decimal};

/// Supplementary groups kept, as many as `setgroups` accepts under fake root.
pub const MAX_GROUPS: usize = 64;

/// One process's fake credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    /// Real, effective, saved.
    pub uids: [u32; 3],
    /// Real, effective, saved.
    pub gids: [u32; 3],
    pub groups: [u32; MAX_GROUPS],
    pub group_count: usize,
}

impl Creds {
    /// Root in group 0 alone, as under a real chroot.
    pub const ROOT: Self = Self {
        uids: [0; 3],
        gids: [0; 3],
        groups: [0; MAX_GROUPS],
        group_count: 1,
    };

    pub fn groups(&self) -> &[u32] {
        &self.groups[..self.group_count.min(MAX_GROUPS)]
    }

    /// What the program an exec starts holds: the saved ids become the effective ones.
    pub fn after_exec(mut self) -> Self {
        self.uids[2] = self.uids[1];
        self.gids[2] = self.gids[1];
        self
    }

    /// The variable's value, `ruid,euid,suid,rgid,egid,sgid[,group…]`, written to `out`;
    /// `None` when it does not fit.
    pub fn write<'a>(&self, out: &'a mut [u8]) -> Option<&'a [u8]> {
        let mut len = 0;
        let mut digits = [0; 20];
        let ids = self.uids.iter().chain(&self.gids).chain(self.groups());
        for (i, &id) in ids.enumerate() {
            let number = decimal(u64::from(id), &mut digits);
            let sep = usize::from(i > 0);
            let end = len + sep + number.len();
            let dest = out.get_mut(len..end)?;
            if sep == 1 {
                dest[0] = b',';
            }
            dest[sep..].copy_from_slice(number);
            len = end;
        }
        Some(&out[..len])
    }

    /// The value [`Creds::write`] wrote; `None` for anything else (the shim then starts
    /// as root).
    pub fn parse(text: &[u8]) -> Option<Self> {
        let mut creds = Self::ROOT;
        creds.group_count = 0;
        let mut count = 0;
        for field in text.split(|&b| b == b',') {
            let id = parse_decimal(field)?;
            match count {
                0..=2 => creds.uids[count] = id,
                3..=5 => creds.gids[count - 3] = id,
                n => *creds.groups.get_mut(n - 6)? = id,
            }
            count += 1;
        }
        if count < 6 {
            return None;
        }
        creds.group_count = count - 6;
        Some(creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_credentials_read_back_the_same() {
        let mut creds = Creds::ROOT;
        creds.uids = [0, 65534, 42];
        creds.gids = [7, 8, 9];
        creds.groups[..3].copy_from_slice(&[4, 27, u32::MAX - 1]);
        creds.group_count = 3;
        let mut out = [0; 1024];
        let text = creds.write(&mut out).unwrap();
        assert_eq!(text, b"0,65534,42,7,8,9,4,27,4294967294");
        assert_eq!(Creds::parse(text), Some(creds));

        let mut none = Creds::ROOT;
        none.group_count = 0;
        let text = none.write(&mut out).unwrap();
        assert_eq!(text, b"0,0,0,0,0,0");
        assert_eq!(Creds::parse(text), Some(none));
    }

    #[test]
    fn an_exec_makes_the_saved_ids_the_effective_ones() {
        let mut creds = Creds::ROOT;
        creds.uids = [0, 65534, 0];
        creds.gids = [0, 100, 0];
        let after = creds.after_exec();
        assert_eq!(after.uids, [0, 65534, 65534]);
        assert_eq!(after.gids, [0, 100, 100]);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b""[..],
            b"0,0,0,0,0",
            b"0,0,0,0,0,x",
            b"0,0,0,0,0,0,",
            b"4294967296,0,0,0,0,0",
            b"-1,0,0,0,0,0",
        ] {
            assert_eq!(Creds::parse(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        let mut many = [0_u8; 512];
        let mut len = 0;
        for i in 0..(6 + MAX_GROUPS + 1) {
            if i > 0 {
                many[len] = b',';
                len += 1;
            }
            many[len] = b'1';
            len += 1;
        }
        assert_eq!(
            Creds::parse(&many[..len]),
            None,
            "more groups than setgroups takes"
        );
    }

    #[test]
    fn a_short_buffer_gives_nothing() {
        let mut out = [0; 5];
        assert_eq!(Creds::ROOT.write(&mut out), None);
    }
}
