//! The generated parts of the documentation, checked against their sources: a test fails
//! when a document disagrees, and `make docs` (`UPDATE_DOCS=1`) rewrites it.

#[cfg(test)]
mod tests {
    use rootfs_paths::syscall_gate::{Effect, ExeLink, Gate, PathArg, TABLE};

    /// Checks (or with `UPDATE_DOCS`, rewrites) the part of `doc` between its markers.
    fn generated_section(doc: &str, marker: &str, content: &str) {
        let path = format!("{}/../../docs/{doc}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (begin, end) = (
            format!("<!-- {marker}:begin -->\n"),
            format!("<!-- {marker}:end -->"),
        );
        let start = text.find(&begin).map(|i| i + begin.len());
        let stop = text.find(&end);
        let current = match (start, stop) {
            (Some(a), Some(b)) if a <= b => &text[a..b],
            _ => "",
        };
        if current != content && std::env::var_os("UPDATE_DOCS").is_some() {
            let (Some(a), Some(b)) = (start, stop) else {
                panic!("{path} lacks the {marker} markers");
            };
            std::fs::write(&path, format!("{}{content}{}", &text[..a], &text[b..])).unwrap();
            return;
        }
        assert_eq!(
            current, content,
            "docs/{doc} disagrees with its source: run `make docs`"
        );
    }

    #[test]
    fn the_configuration_document_carries_the_settings_table() {
        generated_section(
            "configuration.md",
            "settings",
            &crate::settings::markdown_table(),
        );
    }

    #[test]
    fn the_syscall_gate_document_carries_the_gate_table() {
        generated_section("syscall-gate.md", "gate", &gate_table());
    }

    fn gate_table() -> String {
        use std::fmt::Write;
        let arg = |a: &PathArg| {
            let exe = match a.exe {
                ExeLink::Program => ", `/proc/self/exe` is the program",
                ExeLink::Kernel => "",
            };
            match a.dirfd {
                Some(fd) => format!("path arg {} from dirfd arg {fd}{exe}", a.path),
                None => format!("path arg {}{exe}", a.path),
            }
        };
        let mut out = String::from("| call | x86_64 | aarch64 | the gate |\n|---|---|---|---|\n");
        for e in TABLE {
            let what = match &e.gate {
                Gate::Paths {
                    first,
                    second,
                    effect,
                } => {
                    let paths = match second {
                        None => arg(first),
                        Some(second) => format!("{} and {}", arg(first), arg(second)),
                    };
                    let effect = match effect {
                        Effect::None => "",
                        Effect::Opens { flags: Some(_) } => {
                            "; fills a placeholder; fake root's `/proc/…/status`"
                        }
                        Effect::Opens { flags: None } | Effect::Fills => "; fills a placeholder",
                        Effect::Removes => "; fake root forgets the file's owner",
                        Effect::Renames => {
                            "; fills a placeholder; fake root forgets the replaced file's owner"
                        }
                    };
                    format!("translates {paths}{effect}")
                }
                Gate::Stat { path, .. } => format!(
                    "translates {}; a link not followed reports its container target's length",
                    arg(path)
                ),
                Gate::Readlink { .. } => {
                    "as `readlink`: the target comes back as a container path".into()
                }
                Gate::Symlink { .. } => {
                    "as `symlink`: an absolute target is stored inside the rootfs".into()
                }
                Gate::Getcwd => "the container cwd, with the kernel's return value".into(),
                Gate::Execve | Gate::Execveat => "the shim's exec path (the image's loader)".into(),
                Gate::Chown(_) => {
                    "as `chown`: the path translated; under fake root, remembered".into()
                }
                Gate::Refuse => "`ENOSYS`".into(),
            };
            let nr = |n: Option<usize>| n.map_or("-".into(), |n| format!("{n}"));
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {what} |",
                e.name,
                nr(e.x86_64()),
                nr(e.aarch64())
            );
        }
        out
    }
}
