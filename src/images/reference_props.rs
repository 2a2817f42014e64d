//! Property tests of image reference parsing: arbitrary text, references built
//! from the distribution grammar, and such references mutated. A reference
//! comes from a pod spec or a CLI, so whatever it is, parsing must not panic,
//! a refusal must name the reference and say why, and an accepted one must
//! survive being written out and read back (the catalog stores the written form).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;

use super::error::ImageError;
use super::reference::ImageRef;

/// A failure is kept as a named regression test below rather than in a file
/// beside the sources.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 4096, ..ProptestConfig::default() }
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The start of a text, for messages about texts up to 4 KiB long.
fn short(text: &str) -> String {
    let mut cut: String = text.chars().take(100).collect();
    if cut.len() < text.len() {
        cut.push_str(&format!("... ({} bytes)", text.len()));
    }
    format!("{cut:?}")
}

/// What every parse must give: a reference that round-trips, or an error
/// naming the input with a reason.
fn check(text: &str) -> Result<ImageRef, String> {
    match ImageRef::parse(text) {
        Ok(parsed) => {
            check_round_trip(&parsed);
            Ok(parsed)
        }
        Err(ImageError::InvalidReference { reference, reason }) => {
            assert!(reference == text, "the error names another reference than {}", short(text));
            assert!(!reason.trim().is_empty(), "no reason given for refusing {}", short(text));
            Err(reason)
        }
        Err(other) => panic!("{}: not an InvalidReference: {}", short(text), short(&other.to_string())),
    }
}

fn check_round_trip(parsed: &ImageRef) {
    let whole = parsed.whole();
    let again = ImageRef::parse(&whole)
        .unwrap_or_else(|e| panic!("{} does not read back: {}", short(&whole), short(&e.to_string())));
    assert!(&again == parsed, "{} reads back differently", short(&whole));
    assert!(again.whole() == whole, "the written form of {} is not stable", short(&whole));
    assert_eq!(parsed.name(), format!("{}/{}", parsed.registry(), parsed.repository()));
    if let Some(tagged) = parsed.tagged() {
        let by_tag =
            ImageRef::parse(&tagged).unwrap_or_else(|e| panic!("{}: {}", short(&tagged), short(&e.to_string())));
        assert_eq!((by_tag.name(), by_tag.tagged(), by_tag.digest()), (parsed.name(), Some(tagged), None));
    }
    let pinned = parsed.with_digest(DIGEST);
    let by_digest =
        ImageRef::parse(&pinned).unwrap_or_else(|e| panic!("{}: {}", short(&pinned), short(&e.to_string())));
    assert_eq!((by_digest.name(), by_digest.digest()), (parsed.name(), Some(DIGEST)));
}

// ---- the grammar ----------------------------------------------------------------------------

/// A DNS label: alphanumerics, hyphens inside; uppercase is allowed in hosts.
fn label() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9]", "[a-zA-Z0-9][a-zA-Z0-9-]{0,10}[a-zA-Z0-9]"]
}

/// A registry host: dotted labels, `localhost` or a dotless host with a port
/// (what makes the first component a host rather than a path), an optional port.
fn domain() -> impl Strategy<Value = String> {
    let dotted = vec(label(), 2..5).prop_map(|labels| labels.join("."));
    let host = prop_oneof![3 => dotted, 1 => Just("localhost".to_string()), 1 => Just("index.docker.io".to_string())];
    let port = prop_oneof![2 => Just(String::new()), 1 => (0..=99999u32).prop_map(|p| format!(":{p}"))];
    let plain = (host, port).prop_map(|(host, port)| host + &port);
    let dotless_with_port = (label(), 0..=99999u32).prop_map(|(host, port)| format!("{host}:{port}"));
    prop_oneof![4 => plain, 1 => dotless_with_port]
}

/// A path component: lowercase alphanumerics joined by `.`, `_`, `__` or dashes.
fn path_component() -> impl Strategy<Value = String> {
    let separator = prop_oneof![Just("."), Just("_"), Just("__"), Just("-"), Just("--"), Just("---")];
    ("[a-z0-9]{1,8}", vec((separator, "[a-z0-9]{1,8}"), 0..3)).prop_map(|(first, rest)| {
        rest.into_iter().fold(first, |mut component, (separator, part)| {
            component.push_str(separator);
            component.push_str(&part);
            component
        })
    })
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", "[A-Za-z0-9_][A-Za-z0-9_.-]{100,127}"]
}

fn digest() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}"))
}

#[derive(Debug, Clone)]
struct Parts {
    domain: Option<String>,
    path: Vec<String>,
    tag: Option<String>,
    digest: Option<String>,
}

