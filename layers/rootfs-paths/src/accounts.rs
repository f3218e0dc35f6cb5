//! The lines of `/etc/passwd` and `/etc/group`, as libc's parsers read them.
//!
//! The shim answers user and group lookups from the image's files. glibc lends it its own
//! parser (`fgetpwent_r`); musl has none to lend, so the shim parses with these, which
//! follow musl's rules: a passwd line has seven `:`-separated fields, a group line four,
//! ids are decimal, and a line that breaks the rules is skipped.

use crate::buf::parse_decimal;

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswdLine<'a> {
    pub name: &'a [u8],
    pub password: &'a [u8],
    pub uid: u32,
    pub gid: u32,
    pub gecos: &'a [u8],
    pub dir: &'a [u8],
    pub shell: &'a [u8],
}

/// One `/etc/group` entry; `members` is the comma-separated list as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLine<'a> {
    pub name: &'a [u8],
    pub password: &'a [u8],
    pub gid: u32,
    pub members: &'a [u8],
}

impl<'a> GroupLine<'a> {
    /// The member names, empty ones skipped.
    pub fn members(&self) -> impl Iterator<Item = &'a [u8]> {
        self.members.split(|&b| b == b',').filter(|m| !m.is_empty())
    }
}

/// A passwd line (its newline taken off or not), or `None` for one to skip.
pub fn passwd_line(line: &[u8]) -> Option<PasswdLine<'_>> {
    let mut fields = trim_newline(line).splitn(7, |&b| b == b':');
    let mut next = || fields.next();
    let (name, password, uid, gid, gecos, dir, shell) = (
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
    );
    Some(PasswdLine {
        name,
        password,
        uid: parse_decimal(uid)?,
        gid: parse_decimal(gid)?,
        gecos,
        dir,
        shell,
    })
}

/// A group line, or `None` for one to skip.
pub fn group_line(line: &[u8]) -> Option<GroupLine<'_>> {
    let mut fields = trim_newline(line).splitn(4, |&b| b == b':');
    let mut next = || fields.next();
    let (name, password, gid, members) = (next()?, next()?, next()?, next()?);
    Some(GroupLine {
        name,
        password,
        gid: parse_decimal(gid)?,
        members,
    })
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_give_their_seven_fields() {
        let line = passwd_line(b"alice:x:1234:4321:Alice A,,,:/home/alice:/bin/sh\n").unwrap();
        assert_eq!(
            line,
            PasswdLine {
                name: b"alice",
                password: b"x",
                uid: 1234,
                gid: 4321,
                gecos: b"Alice A,,,",
                dir: b"/home/alice",
                shell: b"/bin/sh",
            }
        );
        let empty_fields = passwd_line(b"svc::0:0:::").unwrap();
        assert_eq!((empty_fields.uid, empty_fields.shell), (0, &b""[..]));
    }

    #[test]
    fn group_lines_give_their_members() {
        let line = group_line(b"crew:x:4321:alice,,bob\n").unwrap();
        assert_eq!((line.name, line.gid), (&b"crew"[..], 4321));
        let members: std::vec::Vec<&[u8]> = line.members().collect();
        assert_eq!(members, [&b"alice"[..], b"bob"]);
        assert_eq!(group_line(b"root:x:0:").unwrap().members().count(), 0);
    }

    #[test]
    fn lines_that_break_the_rules_are_skipped() {
        for bad in [
            &b""[..],
            b"# a comment",
            b"alice:x:1234:4321:gecos:/home",
            b"alice:x:12a:4321:g:/h:/bin/sh",
            b"alice:x::4321:g:/h:/bin/sh",
            b"alice:x:4294967296:0:g:/h:/bin/sh",
        ] {
            assert_eq!(passwd_line(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        for bad in [&b"crew:x:4321"[..], b"crew:x:-1:", b"crew"] {
            assert_eq!(group_line(bad), None, "{:?}", core::str::from_utf8(bad));
        }
    }
}
