//! The OCI runtime spec of a container, from its CRI config, its pod and its image.
