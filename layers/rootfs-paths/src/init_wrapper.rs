//! Init wrappers: `ENTRYPOINT ["/tini", "--"]` and its kind (tini, docker-init, dumb-init,
//! catatonit) make a program PID 1 of a container that reaps orphans and forwards signals
//! to the command it starts. Their release builds are static, and no preload follows a
//! static program: its exec of the command would look for it on the host, where on Lambda
//! it is missing. The runtime already does their work (the command runs in a process group
//! of its own, signalled and ended as a whole), so a static wrapper is passed over and the
//! command it wraps runs in its place.

/// One wrapper's command line, as its `getopt` reads it (options stop at the first word
/// that is not one, and at `--`).
struct Options {
    /// Short options without a value.
    flags: &'static [u8],
    /// Short options that take one.
    valued: &'static [u8],
    /// Options that print something and exit: then the wrapper runs as it is.
    informs: &'static [u8],
    /// Long options; any other (`--help`, `--version`) leaves the wrapper as it is.
    long_flags: &'static [&'static [u8]],
    long_valued: &'static [&'static [u8]],
}

/// tini 0.19 (`docker run --init` installs it as docker-init): `-s -v -w -g -p SIG -e CODE`,
/// `-h`, `-l` (its licence), `--version`.
const TINI: Options = Options {
    flags: b"svwg",
    valued: b"pe",
    informs: b"hl",
    long_flags: &[],
    long_valued: &[],
};

/// dumb-init 1.2: `-c/--single-child -v/--verbose -r/--rewrite s:r`, `-h`, `-V`.
const DUMB_INIT: Options = Options {
    flags: b"cv",
    valued: b"r",
    informs: b"hV",
    long_flags: &[b"single-child", b"verbose"],
    long_valued: &[b"rewrite"],
};

/// catatonit 0.1: `-g`, `-h -L -V`, and `-P`, which runs no command (a pause container).
const CATATONIT: Options = Options {
    flags: b"g",
    valued: b"",
    informs: b"hLVP",
    long_flags: &[],
    long_valued: &[],
};

/// The wrapper a program's file name makes it: release assets keep their download names
/// (`tini-static-amd64`, `dumb-init_1.2.5_x86_64`).
fn options_of(program: &[u8]) -> Option<&'static Options> {
    let name = program.rsplit(|&b| b == b'/').next().unwrap_or(program);
    let named = |base: &[u8]| {
        name.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'-' || rest[0] == b'_')
    };
    if named(b"tini") || name == b"docker-init" {
        Some(&TINI)
    } else if named(b"dumb-init") {
        Some(&DUMB_INIT)
    } else if name == b"catatonit" {
        Some(&CATATONIT)
    } else {
        None
    }
}

/// Where the wrapped command starts in `args` (the words after `argv[0]`), if `program`
/// (its container path) is an init wrapper asked to run one. `None` for any other program,
/// for options the wrapper does not have, for one asked for its help or version, and when
/// no command follows.
pub fn wrapped_command<'a>(
    program: &[u8],
    args: impl IntoIterator<Item = &'a [u8]>,
) -> Option<usize> {
    let options = options_of(program)?;
    let mut words = args.into_iter().enumerate().peekable();
    while let Some((at, word)) = words.next() {
        if word == b"--" {
            return words.peek().map(|&(next, _)| next);
        }
        if let Some(long) = word.strip_prefix(b"--") {
            let (name, inline_value) = match long.iter().position(|&b| b == b'=') {
                Some(eq) => (&long[..eq], true),
                None => (long, false),
            };
            if options.long_valued.contains(&name) {
                if !inline_value {
                    words.next()?;
                }
            } else if !options.long_flags.contains(&name) || inline_value {
                return None;
            }
            continue;
        }
        let Some(letters) = word.strip_prefix(b"-").filter(|l| !l.is_empty()) else {
            return Some(at);
        };
        for (i, letter) in letters.iter().enumerate() {
            if options.informs.contains(letter) {
                return None;
            }
            if options.valued.contains(letter) {
                // The value is the rest of the word, or the next word.
                if i + 1 == letters.len() {
                    words.next()?;
                }
                break;
            }
            if !options.flags.contains(letter) {
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_at(program: &str, args: &[&str]) -> Option<usize> {
        wrapped_command(program.as_bytes(), args.iter().map(|a| a.as_bytes()))
    }

    #[test]
    fn the_command_starts_after_the_wrappers_options() {
        assert_eq!(command_at("/tini", &["--", "python3", "app.py"]), Some(1));
        assert_eq!(
            command_at("/usr/bin/tini-static", &["-s", "-g", "--", "sh"]),
            Some(3)
        );
        assert_eq!(command_at("tini", &["-sg", "-p", "SIGKILL", "sh"]), Some(3));
        assert_eq!(
            command_at("tini", &["-pSIGKILL", "-e", "143", "sh", "-c", "x"]),
            Some(3)
        );
        assert_eq!(
            command_at("/sbin/docker-init", &["--", "--weird-name"]),
            Some(1)
        );
        assert_eq!(
            command_at("/usr/local/bin/dumb-init", &["sh", "-c", "x"]),
            Some(0)
        );
        assert_eq!(
            command_at("dumb-init_1.2.5_x86_64", &["-c", "--rewrite", "15:2", "sh"]),
            Some(3)
        );
        assert_eq!(
            command_at(
                "dumb-init",
                &["--rewrite=15:2", "--single-child", "--", "sh"]
            ),
            Some(3)
        );
        assert_eq!(command_at("dumb-init", &["-r15:2", "sh"]), Some(1));
        assert_eq!(
            command_at("/usr/bin/catatonit", &["-g", "--", "sleep", "1"]),
            Some(2)
        );
    }

    #[test]
    fn information_unknown_options_and_no_command_leave_the_wrapper_as_it_is() {
        assert_eq!(command_at("tini", &["--version"]), None);
        assert_eq!(command_at("tini", &["-h"]), None);
        assert_eq!(command_at("tini", &["-s", "-x", "sh"]), None);
        assert_eq!(command_at("tini", &["--"]), None);
        assert_eq!(command_at("tini", &["-s"]), None);
        assert_eq!(command_at("tini", &["-p"]), None);
        assert_eq!(command_at("dumb-init", &["--rewrite"]), None);
        assert_eq!(command_at("dumb-init", &["--verbose=1", "sh"]), None);
        assert_eq!(command_at("catatonit", &["-P"]), None);
        assert_eq!(command_at("catatonit", &["-L", "sh"]), None);
    }

    #[test]
    fn only_wrappers_are_recognised_by_name() {
        assert_eq!(command_at("/usr/bin/tinify", &["--", "sh"]), None);
        assert_eq!(command_at("/usr/bin/python3", &["--", "sh"]), None);
        assert_eq!(command_at("/opt/tini/x", &["sh"]), None);
        assert_eq!(command_at("catatonit-2", &["sh"]), None);
    }
}
