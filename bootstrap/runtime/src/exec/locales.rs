//! The image's compiled locales. `locale-gen` and `localedef` (Debian's and Ubuntu's
//! `locales`, the RHEL family's langpacks) put them in `/usr/lib/locale/locale-archive`,
//! which glibc opens from inside libc by that fixed path, where no preload can redirect it,
//! and which it skips altogether once `LOCPATH` is set (as it must be for the image's
//! directory locales, such as Debian's `C.utf8`). Left alone, `LANG=en_US.UTF-8` would fall
//! back to "C" with a warning from every Perl. So the archive's locales are written out as
//! the directories `localedef --no-archive` makes, in the runtime's scratch directory, and
//! `LOCPATH` names that directory first: glibc reads the archive before the directories.
//!
//! The archive's layout is glibc's `locarchive.h`: a header of table offsets, a hash table
//! of names, and per name a record of one `(offset, length)` per category, every offset from
//! the file's start, in the byte order of the machine that wrote it (the image's own).

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where glibc looks for the archive (container path).
pub const ARCHIVE: &str = "usr/lib/locale/locale-archive";

/// `AR_MAGIC` of `locarchive.h`.
const MAGIC: u32 = 0xde02_0109;

/// The categories in glibc's numbering (`__LC_CTYPE` = 0 …); `LC_ALL` (6) is the whole span
/// and has no file of its own.
const CATEGORIES: [Option<&str>; 13] = [
    Some("LC_CTYPE"),
    Some("LC_NUMERIC"),
    Some("LC_TIME"),
    Some("LC_COLLATE"),
    Some("LC_MONETARY"),
    Some("LC_MESSAGES"),
    None,
    Some("LC_PAPER"),
    Some("LC_NAME"),
    Some("LC_ADDRESS"),
    Some("LC_TELEPHONE"),
    Some("LC_MEASUREMENT"),
    Some("LC_IDENTIFICATION"),
];

const HEADER_BYTES: usize = 14 * 4;
const NAME_ENTRY_BYTES: usize = 3 * 4;
const RECORD_BYTES: usize = 4 + CATEGORIES.len() * 8;
/// More names than any archive holds (glibc-all-langpacks: about 800).
const MAX_NAMES: usize = 1 << 16;
/// Every locale is written out when their data, each shared block once, is at most this
/// (an archive of a few `locale-gen` locales is 3–20 MB); beyond it (an all-languages
/// archive is 100–220 MB) only the locales a run's environment names are.
pub const EXPORT_ALL_BYTES: u64 = 64 << 20;

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocaleError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not a glibc locale archive, or is damaged.
    #[error("{path}: not a glibc locale archive ({why})")]
    Malformed {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
}

/// One locale of the archive: its name and, per category, where its data lies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Locale {
    name: String,
    blocks: Vec<(&'static str, Block)>,
}

/// A category's data: `(offset, length)` in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Block(u32, u32);

/// An image's archive and the directory its locales are written to.
#[derive(Debug)]
pub struct LocaleExport {
    archive: PathBuf,
    locales: Vec<Locale>,
    into: PathBuf,
    export_all: bool,
    all_done: AtomicBool,
}

impl LocaleExport {
    /// Reads the archive's tables (not its data). `into` is the directory `LOCPATH` names.
    pub fn open(archive: &Path, into: PathBuf) -> Result<Self, LocaleError> {
        Self::open_exporting_all_up_to(archive, into, EXPORT_ALL_BYTES)
    }

    fn open_exporting_all_up_to(
        archive: &Path,
        into: PathBuf,
        limit: u64,
    ) -> Result<Self, LocaleError> {
        let file = std::fs::File::open(archive).map_err(|source| LocaleError::Io {
            path: archive.to_path_buf(),
            source,
        })?;
        let locales = read_locales(&file).map_err(|e| match e {
            ReadError::Io(source) => LocaleError::Io {
                path: archive.to_path_buf(),
                source,
            },
            ReadError::Malformed(why) => LocaleError::Malformed {
                path: archive.to_path_buf(),
                why,
            },
        })?;
        let data: u64 = distinct_blocks(&locales)
            .iter()
            .map(|b| u64::from(b.1))
            .sum();
        Ok(Self {
            archive: archive.to_path_buf(),
            locales,
            into,
            export_all: data <= limit,
            all_done: AtomicBool::new(false),
        })
    }

    /// The directory to list first in `LOCPATH`.
    pub fn dir(&self) -> &Path {
        &self.into
    }

