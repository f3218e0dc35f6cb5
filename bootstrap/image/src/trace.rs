//! The access trace of a lazy tree: which of its placeholders the commands of a cold start
//! asked for, in the order they asked, stored beside the staged image so that the next cold
//! start fetches those first, in that order, while its command starts ([`crate::lazy`]).
//!
//! A file is named by where its bytes lie in the image (`layer offset`), not by its path:
//! that is stable for one staged image, needs no escaping, and tells whoever reads the bucket
//! nothing about the image's names. A trace is a hint for an order, never trusted for more:
//! an entry that names no placeholder is skipped, a line that does not parse ends the trace
//! (what came before is kept), and at most [`MAX_ENTRIES`] are read.

use std::fmt::Write as _;

/// The first line of a trace: a later format gets a new one, and old runtimes ignore it.
pub const HEADER: &str = "scar-trace 1";
/// Entries read from one trace at most (an image has fewer files than this).
pub const MAX_ENTRIES: usize = 262_144;
/// Where, inside a staged layout, the trace of the image with this manifest digest lives;
/// `None` for a digest that is not `sha256:` and 64 hex digits.
pub fn location(manifest_digest: &str) -> Option<String> {
    crate::oci::sha256_hex(manifest_digest).map(|hex| format!("scar/trace-{hex}"))
}

/// A placeholder, by where its bytes lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileAt {
    /// Its layer, from 0.
    pub layer: usize,
    /// Where its bytes begin in that layer's tar.
    pub offset: u64,
}

/// The stored form.
pub fn encode(entries: &[FileAt]) -> Vec<u8> {
    let mut text = String::with_capacity(HEADER.len() + 1 + entries.len() * 14);
    text.push_str(HEADER);
    text.push('\n');
    for entry in entries {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{} {}", entry.layer, entry.offset);
    }
    text.into_bytes()
}

/// The entries of a stored trace, in order, without repeats; nothing unless it starts with
/// [`HEADER`].
pub fn parse(bytes: &[u8]) -> Vec<FileAt> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::new();
    let mut entries = Vec::new();
    for line in lines.take(MAX_ENTRIES) {
        let Some((layer, offset)) = line.split_once(' ') else {
            break;
        };
        let (Ok(layer), Ok(offset)) = (layer.parse(), offset.parse()) else {
            break;
        };
        let entry = FileAt { layer, offset };
        if seen.insert(entry) {
            entries.push(entry);
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(layer: usize, offset: u64) -> FileAt {
        FileAt { layer, offset }
    }

    #[test]
    fn a_trace_reads_back_as_written() {
        let entries = vec![at(0, 512), at(1, 0), at(0, 4_294_967_808), at(7, 3)];
        assert_eq!(parse(&encode(&entries)), entries);
        assert_eq!(parse(&encode(&[])), Vec::<FileAt>::new());
    }

    #[test]
    fn a_foreign_or_damaged_trace_gives_only_what_parses_before_the_damage() {
        assert!(parse(b"scar-trace 2\n0 512\n").is_empty());
        assert!(parse(b"\xff\xfe").is_empty());
        assert!(parse(b"").is_empty());
        assert_eq!(
            parse(b"scar-trace 1\n0 512\n0 512\n1 9\n1 -4\n2 2\n"),
            vec![at(0, 512), at(1, 9)]
        );
        assert_eq!(
            parse(b"scar-trace 1\n0 512\n0 99999999999999999999999\n"),
            vec![at(0, 512)]
        );
    }

    #[test]
    fn a_huge_trace_is_cut_at_the_cap() {
        let entries: Vec<FileAt> = (0..MAX_ENTRIES as u64 + 10).map(|o| at(0, o)).collect();
        assert_eq!(parse(&encode(&entries)).len(), MAX_ENTRIES);
    }

    #[test]
    fn only_a_well_formed_digest_names_a_trace() {
        let hex = "ab".repeat(32);
        assert_eq!(
            location(&format!("sha256:{hex}")),
            Some(format!("scar/trace-{hex}"))
        );
        assert_eq!(location("sha256:../../etc"), None);
        assert_eq!(location(&format!("sha512:{hex}")), None);
    }
}
