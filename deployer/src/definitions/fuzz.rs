//! Fuzzing of the definition-file parser (issue #17 item 4), as property tests: YAML built
//! from the schema's own keys and values mixed with misspellings, wrong types, anchors and
//! noise, and arbitrary text. The parser may accept or refuse, never panic, and what it
//! accepts holds the rules `init -f` relies on. `PROPTEST_CASES` raises the cases
//! (`make fuzz`).

use proptest::prelude::*;

use super::Definitions;

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

/// Every key of a function, and a typo.
pub(super) const KEYS: &[&str] = &[
    "image",
    "image_file",
    "init_script",
    "description",
    "memory",
    "time",
    "timeout_threshold",
    "environment",
    "runtime_environment",
    "s3",
    "api_gateway",
    "url",
    "architecture",
    "ephemeral_storage",
    "layer",
    "role",
    "fakeroot",
    "log_level",
    "extra_payload",
    "memroy",
];

const S3_KEYS: &[&str] = &[
    "input_bucket",
    "input_folder",
    "output_bucket",
    "output_folder",
    "deployment_bucket",
    "bucket",
];

/// A YAML scalar or small collection of any type the schema or a typo might hold.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/._-]{0,12}",
        any::<i64>().prop_map(|n| n.to_string()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("~".to_owned()),
        Just("[a, 1, {b: c}]".to_owned()),
        Just("{auth: none}".to_owned()),
        Just("{name: api, auth: iam}".to_owned()),
        Just("x86_64".to_owned()),
        Just("arm64".to_owned()),
        Just("&a v".to_owned()),
        Just("*a".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("!!binary aGk=".to_owned()),
        ".{0,10}",
    ]
}

/// A key with a value of the right type, so that generated files are also accepted and the
/// accepted path is exercised.
const TYPED: &[(&str, &str)] = &[
    ("memory", "512"),
    ("time", "300"),
    ("description", "resize photos"),
    ("environment", "{A: b, C: '1'}"),
    ("s3", "{input_bucket: in, output_bucket: out}"),
    (
        "s3",
        "{input_bucket: in, input_folder: a/, output_folder: a/b}",
    ),
    ("architecture", "arm64"),
    ("url", "{auth: none}"),
    ("api_gateway", "{name: api}"),
    ("layer", "arn:aws:lambda:us-east-1:1:layer:scar:1"),
    ("fakeroot", "true"),
    ("ephemeral_storage", "1024"),
    ("timeout_threshold", "10"),
    ("init_script", "run.sh"),
    ("log_level", "INFO"),
    ("log_level", "debug"),
    ("extra_payload", "data/"),
];

/// One function's body: an image most of the time, then schema keys with well-typed or
/// generated values (and a typo); `s3` may be a map of its own keys.
fn function() -> impl Strategy<Value = String> {
    let typed = prop::sample::select(TYPED).prop_map(|(k, v)| format!("    {k}: {v}\n"));
    let generated = (
        prop::sample::select(KEYS),
        value(),
        prop::collection::vec((prop::sample::select(S3_KEYS), value()), 0..5),
    )
        .prop_map(|(key, value, s3)| {
            if key == "s3" && !s3.is_empty() {
                let inner: Vec<String> = s3.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("    s3: {{{}}}\n", inner.join(", "))
            } else {
                format!("    {key}: {value}\n")
            }
        });
    let entry = prop_oneof![3 => typed, 1 => generated];
    let image = prop_oneof![
        3 => Just("    image: debian\n".to_owned()),
        1 => Just(String::new()),
    ];
    (image, prop::collection::vec(entry, 0..6)).prop_map(|(image, lines)| image + &lines.concat())
}

fn document() -> impl Strategy<Value = String> {
    let name = prop_oneof!["[a-z][a-z0-9-]{0,10}", ".{0,6}", Just("a".to_owned())];
    prop::collection::vec((name, function()), 0..4).prop_map(|functions| {
        let mut text = String::from("functions:\n");
        for (name, body) in functions {
            text.push_str(&format!("  {name}:\n{body}"));
        }
        text
    })
}

/// What `init -f` relies on in an accepted file.
fn check_accepted(definitions: &Definitions) {
    assert!(!definitions.functions.0.is_empty());
    for (name, function) in &definitions.functions.0 {
        assert!(crate::init::check_name(name).is_ok(), "{name:?} accepted");
        assert_ne!(function.image.is_some(), function.image_file.is_some());
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn generated_definition_files_are_accepted_or_refused_never_a_panic(text in document()) {
        match Definitions::parse(&text) {
            Ok(definitions) => check_accepted(&definitions),
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn arbitrary_text_is_refused_or_accepted_never_a_panic(text in ".{0,300}") {
        if let Ok(definitions) = Definitions::parse(&text) {
            check_accepted(&definitions);
        }
    }
}

/// The "billion laughs": aliases nested so that expanding them would need gigabytes.
#[test]
fn an_alias_bomb_is_refused_quickly() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let previous = format!("*a{}", level - 1);
        let row = vec![previous; 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{row}]\n"));
    }
    text.push_str("functions:\n  f:\n    image: debian\n    description: *a9\n");
    let started = std::time::Instant::now();
    let refused = Definitions::parse(&text);
    assert!(refused.is_err(), "an alias bomb was accepted");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
