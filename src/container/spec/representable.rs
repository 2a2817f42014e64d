//! What the OCI runtime cannot carry, refused before the spec is built.

use super::{SpecError, SpecInput};

/// Strings the spec would carry that the runtime cannot pass on: a NUL cannot reach execve, a
/// path syscall or a kernel attribute, and runc refuses an environment variable without a name.
/// Refused here so that the error names the field instead of failing the start obscurely.
#[allow(deprecated)] // apparmor_profile, seccomp_profile_path: older kubelets still send them.
pub(super) fn refuse_unrepresentable(input: &SpecInput) -> Result<(), SpecError> {
    fn no_nul<'a>(fields: impl IntoIterator<Item = (String, &'a str)>) -> Result<(), SpecError> {
        match fields.into_iter().find(|(_, value)| value.contains('\0')) {
            Some((field, _)) => Err(SpecError::invalid(field, "contains a NUL byte")),
            None => Ok(()),
        }
    }
    fn indexed<'a>(list: &'a str, values: &'a [String]) -> impl Iterator<Item = (String, &'a str)> + 'a {
        values.iter().enumerate().map(move |(i, value)| (format!("{list}[{i}]"), value.as_str()))
    }
    let config = input.config;
    no_nul(indexed("command", &config.command).chain(indexed("args", &config.args)))?;
    no_nul([("working_dir".to_string(), config.working_dir.as_str())])?;
    for (i, kv) in config.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(SpecError::invalid(format!("envs[{i}].key"), format!("{:?} is not a variable name", kv.key)));
        }
        // Bytes on the wire since CRI 1.36; an OCI spec's env is JSON strings.
        let value = std::str::from_utf8(&kv.value)
            .map_err(|_| SpecError::invalid(format!("envs[{i}].value"), "is not UTF-8, which an OCI env cannot hold"))?;
        no_nul([(format!("envs[{i}].key"), kv.key.as_str()), (format!("envs[{i}].value"), value)])?;
    }
    for (i, mount) in config.mounts.iter().enumerate() {
        no_nul([
            (format!("mounts[{i}].container_path"), mount.container_path.as_str()),
            (format!("mounts[{i}].host_path"), mount.host_path.as_str()),
        ])?;
    }
    for (i, device) in config.devices.iter().enumerate() {
        no_nul([
            (format!("devices[{i}].container_path"), device.container_path.as_str()),
            (format!("devices[{i}].host_path"), device.host_path.as_str()),
        ])?;
    }
    let linux = config.linux.as_ref();
    if let Some(sc) = linux.and_then(|linux| linux.security_context.as_ref()) {
        let sc_field = |name: &str| format!("linux.security_context.{name}");
        no_nul(indexed("linux.security_context.masked_paths", &sc.masked_paths))?;
        no_nul(indexed("linux.security_context.readonly_paths", &sc.readonly_paths))?;
        let profiles = [("seccomp", &sc.seccomp), ("apparmor", &sc.apparmor)];
        no_nul(profiles.iter().filter_map(|(name, profile)| {
            profile.as_ref().map(|p| (sc_field(&format!("{name}.localhost_ref")), p.localhost_ref.as_str()))
        }))?;
        no_nul([
            (sc_field("apparmor_profile"), sc.apparmor_profile.as_str()),
            (sc_field("seccomp_profile_path"), sc.seccomp_profile_path.as_str()),
        ])?;
        if let Some(selinux) = &sc.selinux_options {
            let parts = [
                ("user", &selinux.user),
                ("role", &selinux.role),
                ("type", &selinux.r#type),
                ("level", &selinux.level),
            ];
            no_nul(parts.map(|(name, value)| (sc_field(&format!("selinux_options.{name}")), value.as_str())))?;
        }
    }
    if let Some(resources) = linux.and_then(|linux| linux.resources.as_ref()) {
        let field = |name: &str| format!("linux.resources.{name}");
        no_nul([
            (field("cpuset_cpus"), resources.cpuset_cpus.as_str()),
            (field("cpuset_mems"), resources.cpuset_mems.as_str()),
        ])?;
        no_nul(
            resources
                .hugepage_limits
                .iter()
                .enumerate()
                .map(|(i, limit)| (field(&format!("hugepage_limits[{i}].page_size")), limit.page_size.as_str())),
        )?;
        no_nul(
            resources
                .unified
                .iter()
                .flat_map(|(key, value)| [(field("unified"), key.as_str()), (field("unified"), value.as_str())]),
        )?;
    }
    // The image is input too: what it gives the process must be representable as well.
    if let Some(image) = input.image.config() {
        let lists = [image.entrypoint(), image.cmd(), image.env()];
        let strings = lists.into_iter().flatten().flatten().map(String::as_str).chain(image.working_dir().as_deref());
        if strings.clone().any(|value| value.contains('\0')) {
            return Err(SpecError::invalid(
                "image",
                "the image's Entrypoint, Cmd, Env or WorkingDir contains a NUL byte",
            ));
        }
        if let Some(entry) = image.env().iter().flatten().find(|entry| entry.starts_with('=')) {
            return Err(SpecError::invalid("image", format!("the image's Env entry {entry:?} has no variable name")));
        }
    }
    Ok(())
}
