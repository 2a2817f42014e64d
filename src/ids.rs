//! Object IDs: 64 lowercase hex characters from the kernel's random source, as
//! containerd and cri-o make them; clients may name an object by a unique prefix.

use std::io::Read;

/// A fresh random ID. Reading `/dev/urandom` cannot fail on a working Linux
/// host; should it, the clock and pid still make the ID unique enough to not
/// collide within this process, and the store rejects a collision anyway.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        use sha2::Digest;
        bytes.copy_from_slice(&sha2::Sha256::digest(seed));
    }
    hex::encode(bytes)
}

/// How a lookup by ID or prefix came out.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(String),
    NotFound,
    Ambiguous(usize),
}

/// Finds the one ID among `ids` that `wanted` names, fully or by a unique prefix.
pub fn resolve<'a>(wanted: &str, ids: impl IntoIterator<Item = &'a str>) -> Lookup {
    if wanted.is_empty() {
        return Lookup::NotFound;
    }
    let matches: Vec<&str> = ids.into_iter().filter(|id| id.starts_with(wanted)).collect();
    if let Some(exact) = matches.iter().find(|id| **id == wanted) {
        return Lookup::Found(exact.to_string());
    }
    match matches.len() {
        0 => Lookup::NotFound,
        1 => Lookup::Found(matches[0].to_string()),
        n => Lookup::Ambiguous(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn prefixes_resolve_when_unique() {
        let ids = ["abc1", "abc2", "def"];
        assert_eq!(resolve("d", ids), Lookup::Found("def".into()));
        assert_eq!(resolve("abc", ids), Lookup::Ambiguous(2));
        assert_eq!(resolve("abc2", ids), Lookup::Found("abc2".into()));
        assert_eq!(resolve("x", ids), Lookup::NotFound);
        assert_eq!(resolve("", ids), Lookup::NotFound);
    }
}
