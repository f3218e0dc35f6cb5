//! What the fetcher needs of an ELF file before its program runs: the loader it names, the
//! libraries and search paths of its dynamic section, and whether it is a Go program.
//!
//! Read piece by piece (the headers, `PT_INTERP`, `PT_DYNAMIC`, its string table, the
//! section names), never the whole file: a library can be tens or hundreds of MB (OpenBLAS,
//! libLLVM), and reading one whole to parse its headers was the largest single allocation
//! of a lazy cold start (36 MB of the runtime's 140 MB peak on a 1.9 GB scientific image).
//! goblin parses each piece; every offset and size it reads comes from the file and is
//! checked against the file's length before anything is read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use goblin::container::Ctx;
use goblin::elf::dynamic::{DF_1_PIE, DT_RPATH, DT_RUNPATH, Dynamic};
use goblin::elf::program_header::{PT_DYNAMIC, PT_INTERP, ProgramHeader};
use goblin::elf::section_header::SectionHeader;
use goblin::elf::{Elf, Header};
use goblin::strtab::Strtab;

/// The largest piece read: headers and string tables are far smaller in any real file.
const MAX_PIECE: u64 = 16 << 20;
/// Bytes read first: enough for a `#!` line and an ELF header.
const HEAD_BYTES: usize = 4096;

/// ELF sections of Go programs: they make their system calls themselves, even when linked
/// dynamically, so the shim cannot see what they open.
const GO_SECTIONS: [&str; 2] = [".go.buildinfo", ".note.go.buildid"];

/// What an ELF file asks of the loader.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ElfNeeds {
    /// `PT_INTERP`: the dynamic loader.
    pub interpreter: Option<String>,
    /// Whether it has a dynamic section (a static program has none).
    pub dynamic: bool,
    /// `DF_1_PIE`: an executable, where a shared library (also `ET_DYN`) has no such flag.
    /// With no loader, a static-pie program.
    pub pie: bool,
    /// `DT_NEEDED`, in order.
    pub libraries: Vec<String>,
    /// `DT_RUNPATH` entries, then `DT_RPATH` ones (each a `:`-separated list).
    pub search: Vec<String>,
    /// Whether a Go toolchain built it.
    pub go: bool,
}

/// A file's first bytes, with the file kept open for the rest.
pub(crate) struct Head {
    file: File,
    len: u64,
    bytes: [u8; HEAD_BYTES],
    got: usize,
}

impl Head {
    /// Opens `path` and reads its first bytes.
    pub(crate) fn read(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut bytes = [0; HEAD_BYTES];
        let got = file.read_at(&mut bytes, 0)?;
        Ok(Self {
            file,
            len,
            bytes,
            got,
        })
    }

    /// The first bytes (fewer if the file is shorter): where a `#!` line is.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.got]
    }

    /// What the file asks of the loader, if it is an ELF file.
    pub(crate) fn elf(&self) -> Option<ElfNeeds> {
        read(&self.file, self.len, self.bytes())
    }
}

/// The needs of the ELF file `file` of `len` bytes whose first bytes are `head`; `None` if
/// it is not an ELF file goblin can read.
fn read(file: &File, len: u64, head: &[u8]) -> Option<ElfNeeds> {
    let header = Elf::parse_header(head).ok()?;
    let ctx = Ctx::new(header.container().ok()?, header.endianness().ok()?);
    let piece = |offset: u64, size: u64| read_piece(file, len, offset, size);
    let phdrs_bytes = piece(
        header.e_phoff,
        u64::from(header.e_phnum) * u64::from(header.e_phentsize),
    )?;
    let mut phdrs = ProgramHeader::parse(&phdrs_bytes, 0, usize::from(header.e_phnum), ctx).ok()?;
    let mut needs = ElfNeeds {
        go: is_go(file, len, &header, ctx).unwrap_or(false),
        ..ElfNeeds::default()
    };
    if let Some(interp) = phdrs
        .iter()
        .find(|ph| ph.p_type == PT_INTERP && ph.p_filesz != 0)
    {
        let bytes = piece(interp.p_offset, interp.p_filesz)?;
        let name = bytes.split(|&b| b == 0).next().unwrap_or_default();
        needs.interpreter = Some(String::from_utf8_lossy(name).into_owned());
    }
    let Some(at) = phdrs.iter().position(|ph| ph.p_type == PT_DYNAMIC) else {
        return Some(needs);
    };
    // goblin reads the dynamic segment at its header's offset in the bytes it is given:
    // given only the segment, the header is moved to 0. Addresses in the segment are still
    // turned into file offsets through the loadable segments, which stay as they are.
    let dynamic_bytes = piece(phdrs[at].p_offset, phdrs[at].p_filesz)?;
    phdrs[at].p_offset = 0;
    let Some(dynamic) = Dynamic::parse(&dynamic_bytes, &phdrs, ctx).ok().flatten() else {
        return Some(needs);
    };
    needs.dynamic = true;
    needs.pie = dynamic.info.flags_1 & DF_1_PIE != 0;
    let strings = piece(dynamic.info.strtab as u64, dynamic.info.strsz as u64)?;
    let strtab = Strtab::parse(&strings, 0, strings.len(), 0).ok()?;
    needs.libraries = dynamic
        .get_libraries(&strtab)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for tag in [DT_RUNPATH, DT_RPATH] {
        needs.search.extend(
            dynamic
                .dyns
                .iter()
                .filter(|d| d.d_tag == tag)
                .filter_map(|d| strtab.get_at(usize::try_from(d.d_val).ok()?))
                .map(str::to_owned),
        );
    }
    Some(needs)
}