    /// The archive's locale names, as `locale -a` lists them.
    #[cfg(test)]
    fn names(&self) -> impl Iterator<Item = &str> {
        self.locales.iter().map(|l| l.name.as_str())
    }

    /// Writes out what a run with `env` may load and is not written yet: every locale of a
    /// small archive, else those `env` names (`LC_ALL`, `LC_*`, `LANG`). Each locale's
    /// directory appears whole (written aside, then renamed), so a concurrent run sees it
    /// complete or not at all.
    pub fn export_for(&self, env: &[(String, String)]) -> Result<(), LocaleError> {
        if self.all_done.load(Ordering::Acquire) {
            return Ok(());
        }
        let wanted: Vec<&Locale> = if self.export_all {
            self.locales.iter().collect()
        } else {
            let names: HashSet<String> = env
                .iter()
                .filter(|(k, _)| k == "LANG" || k.starts_with("LC_"))
                .map(|(_, v)| archive_name(v))
                .collect();
            self.locales
                .iter()
                .filter(|l| names.contains(&l.name))
                .collect()
        };
        let mut pending = wanted
            .into_iter()
            .filter(|l| !self.into.join(&l.name).is_dir())
            .peekable();
        if pending.peek().is_some() {
            let file = std::fs::File::open(&self.archive).map_err(|source| LocaleError::Io {
                path: self.archive.clone(),
                source,
            })?;
            for locale in pending {
                self.export(&file, locale)?;
            }
        }
        if self.export_all {
            self.all_done.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn export(&self, archive: &std::fs::File, locale: &Locale) -> Result<(), LocaleError> {
        let target = self.into.join(&locale.name);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LocaleError::Io { path, source }
        };
        let blocks = self.into.join(".blocks");
        std::fs::create_dir_all(&blocks).map_err(io_err(&blocks))?;
        let aside = tempfile::Builder::new()
            .prefix(".partial-")
            .tempdir_in(&self.into)
            .map_err(io_err(&self.into))?;
        for (category, block) in &locale.blocks {
            let shared = blocks.join(format!("{:x}-{:x}", block.0, block.1));
            if !shared.exists() {
                let mut tmp = tempfile::NamedTempFile::new_in(&blocks).map_err(io_err(&blocks))?;
                let block_range = (u64::from(block.0), u64::from(block.1));
                copy_range(archive, block_range, tmp.as_file_mut(), COPY_CHUNK)
                    .map_err(io_err(&self.archive))?;
                tmp.persist(&shared).map_err(|e| LocaleError::Io {
                    path: shared.clone(),
                    source: e.error,
                })?;
            }
            // As `localedef --no-archive` lays them out (glibc opens `LC_MESSAGES/SYS_…`
            // when `LC_MESSAGES` is a directory).
            let file = if *category == "LC_MESSAGES" {
                let dir = aside.path().join(category);
                std::fs::create_dir(&dir).map_err(io_err(&dir))?;
                dir.join("SYS_LC_MESSAGES")
            } else {
                aside.path().join(category)
            };
            if std::fs::hard_link(&shared, &file).is_err() {
                std::fs::copy(&shared, &file).map_err(io_err(&file))?;
            }
        }
        let aside = aside.keep();
        if let Err(source) = std::fs::rename(&aside, &target) {
            let _ = std::fs::remove_dir_all(&aside);
            // Another run wrote it meanwhile.
            if !target.is_dir() {
                return Err(LocaleError::Io {
                    path: target,
                    source,
                });
            }
        }
        Ok(())
    }
}

/// The name the archive gives a locale asked for as `requested`: glibc normalizes the
/// codeset (`UTF-8` → `utf8`, `8859-1` → `iso88591`) before it looks a name up.
fn archive_name(requested: &str) -> String {
    let (rest, modifier) = match requested.split_once('@') {
        Some((rest, modifier)) => (rest, Some(modifier)),
        None => (requested, None),
    };
    let mut name = match rest.split_once('.') {
        Some((language, codeset)) => {
            let normal: String = codeset
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            let prefix = if normal.chars().all(|c| c.is_ascii_digit()) {
                "iso"
            } else {
                ""
            };
            format!("{language}.{prefix}{normal}")
        }
        None => rest.to_owned(),
    };
    if let Some(modifier) = modifier {
        name.push('@');
        name.push_str(modifier);
    }
    name
}

fn distinct_blocks(locales: &[Locale]) -> HashSet<Block> {
    locales
        .iter()
        .flat_map(|l| l.blocks.iter().map(|(_, b)| *b))
        .collect()
}

#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    Malformed(&'static str),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads a native-endian `u32` at `at` of `bytes` (the caller sized `bytes`).
fn word(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    if let Some(src) = bytes.get(at..at.saturating_add(4)) {
        w.copy_from_slice(src);
    }
    u32::from_ne_bytes(w)
}

/// The archive's locales, in name order, every table and block checked to lie within the
/// file.
fn read_locales(file: &(impl ArchiveBytes + ?Sized)) -> Result<Vec<Locale>, ReadError> {
    let len = file.len()?;
    let mut header = [0; HEADER_BYTES];
    file.read_at_exact(&mut header, 0)
        .map_err(|_| ReadError::Malformed("shorter than its header"))?;
    if word(&header, 0) != MAGIC {
        return Err(ReadError::Malformed("wrong magic number"));
    }
    let (hash_offset, hash_size) = (word(&header, 8), word(&header, 16) as usize);
    if hash_size > MAX_NAMES {
        return Err(ReadError::Malformed("name table too large"));
    }
    let within = |offset: u32, size: u64| u64::from(offset) + size <= len;
    if !within(hash_offset, (hash_size * NAME_ENTRY_BYTES) as u64) {
        return Err(ReadError::Malformed("name table beyond the end"));
    }
    let mut table = vec![0; hash_size * NAME_ENTRY_BYTES];
    file.read_at_exact(&mut table, u64::from(hash_offset))?;
    let mut locales = Vec::new();
    for entry in table.chunks_exact(NAME_ENTRY_BYTES) {
        let (name_offset, record_offset) = (word(entry, 4), word(entry, 8));
        if name_offset == 0 {
            continue; // an empty slot
        }
        let name = read_name(file, name_offset, len)?;
        if !within(record_offset, RECORD_BYTES as u64) {
            return Err(ReadError::Malformed("locale record beyond the end"));
        }
        let mut record = [0; RECORD_BYTES];
        file.read_at_exact(&mut record, u64::from(record_offset))?;
        let mut blocks = Vec::new();
        for (index, category) in CATEGORIES.iter().enumerate() {
            let block = Block(word(&record, 4 + index * 8), word(&record, 8 + index * 8));
            if !within(block.0, u64::from(block.1)) {
                return Err(ReadError::Malformed("category data beyond the end"));
            }
            if let Some(category) = category {
                blocks.push((*category, block));
            }
        }
        locales.push(Locale { name, blocks });
    }
    locales.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(locales)
}

/// A name of the string table: NUL-terminated, and usable as one directory name.
fn read_name(
    file: &(impl ArchiveBytes + ?Sized),
    offset: u32,
    len: u64,
) -> Result<String, ReadError> {
    let mut buf = [0; 256];
    let available = len.saturating_sub(u64::from(offset)).min(buf.len() as u64) as usize;
    let buf = buf
        .get_mut(..available)
        .ok_or(ReadError::Malformed("name beyond the end"))?;
    file.read_at_exact(buf, u64::from(offset))?;
    let end = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(ReadError::Malformed("unterminated locale name"))?;
    let name = std::str::from_utf8(&buf[..end])
        .map_err(|_| ReadError::Malformed("locale name not UTF-8"))?;
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(ReadError::Malformed("locale name not a file name"));
    }
    Ok(name.to_owned())
}

