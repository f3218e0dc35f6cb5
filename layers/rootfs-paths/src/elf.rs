//! Just enough ELF to find a program's dynamic loader (`PT_INTERP`).

use core::ops::Range;

/// Bytes to read from the start of a program; `PT_INTERP` sits well inside the first page.
pub const HEAD_LEN: usize = 4096;

const PT_INTERP: u32 = 3;

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

fn dynamic_loader(head: &[u8]) -> Option<ElfKind> {
    let phoff = u64_at(head, 0x20)?;
    let phentsize = usize::from(u16_at(head, 0x36)?);
    let phnum = usize::from(u16_at(head, 0x38)?);
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
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

    #[test]
    fn real_host_binaries() {
        let head = std::fs::read("/bin/sh").unwrap_or_default();
        assert!(matches!(
            classify(&head[..head.len().min(HEAD_LEN)]),
            ElfKind::Dynamic(_)
        ));
    }
}