/// Whether a section of a Go program is there, by name; `None` if the section headers or
/// their names cannot be read.
fn is_go(file: &File, len: u64, header: &Header, ctx: Ctx) -> Option<bool> {
    let count = usize::from(header.e_shnum);
    let bytes = read_piece(
        file,
        len,
        header.e_shoff,
        u64::from(header.e_shnum) * u64::from(header.e_shentsize),
    )?;
    // An offset of 0 means no section headers (`SectionHeader::parse` says so for any
    // offset 0, which is why the piece is parsed with `parse_from`).
    if header.e_shoff == 0 {
        return Some(false);
    }
    let sections = SectionHeader::parse_from(&bytes, 0, count, ctx).ok()?;
    let names = sections.get(usize::from(header.e_shstrndx))?;
    let names = read_piece(file, len, names.sh_offset, names.sh_size)?;
    let names = Strtab::parse(&names, 0, names.len(), 0).ok()?;
    Some(sections.iter().any(|s| {
        names
            .get_at(s.sh_name)
            .is_some_and(|n| GO_SECTIONS.contains(&n))
    }))
}

/// Bytes `offset..offset + size` of the file, if they lie in its `len` bytes and are at
/// most [`MAX_PIECE`].
fn read_piece(file: &File, len: u64, offset: u64, size: u64) -> Option<Vec<u8>> {
    let end = offset.checked_add(size)?;
    if end > len || size > MAX_PIECE {
        return None;
    }
    let mut bytes = vec![0; usize::try_from(size).ok()?];
    file.read_exact_at(&mut bytes, offset).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the whole-file parse (goblin's `Elf::parse`, as the fetcher did before) says.
    fn whole(bytes: &[u8]) -> Option<ElfNeeds> {
        let elf = Elf::parse(bytes).ok()?;
        let go = elf.section_headers.iter().any(|s| {
            elf.shdr_strtab
                .get_at(s.sh_name)
                .is_some_and(|n| GO_SECTIONS.contains(&n))
        });
        Some(ElfNeeds {
            interpreter: elf.interpreter.map(str::to_owned),
            dynamic: elf.dynamic.is_some(),
            pie: elf
                .dynamic
                .as_ref()
                .is_some_and(|d| d.info.flags_1 & DF_1_PIE != 0),
            libraries: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
            search: elf
                .runpaths
                .iter()
                .chain(&elf.rpaths)
                .map(|s| (*s).to_owned())
                .collect(),
            go,
        })
    }

    /// Every ELF file of this machine's programs and libraries (and its Go toolchain, for
    /// Go programs) is read piecewise as the whole-file parse reads it.
    #[test]
    fn the_pieces_say_what_the_whole_file_says_for_every_program_and_library_here() {
        let mut checked = 0;
        let mut go = 0;
        let mut with_search = 0;
        for dir in [
            "/usr/bin",
            "/usr/sbin",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib/go/bin",
            "/usr/lib/go/pkg/tool/linux_amd64",
        ] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() || meta.len() > 256 << 20 {
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let Some(expected) = whole(&bytes) else {
                    continue;
                };
                let got = Head::read(&path).ok().and_then(|head| head.elf());
                assert_eq!(got.as_ref(), Some(&expected), "{}", path.display());
                checked += 1;
                go += usize::from(expected.go);
                with_search += usize::from(!expected.search.is_empty());
            }
        }
        assert!(checked > 300, "only {checked} ELF files found");
        // Debian's Go toolchain comes with the harness's set-up, which may run alongside.
        if std::path::Path::new("/usr/lib/go/bin/go").exists() {
            assert!(go > 0, "no Go program recognised in the Go toolchain");
        }
        assert!(with_search > 0, "no file with DT_RUNPATH or DT_RPATH found");
    }

    #[test]
    fn pieces_beyond_the_file_or_too_large_are_not_read() {
        let file = File::open("/proc/self/exe").expect("open");
        let len = file.metadata().expect("stat").len();
        assert!(read_piece(&file, len, len - 1, 2).is_none());
        assert!(read_piece(&file, len, u64::MAX, 2).is_none());
        assert!(read_piece(&file, u64::MAX, 0, MAX_PIECE + 1).is_none());
        assert_eq!(
            read_piece(&file, len, 0, 4).as_deref(),
            Some(&b"\x7fELF"[..])
        );
    }

    #[test]
    fn a_truncated_elf_file_is_not_one() {
        let bytes = std::fs::read("/proc/self/exe").expect("read");
        let dir = tempfile::tempdir().expect("tempdir");
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &bytes[..4096]).expect("write");
        // The header is there, the program headers may be; the dynamic segment is not.
        let got = Head::read(&cut).expect("read").elf();
        assert!(got.is_none_or(|n| !n.dynamic && n.libraries.is_empty()));
    }
}
