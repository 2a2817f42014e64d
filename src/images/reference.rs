//! Image references as docker and containerd read them: `busybox` is
//! `docker.io/library/busybox:latest`; tag, digest and tag+digest; registry with port.

use oci_client::Reference;

use super::error::ImageError;

/// The longest DNS name (253 characters, RFC 1035) and a port.
const REGISTRY_MAX: usize = 253 + ":65535".len();

/// A parsed, normalised reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    inner: Reference,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let invalid = |reason: String| ImageError::InvalidReference { reference: text.to_string(), reason };
        if text.is_empty() {
            return Err(invalid("empty".into()));
        }
        if text.len() > 4096 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains whitespace or is too long".into()));
        }
        let inner: Reference = text.parse().map_err(|e: oci_client::ParseError| invalid(e.to_string()))?;
        if let Some(digest) = inner.digest() {
            validate_digest(digest).map_err(invalid)?;
        }
        // The grammar bounds everything but the host: an unbounded one would make the normalised
        // form (`whole`, `tagged`, `with_digest`) longer than this function accepts back.
        if inner.registry().len() > REGISTRY_MAX {
            return Err(invalid(format!("registry of {} characters exceeds {REGISTRY_MAX}", inner.registry().len())));
        }
        for component in inner.repository().split('/') {
            validate_path_component(component).map_err(invalid)?;
        }
        if let Some(tag) = inner.tag() {
            validate_tag(tag).map_err(invalid)?;
        }
        Ok(ImageRef { inner })
    }

    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// `docker.io/library/busybox`
    pub fn name(&self) -> String {
        format!("{}/{}", self.inner.registry(), self.inner.repository())
    }

    /// The normalised tag reference (`docker.io/library/busybox:latest`), if the
    /// reference names a tag; a pure digest reference has none.
    pub fn tagged(&self) -> Option<String> {
        self.inner.tag().map(|tag| format!("{}:{tag}", self.name()))
    }

    /// `name@digest`, the form of `repo_digests`.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// The full normalised reference.
    pub fn whole(&self) -> String {
        self.inner.whole()
    }

    /// The same image on another host (a mirror, or docker.io's real endpoint).
    pub fn on_host(&self, host: &str) -> Reference {
        let mut reference = self.inner.clone();
        reference.set_mirror_registry(host.to_string());
        reference
    }

    /// The same reference pinned to `digest` (its tag resolved elsewhere), the
    /// tag kept for naming.
    pub fn pinned(&self, digest: &str) -> ImageRef {
        let (registry, repository) = (self.registry().to_string(), self.repository().to_string());
        let inner = match self.inner.tag() {
            Some(tag) => Reference::with_tag_and_digest(registry, repository, tag.to_string(), digest.to_string()),
            None => Reference::with_digest(registry, repository, digest.to_string()),
        };
        ImageRef { inner }
    }

    /// The reference pinned to a digest, on `host`.
    pub fn by_digest_on(&self, host: &str, digest: &str) -> Reference {
        let mut reference = Reference::with_digest(self.registry().into(), self.repository().into(), digest.into());
        reference.set_mirror_registry(host.to_string());
        reference
    }
}

/// `sha256:<64 lowercase hex>`: the only digest algorithm registries use for images.
pub fn validate_digest(digest: &str) -> Result<(), String> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| format!("unsupported digest {digest:?}"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("malformed digest {digest:?}"));
    }
    Ok(())
}

/// A repository path component: lowercase alphanumerics joined by one `.`, one
/// or two `_`, or any number of `-` (the distribution grammar).
fn validate_path_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = !bytes.is_empty() && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]) && {
        let mut separator = String::new();
        bytes.iter().all(|&b| {
            if alnum(b) {
                let ok = matches!(separator.as_str(), "" | "." | "_" | "__") || separator.bytes().all(|c| c == b'-');
                separator.clear();
                ok
            } else if matches!(b, b'.' | b'_' | b'-') {
                separator.push(b as char);
                true
            } else {
                false
            }
        })
    };
    if valid {
        Ok(())
    } else {
        Err(format!("repository component {component:?} must be lowercase [a-z0-9] joined by '.', '_', '__' or '-'"))
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), String> {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 128
        && word(&bytes[0])
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-');
    if valid { Ok(()) } else { Err(format!("invalid tag {tag:?}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn normalises_like_docker() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.tagged().as_deref(), Some("docker.io/library/busybox:latest"));
        let r = ImageRef::parse("quay.io/org/app:1.0").unwrap();
        assert_eq!(r.tagged().as_deref(), Some("quay.io/org/app:1.0"));
        let r = ImageRef::parse("localhost:5000/app").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.tagged().as_deref(), Some("localhost:5000/app:latest"));
        let r = ImageRef::parse("user/app").unwrap();
        assert_eq!(r.name(), "docker.io/user/app");
    }

    #[test]
    fn digest_and_tag_plus_digest() {
        let r = ImageRef::parse(&format!("127.0.0.1:5000/app@{D}")).unwrap();
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.tagged(), None);
        let r = ImageRef::parse(&format!("app:1@{D}")).unwrap();
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.tagged().as_deref(), Some("docker.io/library/app:1"));
        assert_eq!(r.with_digest(D), format!("docker.io/library/app@{D}"));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER/case",
            "app:",
            "app@sha256:short",
            "a b",
            "app@md5:aaaa",
            "-app",
            "app:tag:tag",
            "a..b",
            "app:.x",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(matches!(err, ImageError::InvalidReference { .. }), "{bad:?}: {err}");
        }
    }
}
