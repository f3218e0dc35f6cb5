//! Fuzzing of the rules here that read text a hostile image controls, as property tests
//! with generated inputs: the image's `/etc/passwd`, `/etc/group` and `/etc/shadow` lines
//! (the shim parses them on musl), a `/proc/<pid>/status` file and its name (fake root rewrites them), and
//! the credentials variable an exec hands on, and the command lines of `/proc/<pid>/cmdline`
//! (any program of the container writes its own, as `setproctitle` does). None may panic;
//! what parses must print back to itself, the status rewrite never writes past its buffer or
//! touches another line, and a command line is cut only where the loader's part ends.
//! `PROPTEST_CASES` raises the cases (`make fuzz`).

use std::string::String;
use std::vec::Vec;
use std::{format, vec};

use proptest::prelude::*;

use crate::accounts::{group_line, passwd_line, shadow_line};
use crate::creds::{Creds, MAX_GROUPS};
use crate::proc_cmdline::{self, Argv0};
use crate::proc_status::{self, Ids};

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Account-file-like lines: fields of names, digits and noise joined by `:` and `,`.
fn account_line() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        "[a-z_][a-z0-9_-]{0,8}",
        "[0-9]{1,11}",
        Just(String::new()),
        Just("x".into()),
        "[a-z]{1,4}(,[a-z]{0,4}){0,4}",
        "\\PC{0,6}",
    ];
    let noise = prop::collection::vec(field, 0..9).prop_map(|fields| fields.join(":"));
    // Lines of the right shape, so that the printing back is tried often.
    let passwd = (
        "[a-z_][a-z0-9_-]{0,8}",
        "[0-9]{1,11}",
        "[0-9]{1,11}",
        "\\PC{0,12}",
    )
        .prop_map(|(name, uid, gid, rest)| {
            format!("{name}:x:{uid}:{gid}:{rest}:/home/{name}:/bin/sh")
        });
    let group = ("[a-z_]{1,8}", "[0-9]{1,11}", "[a-z,]{0,20}")
        .prop_map(|(name, gid, members)| format!("{name}:x:{gid}:{members}"));
    let shadow = (
        "[a-z_][a-z0-9_-]{0,8}",
        "[!*]?[a-zA-Z0-9$./]{0,20}",
        prop::collection::vec(prop_oneof![Just(String::new()), "[0-9]{1,6}"], 7),
    )
        .prop_map(|(name, password, numbers)| format!("{name}:{password}:{}", numbers.join(":")));
    (prop_oneof![noise, passwd, group, shadow], any::<bool>()).prop_map(|(line, newline)| {
        let mut line = line.into_bytes();
        if newline {
            line.push(b'\n');
        }
        line
    })
}

/// A status file as Linux writes it, with its id lines' values replaced by noise sometimes.
fn status_file() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "Name:\t[a-z]{1,15}",
        "(Uid|Gid):\t[0-9]{1,10}\t[0-9]{1,10}\t[0-9]{1,10}\t[0-9]{1,10}",
        "Groups:\t([0-9]{1,10} ){0,8}",
        "(Uid|Gid|Groups):\\PC{0,20}",
        "[A-Za-z_]{1,12}:\t\\PC{0,30}",
    ];
    (prop::collection::vec(line, 0..40), any::<bool>()).prop_map(|(lines, last_newline)| {
        let mut text = lines.join("\n");
        if last_newline {
            text.push('\n');
        }
        text.into_bytes()
    })
}

fn lines_without_ids(text: &[u8]) -> Vec<&[u8]> {
    text.split(|&b| b == b'\n')
        .filter(|l| {
            !(l.starts_with(b"Uid:\t") || l.starts_with(b"Gid:\t") || l.starts_with(b"Groups:\t"))
        })
        .collect()
}