/// What reading needs of the archive: a file, or bytes in the tests.
/// The most of a locale's data held in memory at once while it is written out: a block is
/// as long as the archive says, and a hostile archive may say 4 GiB.
const COPY_CHUNK: usize = 1 << 20;

/// Copies the `(offset, len)` bytes of `from` to the end of `to`, `chunk` bytes at a time.
fn copy_range(
    from: &std::fs::File,
    (offset, len): (u64, u64),
    to: &mut std::fs::File,
    chunk: usize,
) -> io::Result<()> {
    let mut buf = vec![0; len.min(chunk as u64) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        let part = &mut buf[..n];
        from.read_exact_at(part, offset + done)?;
        io::Write::write_all(to, part)?;
        done += n as u64;
    }
    Ok(())
}

trait ArchiveBytes {
    fn len(&self) -> io::Result<u64>;
    fn read_at_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ArchiveBytes for std::fs::File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_at_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

impl ArchiveBytes for [u8] {
    fn len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
    fn read_at_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let src = self.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_copied_a_chunk_at_a_time_to_its_last_byte() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        std::fs::write(&archive, b"headerBLOCK-DATA-0123456789trailer").unwrap();
        let from = std::fs::File::open(&archive).unwrap();
        let out = dir.path().join("out");
        let mut to = std::fs::File::create(&out).unwrap();
        copy_range(&from, (6, 21), &mut to, 4).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"BLOCK-DATA-0123456789");
        let mut short = std::fs::File::create(dir.path().join("short")).unwrap();
        assert!(
            copy_range(&from, (30, 10), &mut short, 4).is_err(),
            "past the end"
        );
    }

    /// An archive laid out as glibc's `locarchive.h` says: header, name table (with an
    /// empty slot), strings, records, then each locale's category data. The harness checks
    /// the same code on archives `localedef` wrote.
    fn archive(locales: &[(&str, &[&[u8]])]) -> Vec<u8> {
        let slots = locales.len() + 1;
        let names_at = HEADER_BYTES;
        let strings_at = names_at + slots * NAME_ENTRY_BYTES;
        let strings: Vec<u8> = locales
            .iter()
            .flat_map(|(name, _)| name.bytes().chain([0]))
            .collect();
        let records_at = strings_at + strings.len();
        let mut data_at = records_at + locales.len() * RECORD_BYTES;
        let mut out = vec![0; data_at];
        let put = |out: &mut Vec<u8>, at: usize, value: usize| {
            out[at..at + 4].copy_from_slice(&(value as u32).to_ne_bytes());
        };
        put(&mut out, 0, MAGIC as usize);
        put(&mut out, 8, names_at);
        put(&mut out, 12, locales.len());
        put(&mut out, 16, slots);
        out[strings_at..records_at].copy_from_slice(&strings);
        let mut name_at = strings_at;
        let mut data = Vec::new();
        for (index, (name, categories)) in locales.iter().enumerate() {
            let slot = names_at + (index + 1) * NAME_ENTRY_BYTES;
            let record = records_at + index * RECORD_BYTES;
            put(&mut out, slot + 4, name_at);
            put(&mut out, slot + 8, record);
            name_at += name.len() + 1;
            let mut files = categories.iter();
            for (category, named) in CATEGORIES.iter().enumerate() {
                let at = record + 4 + category * 8;
                let bytes: &[u8] = match named {
                    Some(_) => files.next().copied().unwrap_or(b"shared"),
                    None => b"",
                };
                // Equal bytes share one block, as localedef's sum table makes them.
                let offset = match find(&data, bytes) {
                    Some(offset) => offset,
                    None => {
                        data.extend_from_slice(bytes);
                        data.len() - bytes.len()
                    }
                };
                put(&mut out, at, data_at + offset);
                put(&mut out, at + 4, bytes.len());
            }
        }
        out.extend_from_slice(&data);
        data_at += data.len();
        assert_eq!(out.len(), data_at);
        out
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        if needle.is_empty() {
            return Some(0);
        }
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn each_locale_becomes_the_directory_localedef_would_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locale-archive");
        std::fs::write(
            &path,
            archive(&[
                ("de_DE.utf8", &[b"ctype-de", b"numeric-de"]),
                ("en_US.utf8", &[b"ctype-en"]),
            ]),
        )
        .unwrap();
        let into = dir.path().join("out");
        let export = LocaleExport::open(&path, into.clone()).unwrap();
        assert_eq!(
            export.names().collect::<Vec<_>>(),
            ["de_DE.utf8", "en_US.utf8"]
        );
        export.export_for(&[]).unwrap();
        let de = into.join("de_DE.utf8");
        assert_eq!(std::fs::read(de.join("LC_CTYPE")).unwrap(), b"ctype-de");
        assert_eq!(std::fs::read(de.join("LC_NUMERIC")).unwrap(), b"numeric-de");
        assert_eq!(std::fs::read(de.join("LC_TIME")).unwrap(), b"shared");
        assert_eq!(
            std::fs::read(de.join("LC_MESSAGES/SYS_LC_MESSAGES")).unwrap(),
            b"shared"
        );
        assert!(!de.join("LC_ALL").exists());
        let files = std::fs::read_dir(&de).unwrap().count();
        assert_eq!(files, 12, "one entry per category but LC_ALL");
        assert_eq!(
            std::fs::read(into.join("en_US.utf8/LC_CTYPE")).unwrap(),
            b"ctype-en"
        );
        // A block the two locales share is one file on disk.
        use std::os::unix::fs::MetadataExt;
        let inode = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            inode(de.join("LC_PAPER")),
            inode(into.join("en_US.utf8/LC_PAPER"))
        );
        // No partial directory is left beside them.
        let left: Vec<_> = std::fs::read_dir(&into)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_large_archive_gives_only_the_locales_the_environment_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locale-archive");
        std::fs::write(
            &path,
            archive(&[
                ("de_DE.utf8", &[b"de"]),
                ("en_US.utf8", &[b"en"]),
                ("fr_FR.iso88591", &[b"fr"]),
                ("sr_RS.utf8@latin", &[b"sr"]),
            ]),
        )
        .unwrap();
        let into = dir.path().join("out");
        let export = LocaleExport::open_exporting_all_up_to(&path, into.clone(), 4).unwrap();
        export.export_for(&[]).unwrap();
        assert!(!into.join("de_DE.utf8").exists());
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        export
            .export_for(&env(&[
                ("LANG", "de_DE.UTF-8"),
                ("LC_TIME", "fr_FR.ISO-8859-1"),
                ("LC_CTYPE", "sr_RS.UTF-8@latin"),
                ("HOME", "en_US.utf8"),
            ]))
            .unwrap();
        for present in ["de_DE.utf8", "fr_FR.iso88591", "sr_RS.utf8@latin"] {
            assert!(into.join(present).join("LC_CTYPE").is_file(), "{present}");
        }
        assert!(
            !into.join("en_US.utf8").exists(),
            "only LANG and LC_* name locales"
        );
    }

    #[test]
    fn requested_names_are_normalized_as_glibc_looks_them_up() {
        assert_eq!(archive_name("en_US.UTF-8"), "en_US.utf8");
        assert_eq!(
            archive_name("de_DE.ISO-8859-15@euro"),
            "de_DE.iso885915@euro"
        );
        assert_eq!(archive_name("ja_JP.eucJP"), "ja_JP.eucjp");
        assert_eq!(archive_name("C"), "C");
        assert_eq!(archive_name("tt_RU@iqtelif"), "tt_RU@iqtelif");
    }

    #[test]
    fn a_damaged_archive_is_refused_by_name() {
        let good = archive(&[("de_DE.utf8", &[b"de"])]);
        let dir = tempfile::tempdir().unwrap();
        let refused = |bytes: &[u8]| -> String {
            let path = dir.path().join("archive");
            std::fs::write(&path, bytes).unwrap();
            let err = LocaleExport::open(&path, dir.path().join("out")).unwrap_err();
            assert!(matches!(err, LocaleError::Malformed { .. }), "{err}");
            err.to_string()
        };
        assert!(refused(&good[..20]).contains("shorter than its header"));
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(refused(&bad).contains("wrong magic"));
        let mut bad = good.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(refused(&bad).contains("name table too large"));
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&(good.len() as u32).to_ne_bytes());
        assert!(refused(&bad).contains("name table beyond"));
        // The name "de_DE.utf8" turned into a path.
        let at = find(&good, b"de_DE").unwrap();
        let mut bad = good.clone();
        bad[at + 2] = b'/';
        assert!(refused(&bad).contains("not a file name"));
        let mut bad = good.clone();
        bad[at] = b'.';
        assert!(refused(&bad).contains("not a file name"));
        // The data block "de" said to run past the end.
        let slot = HEADER_BYTES + NAME_ENTRY_BYTES;
        let record = word(&good, slot + 8) as usize;
        let mut bad = good.clone();
        bad[record + 8..record + 12].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(refused(&bad).contains("category data beyond"));
        let mut bad = good;
        bad[slot + 8..slot + 12].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(refused(&bad).contains("record beyond"));
    }

    proptest::proptest! {
        /// Whatever bytes of a real archive are changed, reading ends in locales whose
        /// blocks lie in the file, or in a named refusal: never a panic.
        #[test]
        fn any_damage_is_read_or_refused(
            changes in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..400,
        ) {
            let mut bytes = archive(&[("de_DE.utf8", &[b"ctype-de"]), ("en_US.utf8", &[b"en"])]);
            for (at, value) in changes {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            bytes.truncate(bytes.len() - cut % 40);
            if let Ok(locales) = read_locales(bytes.as_slice()) {
                for (_, block) in locales.iter().flat_map(|l| l.blocks.iter()) {
                    proptest::prop_assert!(u64::from(block.0) + u64::from(block.1) <= bytes.len() as u64);
                }
            }
        }
    }
}
