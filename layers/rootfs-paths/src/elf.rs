//! Just enough ELF to find a program's dynamic loader (`PT_INTERP`) and its own library
//! search path (`DT_RUNPATH`, `DT_RPATH`).

use core::ops::Range;

/// Bytes to read from the start of a program; `PT_INTERP` sits well inside the first page.
pub const HEAD_LEN: usize = 4096;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
/// Bytes of a dynamic section read for its search path: 256 entries, more than any but
/// the most library-laden program has before its `DT_RUNPATH`.
pub const DYNAMIC_READ: usize = 4096;

/// What the head of an executable file says about how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfKind {
    NotElf,
    /// A 64-bit little-endian ELF with no `PT_INTERP`: static or static-pie.
    Static,
    /// The loader path's byte range inside the head.
    Dynamic(Range<usize>),
    /// ELF that this parser does not read (32-bit, big-endian) or whose headers lie past
    /// the head: the kernel is left to judge it.
    Other,
}

/// The C library a loader belongs to, which decides the shim build and loader options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderKind {
    Glibc,
    Musl,
}

impl LoaderKind {
    pub fn of(interpreter: &[u8]) -> Self {
        let name = interpreter
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or(interpreter);
        if name.starts_with(b"ld-musl") {
            Self::Musl
        } else {
            Self::Glibc
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// Classifies a file from its first bytes (up to [`HEAD_LEN`]).
pub fn classify(head: &[u8]) -> ElfKind {
    if !head.starts_with(b"\x7fELF") {
        return ElfKind::NotElf;
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian.
    if head.get(4) != Some(&2) || head.get(5) != Some(&1) {
        return ElfKind::Other;
    }
    dynamic_loader(head).unwrap_or(ElfKind::Other)
}

/// The offsets of the program headers within the head; `None` if the table does not fit.
fn program_headers(head: &[u8]) -> Option<impl Iterator<Item = usize>> {
    let phoff = u64_at(head, 0x20)?;
    let phentsize = usize::from(u16_at(head, 0x36)?);
    let phnum = usize::from(u16_at(head, 0x38)?);
    let end = phoff.checked_add(phnum.checked_mul(phentsize)?)?;
    (phentsize >= 0x38 && end <= head.len()).then(|| (0..phnum).map(move |i| phoff + i * phentsize))
}

fn dynamic_loader(head: &[u8]) -> Option<ElfKind> {
    for ph in program_headers(head)? {
        if u32_at(head, ph)? != PT_INTERP {
            continue;
        }
        let offset = u64_at(head, ph + 0x08)?;
        let size = u64_at(head, ph + 0x20)?;
        let bytes = head.get(offset..offset.checked_add(size)?)?;
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        return Some(ElfKind::Dynamic(offset..offset + len));
    }
    Some(ElfKind::Static)
}

/// The file range of a program's dynamic section (`PT_DYNAMIC`), from its head.
pub fn dynamic_range(head: &[u8]) -> Option<Range<usize>> {
    let ph = program_headers(head)?.find(|&ph| u32_at(head, ph) == Some(PT_DYNAMIC))?;
    let offset = u64_at(head, ph + 0x08)?;
    Some(offset..offset.checked_add(u64_at(head, ph + 0x20)?)?)
}

/// Where a program's own library search path lies in its file: `DT_RUNPATH`'s string, or
/// `DT_RPATH`'s when there is no `DT_RUNPATH` (glibc ignores `DT_RPATH` beside one), given
/// the head (whose `PT_LOAD`s map the string table's address to the file) and the start of
/// the dynamic section.
pub fn own_search_path_at(head: &[u8], dynamic: &[u8]) -> Option<usize> {
    let (mut strtab, mut runpath, mut rpath) = (None, None, None);
    for entry in dynamic.chunks_exact(16) {
        let value = u64::from_le_bytes(entry.get(8..16)?.try_into().ok()?);
        match u64::from_le_bytes(entry.get(..8)?.try_into().ok()?) {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(value),
            DT_RPATH => rpath = Some(value),
            DT_RUNPATH => runpath = Some(value),
            _ => {}
        }
    }
    let index = usize::try_from(runpath.or(rpath)?).ok()?;
    file_offset(head, strtab?)?.checked_add(index)
}

/// The file offset of virtual address `address`, through the `PT_LOAD` holding it.
fn file_offset(head: &[u8], address: u64) -> Option<usize> {
    let address = usize::try_from(address).ok()?;
    program_headers(head)?.find_map(|ph| {
        if u32_at(head, ph)? != PT_LOAD {
            return None;
        }
        let (offset, start, size) = (
            u64_at(head, ph + 0x08)?,
            u64_at(head, ph + 0x10)?,
            u64_at(head, ph + 0x20)?,
        );
        (start <= address && address < start.checked_add(size)?)
            .then(|| offset.checked_add(address - start))
            .flatten()
    })
}

/// One directory of a program's own search path, as the loader would search it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnDir<'a> {
    /// `$ORIGIN` (or `${ORIGIN}`), the directory of the program's file, then this (empty
    /// or starting with `/`).
    FromOrigin(&'a [u8]),
    /// An absolute container path.
    Absolute(&'a [u8]),
}

/// The entries of a `DT_RUNPATH`/`DT_RPATH` string that name a directory wherever the
/// program runs from: absolute ones and those under `$ORIGIN`. Entries with other tokens
/// (`$LIB`, `$PLATFORM`) and relative ones (searched from the working directory) are left
/// to the loader, which still searches them after these.
pub fn own_search_dirs(list: &[u8]) -> impl Iterator<Item = OwnDir<'_>> {
    list.split(|&b| b == b':').filter_map(|entry| {
        let rest = entry
            .strip_prefix(b"$ORIGIN")
            .or_else(|| entry.strip_prefix(b"${ORIGIN}"));
        match rest {
            Some(rest) if (rest.is_empty() || rest.starts_with(b"/")) && !rest.contains(&b'$') => {
                Some(OwnDir::FromOrigin(rest))
            }
            Some(_) => None,
            None if entry.starts_with(b"/") && !entry.contains(&b'$') => {
                Some(OwnDir::Absolute(entry))
            }
            None => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn elf(interp: Option<&[u8]>) -> Vec<u8> {
        let mut h = std::vec![0u8; 0x200];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        h[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        h[64..68].copy_from_slice(&6u32.to_le_bytes()); // PT_PHDR first, as linkers do
        if let Some(path) = interp {
            let ph = 64 + 56;
            h[ph..ph + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
            h[ph + 8..ph + 16].copy_from_slice(&0x180u64.to_le_bytes());
            h[ph + 0x20..ph + 0x28].copy_from_slice(&(path.len() as u64 + 1).to_le_bytes());
            h[0x180..0x180 + path.len()].copy_from_slice(path);
        }
        h
    }

    #[test]
    fn finds_the_loader_of_a_dynamic_program() {
        let h = elf(Some(b"/lib64/ld-linux-x86-64.so.2"));
        let ElfKind::Dynamic(range) = classify(&h) else {
            panic!("not dynamic")
        };
        assert_eq!(&h[range], b"/lib64/ld-linux-x86-64.so.2");
    }

    #[test]
    fn static_other_and_not_elf() {
        assert_eq!(classify(&elf(None)), ElfKind::Static);
        let mut h = elf(None);
        h[4] = 1;
        assert_eq!(classify(&h), ElfKind::Other, "32-bit");
        let h = elf(Some(b"/lib/ld-musl-x86_64.so.1"));
        assert_eq!(
            classify(&h[..100]),
            ElfKind::Other,
            "headers beyond the head"
        );
        assert_eq!(classify(b"#!/bin/sh"), ElfKind::NotElf);
    }

    #[test]
    fn loader_kind_by_name() {
        assert_eq!(
            LoaderKind::of(b"/lib/ld-musl-x86_64.so.1"),
            LoaderKind::Musl
        );
        assert_eq!(
            LoaderKind::of(b"/lib64/ld-linux-x86-64.so.2"),
            LoaderKind::Glibc
        );
        assert_eq!(
            LoaderKind::of(b"/lib/ld-linux-aarch64.so.1"),
            LoaderKind::Glibc
        );
    }

    /// A program whose head maps its string table (one `PT_LOAD` at address 0x400000) and
    /// whose dynamic section is `entries`.
    fn with_dynamic(entries: &[(u64, u64)]) -> (Vec<u8>, Vec<u8>) {
        let mut h = elf(None);
        h[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        let load = 64 + 56;
        h[load..load + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        h[load + 0x08..load + 0x10].copy_from_slice(&0u64.to_le_bytes());
        h[load + 0x10..load + 0x18].copy_from_slice(&0x40_0000u64.to_le_bytes());
        h[load + 0x20..load + 0x28].copy_from_slice(&0x1000u64.to_le_bytes());
        let dynamic = 64 + 2 * 56;
        h[dynamic..dynamic + 4].copy_from_slice(&PT_DYNAMIC.to_le_bytes());
        h[dynamic + 0x08..dynamic + 0x10].copy_from_slice(&0x1000u64.to_le_bytes());
        h[dynamic + 0x20..dynamic + 0x28]
            .copy_from_slice(&((entries.len() as u64 + 1) * 16).to_le_bytes());
        let mut section = Vec::new();
        for (tag, value) in entries.iter().chain(&[(DT_NULL, 0)]) {
            section.extend_from_slice(&tag.to_le_bytes());
            section.extend_from_slice(&value.to_le_bytes());
        }
        (h, section)
    }

    #[test]
    fn the_programs_own_search_path_is_found_by_its_string_table() {
        let (head, section) = with_dynamic(&[(1, 7), (DT_RUNPATH, 0x20), (DT_STRTAB, 0x40_0300)]);
        assert_eq!(dynamic_range(&head), Some(0x1000..0x1000 + 4 * 16));
        assert_eq!(own_search_path_at(&head, &section), Some(0x320));
        // DT_RPATH counts only without DT_RUNPATH, as glibc reads them.
        let (head, section) =
            with_dynamic(&[(DT_RPATH, 0x10), (DT_STRTAB, 0x40_0300), (DT_RUNPATH, 0x20)]);
        assert_eq!(own_search_path_at(&head, &section), Some(0x320));
        let (head, section) = with_dynamic(&[(DT_RPATH, 0x10), (DT_STRTAB, 0x40_0300)]);
        assert_eq!(own_search_path_at(&head, &section), Some(0x310));
        // None at all, a string table no PT_LOAD maps, entries after DT_NULL.
        let (head, section) = with_dynamic(&[(DT_STRTAB, 0x40_0300)]);
        assert_eq!(own_search_path_at(&head, &section), None);
        let (head, section) = with_dynamic(&[(DT_RUNPATH, 0), (DT_STRTAB, 0x90_0000)]);
        assert_eq!(own_search_path_at(&head, &section), None);
        let (head, section) =
            with_dynamic(&[(DT_STRTAB, 0x40_0300), (DT_NULL, 0), (DT_RUNPATH, 1)]);
        assert_eq!(own_search_path_at(&head, &section), None);
        assert_eq!(dynamic_range(&elf(None)), None);
    }

    #[test]
    fn own_search_dirs_are_absolute_or_under_origin() {
        let dirs: Vec<OwnDir<'_>> = own_search_dirs(
            b"$ORIGIN/../lib:${ORIGIN}:/opt/x/lib::rel/lib:$LIB/x:$ORIGINAL/y:/a/$PLATFORM:$ORIGIN",
        )
        .collect();
        assert_eq!(
            dirs,
            [
                OwnDir::FromOrigin(b"/../lib"),
                OwnDir::FromOrigin(b""),
                OwnDir::Absolute(b"/opt/x/lib"),
                OwnDir::FromOrigin(b""),
            ]
        );
    }

    #[test]
    fn real_host_binaries() {
        let head = std::fs::read("/bin/sh").unwrap_or_default();
        assert!(matches!(
            classify(&head[..head.len().min(HEAD_LEN)]),
            ElfKind::Dynamic(_)
        ));
    }
}
