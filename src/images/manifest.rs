//! Manifests and indexes, OCI and Docker schema2 alike (their JSON has the same
//! shape), and choosing this host's platform from an index.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::Value;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// What berth asks registries for. Schema1 is left out on purpose: a registry
/// that can convert will send schema2, and one that cannot is refused clearly.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

pub const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Both boxed: the documents are large and moved around by value.
pub enum Parsed {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Reads a manifest or index. The media type comes from the document itself
/// (and, failing that, from its shape): `mediaType` is optional in OCI.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let media_type = value.get("mediaType").and_then(Value::as_str).unwrap_or_default().to_string();
    let schema = value.get("schemaVersion").and_then(Value::as_i64).unwrap_or(0);
    if DOCKER_SCHEMA1.contains(&media_type.as_str()) || schema == 1 {
        return Err(
            "Docker schema1 manifests are not supported (deprecated; push the image again with a current client)"
                .into(),
        );
    }
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => value.get("manifests").is_some(),
        other => return Err(format!("unsupported manifest media type {other:?}")),
    };
    if is_index {
        serde_json::from_value(value).map(|i| Parsed::Index(Box::new(i))).map_err(|e| format!("malformed index: {e}"))
    } else {
        serde_json::from_value(value)
            .map(|m| Parsed::Manifest(Box::new(m)))
            .map_err(|e| format!("malformed manifest: {e}"))
    }
}

/// This host's platform in OCI terms.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// The index entry for `os`/`arch`; arm64 with no variant and `v8` are the same.
pub fn select_platform<'a>(index: &'a ImageIndex, os: &str, arch: &str) -> Result<&'a Descriptor, String> {
    let normal_variant = |arch: &str, variant: Option<&str>| match (arch, variant) {
        ("arm64", Some("v8") | None | Some("")) => None,
        (_, Some("")) => None,
        (_, v) => v.map(str::to_string),
    };
    let wanted_variant = normal_variant(arch, None);
    let found = index.manifests().iter().find(|entry| {
        entry.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == os
                && p.architecture().to_string() == arch
                && normal_variant(arch, p.variant().as_deref()) == wanted_variant
        })
    });
    found.ok_or_else(|| {
        let available: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|m| m.platform().as_ref())
            .map(|p| match p.variant() {
                Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os(), p.architecture()),
                _ => format!("{}/{}", p.os(), p.architecture()),
            })
            .collect();
        format!("no manifest for {os}/{arch} in the index (it has: {})", available.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = Value::from(*v);
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "size": 1, "digest": format!("sha256:{:064x}", i), "platform": platform})
            })
            .collect();
        let doc = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        match parse(doc.to_string().as_bytes()).unwrap() {
            Parsed::Index(index) => *index,
            Parsed::Manifest(_) => panic!("not an index"),
        }
    }

    #[test]
    fn picks_the_host_platform_and_normalises_arm64_v8() {
        let idx = index(&[("linux", "arm", Some("v7")), ("linux", "arm64", Some("v8")), ("linux", "amd64", None)]);
        assert_eq!(select_platform(&idx, "linux", "amd64").unwrap().digest().to_string(), format!("sha256:{:064x}", 2));
        assert_eq!(select_platform(&idx, "linux", "arm64").unwrap().digest().to_string(), format!("sha256:{:064x}", 1));
        let err = select_platform(&idx, "linux", "s390x").unwrap_err();
        assert!(err.contains("linux/arm/v7") && err.contains("linux/amd64"), "{err}");
    }

    #[test]
    fn schema1_and_unknown_types_are_refused() {
        let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(parse(schema1).err().unwrap().contains("schema1"));
        let odd = br#"{"schemaVersion":2,"mediaType":"application/x-odd","layers":[]}"#;
        assert!(parse(odd).err().unwrap().contains("unsupported"));
    }
}
