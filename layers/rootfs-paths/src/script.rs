//! `#!` lines, parsed the way Linux does (fs/binfmt_script.c).

/// Bytes Linux reads to find the interpreter line (`BINPRM_BUF_SIZE`).
pub const SHEBANG_MAX: usize = 256;

/// The interpreter and its one optional argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shebang<'a> {
    pub interpreter: &'a [u8],
    pub argument: Option<&'a [u8]>,
}

/// Parses the head of a file. Like Linux: blanks after `#!` are skipped, the interpreter
/// ends at the first blank, and the rest of the line, trimmed, is one argument.
pub fn parse(head: &[u8]) -> Option<Shebang<'_>> {
    let rest = head.strip_prefix(b"#!")?;
    let rest = &rest[..rest.len().min(SHEBANG_MAX - 2)];
    let line = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => &rest[..end],
        None => rest,
    };
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = trim(line, blank);
    let end = line.iter().position(blank).unwrap_or(line.len());
    let (interpreter, tail) = line.split_at(end);
    if interpreter.is_empty() {
        return None;
    }
    let tail = trim(tail, blank);
    Some(Shebang {
        interpreter,
        argument: (!tail.is_empty()).then_some(tail),
    })
}

fn trim(mut s: &[u8], blank: impl Fn(&u8) -> bool) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !blank(first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !blank(last) {
            break;
        }
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_and_one_argument() {
        let s = parse(b"#!/bin/sh -e\necho hi\n");
        assert_eq!(
            s,
            Some(Shebang {
                interpreter: b"/bin/sh",
                argument: Some(b"-e")
            })
        );
        let s = parse(b"#! /usr/bin/env  python3 -u \n");
        assert_eq!(
            s,
            Some(Shebang {
                interpreter: b"/usr/bin/env",
                argument: Some(b"python3 -u")
            }),
            "Linux passes everything after the interpreter as one argument"
        );
        assert_eq!(
            parse(b"#!/bin/bash"),
            Some(Shebang {
                interpreter: b"/bin/bash",
                argument: None
            })
        );
    }

    #[test]
    fn a_carriage_return_stays_part_of_the_name_as_in_linux() {
        assert_eq!(
            parse(b"#!/bin/sh\r\n").map(|s| s.interpreter),
            Some(&b"/bin/sh\r"[..])
        );
    }

    #[test]
    fn not_a_script() {
        assert_eq!(parse(b"\x7fELF"), None);
        assert_eq!(parse(b"#!\n"), None);
        assert_eq!(parse(b"echo hi"), None);
    }
}
