//! The lines of `/etc/passwd`, `/etc/group` and `/etc/shadow`, as libc's parsers read them.
//!
//! The shim answers user and group lookups from the image's files. glibc lends it its own
//! parsers (`fgetpwent_r`, `fgetspent_r`); musl has none to lend, so the shim parses with
//! these, which follow musl's rules: a passwd line has seven `:`-separated fields, a group
//! line four, a shadow line nine, ids are decimal, and a line that breaks the rules is
//! skipped.

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

/// One `/etc/shadow` entry; a numeric field left empty is -1, as musl reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowLine<'a> {
    pub name: &'a [u8],
    pub password: &'a [u8],
    /// Last change, minimum and maximum age, warning, inactivity, expiry, flag.
    pub numbers: [i64; 7],
}

/// A shadow line, or `None` for one to skip. musl's rules: each numeric field is empty (-1)
/// or starts with digits, read up to the first other byte, which must be the `:` that
/// ends it; the last must end the line, newline included (a last line without one is
/// skipped), and anything after it is a line that breaks the rules.
pub fn shadow_line(line: &[u8]) -> Option<ShadowLine<'_>> {
    let line = line.strip_suffix(b"\n")?;
    let mut fields = line.splitn(3, |&b| b == b':');
    let (name, password, rest) = (fields.next()?, fields.next()?, fields.next()?);
    let mut numbers = [0_i64; 7];
    let mut fields = rest.split(|&b| b == b':');
    for slot in &mut numbers {
        *slot = leading_number(fields.next()?)?;
    }
    fields.next().is_none().then_some(ShadowLine {
        name,
        password,
        numbers,
    })
}

/// musl's `xatol` on one field: -1 when empty; otherwise its digits, and nothing else.
fn leading_number(field: &[u8]) -> Option<i64> {
    if field.is_empty() {
        return Some(-1);
    }
    field.iter().try_fold(0_i64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.wrapping_mul(10).wrapping_add(i64::from(d - b'0')))
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
    fn shadow_lines_read_empty_numbers_as_minus_one() {
        let line = shadow_line(b"alice:$6$salt$hash:19000:0:99999:7:::\n").unwrap();
        assert_eq!(
            line,
            ShadowLine {
                name: b"alice",
                password: b"$6$salt$hash",
                numbers: [19000, 0, 99999, 7, -1, -1, -1],
            }
        );
        let all_empty = shadow_line(b"svc:!:::::::\n").unwrap();
        assert_eq!(all_empty.numbers, [-1; 7]);
        assert_eq!(all_empty.password, b"!");
    }

    #[test]
    fn shadow_lines_that_break_musls_rules_are_skipped() {
        for bad in [
            &b"alice:x:1:2:3:4:5:6:7"[..],
            b"alice:x:1:2:3:4:5:6\n",
            b"alice:x:1:2:3:4:5:6:7:8\n",
            b"alice:x:1a:2:3:4:5:6:7\n",
            b"alice:x: 1:2:3:4:5:6:7\n",
            b"alice\n",
        ] {
            assert_eq!(shadow_line(bad), None, "{:?}", core::str::from_utf8(bad));
        }
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