proptest! {
    #![proptest_config(cases(2_000))]

    #[test]
    fn fuzz_account_lines_parse_or_are_skipped_and_print_back_to_themselves(line in account_line()) {
        if let Some(p) = passwd_line(&line) {
            let printed = [
                p.name.to_vec(), p.password.to_vec(), format!("{}", p.uid).into_bytes(),
                format!("{}", p.gid).into_bytes(), p.gecos.to_vec(), p.dir.to_vec(), p.shell.to_vec(),
            ].join(&b':');
            prop_assert_eq!(passwd_line(&printed), Some(p));
        }
        if let Some(g) = group_line(&line) {
            let printed = [
                g.name.to_vec(), g.password.to_vec(), format!("{}", g.gid).into_bytes(), g.members.to_vec(),
            ].join(&b':');
            prop_assert_eq!(group_line(&printed), Some(g));
            prop_assert!(g.members().all(|m| !m.is_empty() && !m.contains(&b',')));
        }
        if let Some(sh) = shadow_line(&line) {
            let mut printed = [sh.name.to_vec(), sh.password.to_vec()].to_vec();
            printed.extend(sh.numbers.iter().map(|&n| {
                if n < 0 { Vec::new() } else { format!("{n}").into_bytes() }
            }));
            let mut printed = printed.join(&b':');
            printed.push(b'\n');
            prop_assert_eq!(shadow_line(&printed), Some(sh));
            prop_assert!(line.ends_with(b"\n"), "musl skips a line without its newline");
        }
    }

    #[test]
    fn fuzz_status_rewrites_stay_in_their_buffer_and_keep_every_other_line(
        kernel in status_file(),
        uids in any::<[u32; 3]>(),
        gids in any::<[u32; 3]>(),
        groups in prop::collection::vec(any::<u32>(), 0..MAX_GROUPS),
        own in any::<bool>(),
        room in 0_usize..4096,
    ) {
        let ids = if own {
            Ids::Own { uids, gids, groups: &groups }
        } else {
            Ids::Mapped { lambda_uid: uids[0], lambda_gid: gids[0] }
        };
        let mut out = vec![0_u8; room];
        if let Ok(len) = proc_status::rewrite(&kernel, ids, &mut out) {
            prop_assert!(len <= room);
            let out = &out[..len];
            prop_assert_eq!(lines_without_ids(out), lines_without_ids(&kernel));
            prop_assert_eq!(out.ends_with(b"\n"), kernel.ends_with(b"\n"));
        }
    }

    #[test]
    fn fuzz_status_paths_never_panic(path in "(/proc/)?(self|thread-self|[0-9]{0,12}|[a-z]{0,5})(/task/[0-9a-z]{0,6})?(/status|/stat|/)?") {
        let whose = proc_status::whose(path.as_bytes(), || 41);
        if whose.is_some() {
            prop_assert!(path.starts_with("/proc/") && path.ends_with("/status"));
        }
    }

    #[test]
    fn fuzz_command_lines_are_cut_after_the_loader_or_left_alone(
        fields in prop::collection::vec(prop_oneof![
            Just(String::from("/r/lib64/ld.so")),
            Just(String::from("/r/bin/prog")),
            Just(String::from("--library-path")),
            Just(String::from("--inhibit-cache")),
            Just(String::from("--preload")),
            Just(String::from("--argv0")),
            "[a-z/. -]{0,12}",
        ], 0..12),
        args in prop::collection::vec("[a-z -]{0,8}", 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut line: Vec<u8> = fields.iter().flat_map(|f| [f.as_bytes(), b"\0"].concat()).collect();
        for arg in &args {
            line.extend_from_slice(arg.as_bytes());
            line.push(0);
        }
        // Any prefix, as a read cut short gives.
        let head = &line[..cut.index(line.len() + 1)];
        if let Some(launch) = proc_cmdline::launch(head, b"/r") {
            prop_assert!(launch.args_start <= head.len());
            prop_assert!(launch.args_start == 0 || head[launch.args_start - 1] == 0);
            prop_assert!(head.starts_with(b"/r/"));
            // The last field taken is the program: never one of the loader's options.
            let taken = &head[..launch.args_start.saturating_sub(1)];
            let program = taken.rsplit(|&b| b == 0).next().unwrap_or(taken);
            prop_assert!(!matches!(program, b"--library-path" | b"--inhibit-cache" | b"--preload" | b"--argv0"));
            if let Argv0::HostProgram(named) = launch.argv0 {
                prop_assert_eq!(named, program);
            }
        }
    }

    #[test]
    fn fuzz_credentials_parse_or_are_refused_and_print_back_to_themselves(
        text in "[0-9,]{0,40}|([0-9]{1,10},){5,80}[0-9]{1,10}"
    ) {
        if let Some(creds) = Creds::parse(text.as_bytes()) {
            let mut out = [0_u8; 1024];
            let printed = creds.write(&mut out);
            prop_assert!(printed.is_some());
            prop_assert_eq!(printed.and_then(Creds::parse), Some(creds));
        }
    }
}