impl Parts {
    fn text(&self) -> String {
        let mut text = self.domain.as_ref().map(|domain| format!("{domain}/")).unwrap_or_default();
        text.push_str(&self.path.join("/"));
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest);
        }
        text
    }

    /// docker's normalisation: a first component with a `.` or `:`, or
    /// `localhost`, names the registry, else `docker.io` (`index.docker.io` is
    /// its old name) whose one-component names get `library/`; `latest` when
    /// neither tag nor digest is given.
    fn normalised(&self) -> (String, String, Option<String>) {
        let name = self.domain.iter().chain(&self.path).cloned().collect::<Vec<_>>().join("/");
        let (mut registry, mut repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.clone()),
        };
        if registry == "index.docker.io" {
            registry = "docker.io".to_string();
        }
        if registry == "docker.io" && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        let tag = match (&self.tag, &self.digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.clone(),
        };
        (registry, repository, tag)
    }
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        prop::option::weighted(0.6, domain()),
        prop_oneof![4 => vec(path_component(), 1..4), 1 => vec(path_component(), 4..40)],
        prop::option::weighted(0.6, tag()),
        prop::option::weighted(0.3, digest()),
    )
        .prop_map(|(domain, path, tag, digest)| Parts { domain, path, tag, digest })
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(Index, char),
    Replace(Index, char),
    Remove(Index),
}

/// Characters that matter to the grammar, and some that must never pass.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![':', '@', '/', '.', '_', '-', 'A', 'Z', 'a', '0', '9']),
        1 => prop::sample::select(vec![' ', '\t', '\n', '\0', '\u{7f}', 'é', 'ß', '\u{200b}', '+', '%', '#']),
        1 => any::<char>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), interesting_char()).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<Index>(), interesting_char()).prop_map(|(at, c)| Edit::Replace(at, c)),
        any::<Index>().prop_map(Edit::Remove),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        match edit {
            Edit::Insert(at, c) => chars.insert(at.index(chars.len() + 1), *c),
            Edit::Replace(at, c) if !chars.is_empty() => {
                let i = at.index(chars.len());
                chars[i] = *c;
            }
            Edit::Remove(at) if !chars.is_empty() => {
                chars.remove(at.index(chars.len()));
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

// ---- the properties -------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_text_parses_or_is_refused(text in prop_oneof![any::<String>(), "[a-zA-Z0-9:/@._-]{0,64}"]) {
        let _ = check(&text);
    }

    #[test]
    fn grammar_built_references_parse_as_docker_reads_them(parts in parts()) {
        let text = parts.text();
        let (registry, repository, tag) = parts.normalised();
        // The one limit the grammar leaves out: 255 characters of repository.
        if repository.len() > 255 {
            prop_assert!(check(&text).is_err(), "{text:?}: a {}-character repository accepted", repository.len());
            return Ok(());
        }
        let parsed = check(&text).map_err(|reason| TestCaseError::fail(format!("{text:?}: {reason}")))?;
        prop_assert_eq!(parsed.registry(), registry.as_str());
        prop_assert_eq!(parsed.repository(), repository.as_str());
        prop_assert_eq!(parsed.tagged(), tag.map(|tag| format!("{registry}/{repository}:{tag}")));
        prop_assert_eq!(parsed.digest(), parts.digest.as_deref());
    }

    #[test]
    fn edited_references_parse_or_are_refused(parts in parts(), edits in vec(edit(), 1..4)) {
        let _ = check(&apply(&parts.text(), &edits));
    }

    /// Hosts as long as the grammar allows, which has no limit of its own.
    #[test]
    fn long_hosts_parse_or_are_refused(labels in 1..2100usize, extra in 0..3usize, path in path_component()) {
        let host = vec!["a"; labels].join(".") + &"b".repeat(extra);
        let _ = check(&format!("{host}.io/{path}"));
    }
}

// ---- regressions found by the properties above ----------------------------------------------

/// A 4 KiB host was accepted, but its written form (`:latest` appended) was
/// then over the 4096-byte input limit and could not be read back.
#[test]
fn a_host_too_long_to_write_back_is_refused() {
    let text = format!("{}.io/0aaaaa", vec!["a"; 2008].join("."));
    assert!(text.len() <= 4096);
    let reason = check(&text).unwrap_err();
    assert!(reason.contains("registry"), "{reason}");
    // The longest DNS name with a port still parses.
    let host = format!("{}.{}.{}.{}:65535", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
    assert_eq!(host.len(), 259);
    let parsed = check(&format!("{host}/app")).unwrap();
    assert_eq!(parsed.registry(), host);
}
