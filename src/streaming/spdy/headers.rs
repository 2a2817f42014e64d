use super::error::Error;

/// Largest header block (uncompressed) this module sends or accepts. Real
/// peers send a handful of short headers; the cap bounds what a hostile peer
/// can make us inflate.
pub(crate) const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// The name/value pairs of a SYN_STREAM or SYN_REPLY, in order.
///
/// Names are stored lowercase because SPDY/3 requires it on the wire (Go's
/// spdystream rejects a block with an uppercase name). A name may appear more
/// than once; on the wire its values are joined with NUL under one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value, keeping any earlier values of the same name.
    pub fn append(&mut self, name: impl AsRef<str>, value: impl Into<String>) -> &mut Self {
        self.entries.push((name.as_ref().to_ascii_lowercase(), value.into()));
        self
    }

    /// Builder form of [`Headers::append`].
    pub fn with(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.append(name, value);
        self
    }

    /// First value of `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of `name` in order (ASCII case-insensitive).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks what the wire format cannot carry, so that a bad header fails the
    /// caller's `open()` instead of the whole session's writer.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let mut size = 4usize;
        for (name, value) in &self.entries {
            if name.is_empty() {
                return Err(Error::protocol("empty header name"));
            }
            // NUL separates values on the wire, so it cannot appear inside one.
            if name.contains('\0') || value.contains('\0') {
                return Err(Error::protocol(format!("header {name:?} contains NUL")));
            }
            size = size.saturating_add(8 + name.len() + value.len());
        }
        if size > MAX_HEADER_BLOCK {
            return Err(Error::protocol(format!("header block of {size} bytes exceeds {MAX_HEADER_BLOCK}")));
        }
        Ok(())
    }

    /// Groups values by name in order of first appearance, as the wire needs.
    pub(crate) fn grouped(&self) -> Vec<(&str, Vec<&str>)> {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, value) in &self.entries {
            match groups.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(value),
                None => groups.push((name, vec![value])),
            }
        }
        groups
    }

    pub(crate) fn push_raw(&mut self, name: String, value: String) {
        self.entries.push((name, value));
    }
}

impl<N: AsRef<str>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.append(name, value);
        }
        headers
    }
}

impl<N: AsRef<str>, V: Into<String>, const K: usize> From<[(N, V); K]> for Headers {
    fn from(pairs: [(N, V); K]) -> Self {
        pairs.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_ordered() {
        let h = Headers::from([("streamType", "stdout"), ("Port", "80"), ("port", "443")]);
        assert_eq!(h.get("streamtype"), Some("stdout"));
        assert_eq!(h.get("STREAMTYPE"), Some("stdout"));
        assert_eq!(h.get_all("port").collect::<Vec<_>>(), ["80", "443"]);
        assert_eq!(h.iter().next(), Some(("streamtype", "stdout")));
        assert_eq!(h.get("missing"), None);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn grouping_keeps_first_appearance_order() {
        let h = Headers::from([("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(h.grouped(), vec![("a", vec!["1", "3"]), ("b", vec!["2"])]);
    }

    #[test]
    fn validate_rejects_what_the_wire_cannot_carry() {
        assert!(Headers::from([("a", "x\0y")]).validate().is_err());
        assert!(Headers::from([("", "x")]).validate().is_err());
        assert!(Headers::from([("a", "x".repeat(MAX_HEADER_BLOCK))]).validate().is_err());
        assert!(Headers::from([("a", "")]).validate().is_ok());
    }
}
