//! The container's process: what it runs, with which environment, where, as
//! whom, and under which limits.

use std::path::PathBuf;
use std::sync::Once;

use crate::cri::v1::{KeyValue, LinuxContainerResources, LinuxContainerSecurityContext};
use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process};

use super::{Security, SpecError, SpecInput, user};

/// The PATH of a container whose image sets none (Docker's and containerd's).
pub(super) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's RLIMIT_NOFILE: Go and Java programs raise their soft limit to
/// the hard one, and 1024 is too low for servers.
const NOFILE_LIMIT: u64 = 1_048_576;

pub(super) fn build(
    input: &SpecInput,
    sc: Option<&LinuxContainerSecurityContext>,
    security: &Security,
) -> Result<Process, SpecError> {
    let config = input.config;
    let image = input.image.config().as_ref();
    let resources = config.linux.as_ref().and_then(|linux| linux.resources.as_ref());
    let image_user = image.and_then(|image| image.user().as_deref());

    let mut process = Process::default();
    process
        .set_args(Some(args(&config.command, &config.args, image)?))
        .set_env(Some(env(image_env(image), &config.envs, &input.sandbox.hostname)))
        .set_cwd(cwd(&config.working_dir, image)?)
        .set_terminal(Some(config.tty))
        .set_user(user::resolve(sc, image_user, input.rootfs)?)
        .set_capabilities(Some(security.capabilities.clone()))
        .set_no_new_privileges(Some(security.no_new_privileges))
        .set_apparmor_profile(security.apparmor_profile.clone())
        .set_selinux_label(security.selinux_label.clone())
        .set_rlimits(Some(vec![nofile_rlimit(input.host.max_nofile)?]))
        .set_oom_score_adj(oom_score_adj(resources, input.host.min_oom_score_adj)?);
    Ok(process)
}

/// Kubernetes' rules (and Docker's): `command` replaces the image's
/// Entrypoint *and* Cmd; `args` alone replaces only Cmd.
pub(super) fn args(command: &[String], args: &[String], image: Option<&ImageConfig>) -> Result<Vec<String>, SpecError> {
    let entrypoint = image.and_then(|image| image.entrypoint().as_deref()).unwrap_or_default();
    let cmd = image.and_then(|image| image.cmd().as_deref()).unwrap_or_default();
    let merged: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else {
        let args = if args.is_empty() { cmd } else { args };
        // `ENTRYPOINT [""]` is how a Dockerfile clears an inherited entrypoint.
        let entrypoint = if entrypoint == [""] { &[][..] } else { entrypoint };
        entrypoint.iter().chain(args).cloned().collect()
    };
    if merged.is_empty() {
        return Err(SpecError::invalid("command", "no command given, and the image has no Entrypoint or Cmd"));
    }
    Ok(merged)
}

fn image_env(image: Option<&ImageConfig>) -> &[String] {
    image.and_then(|image| image.env().as_deref()).unwrap_or_default()
}

/// The default PATH and HOSTNAME, then the image's env, then the config's: a
/// later entry replaces an earlier one with the same name, in place.
pub(super) fn env(image_env: &[String], config_env: &[KeyValue], hostname: &str) -> Vec<String> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}")];
    // Values were checked to be UTF-8 (representable.rs).
    let config_env = config_env.iter().map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)));
    for entry in image_env.iter().cloned().chain(config_env) {
        set_env(&mut env, entry);
    }
    env
}

fn env_name(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(name, _)| name)
}

/// An entry without `=` unsets the variable, as containerd reads an image's Env (runc would refuse
/// to start a process with it).
fn set_env(env: &mut Vec<String>, entry: String) {
    if !entry.contains('=') {
        env.retain(|existing| env_name(existing) != entry);
        return;
    }
    match env.iter_mut().find(|existing| env_name(existing) == env_name(&entry)) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// The config's working dir, else the image's, else `/`. The OCI spec wants
/// it absolute; images built by Docker always have it so.
pub(super) fn cwd(working_dir: &str, image: Option<&ImageConfig>) -> Result<PathBuf, SpecError> {
    if !working_dir.is_empty() {
        if !working_dir.starts_with('/') {
            return Err(SpecError::invalid("working_dir", format!("{working_dir:?} is not an absolute path")));
        }
        return Ok(PathBuf::from(working_dir));
    }
    match image.and_then(|image| image.working_dir().as_deref()).filter(|dir| !dir.is_empty()) {
        Some(dir) => Ok(PathBuf::from("/").join(dir)),
        None => Ok(PathBuf::from("/")),
    }
}

/// containerd's limit, lowered to what berth may grant: a runtime cannot raise a
/// hard limit above its own without CAP_SYS_RESOURCE, and would fail the container.
fn nofile_rlimit(max: u64) -> Result<PosixRlimit, SpecError> {
    let value = NOFILE_LIMIT.min(max);
    let limit = PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).hard(value).soft(value);
    Ok(limit.build()?)
}

/// The requested oom_score_adj, raised to what berth may set (see
/// `HostFacts::min_oom_score_adj`). None without resources: the container then
/// inherits its monitor's.
pub(super) fn oom_score_adj(resources: Option<&LinuxContainerResources>, min: i64) -> Result<Option<i32>, SpecError> {
    let Some(resources) = resources else { return Ok(None) };
    let requested = resources.oom_score_adj;
    if !(-1000..=1000).contains(&requested) {
        return Err(SpecError::invalid(
            "linux.resources.oom_score_adj",
            format!("{requested} is outside -1000..=1000"),
        ));
    }
    let adj = requested.max(min);
    if adj != requested {
        static CLAMPED: Once = Once::new();
        CLAMPED.call_once(|| {
            tracing::info!(
                requested,
                min,
                "oom_score_adj below berth's own is raised to it (berth lacks CAP_SYS_RESOURCE); logged once"
            );
        });
    }
    // In range by the check above, so the conversion cannot fail.
    Ok(i32::try_from(adj).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        let mut builder = ConfigBuilder::default();
        if !entrypoint.is_empty() {
            builder = builder.entrypoint(strings(entrypoint));
        }
        if !cmd.is_empty() {
            builder = builder.cmd(strings(cmd));
        }
        builder.build().unwrap()
    }

    #[test]
    fn command_args_and_image_merge_by_kubernetes_rules() {
        let img = image(&["/entry", "-x"], &["default-arg"]);
        // (command, args, expected)
        let table: &[(&[&str], &[&str], &[&str])] = &[
            (&[], &[], &["/entry", "-x", "default-arg"]),
            (&[], &["a", "b"], &["/entry", "-x", "a", "b"]),
            (&["/bin/sh"], &[], &["/bin/sh"]),
            (&["/bin/sh"], &["-c", "true"], &["/bin/sh", "-c", "true"]),
        ];
        for (command, arguments, expected) in table {
            let got = args(&strings(command), &strings(arguments), Some(&img)).unwrap();
            assert_eq!(got, strings(expected), "command {command:?} args {arguments:?}");
        }
    }

    #[test]
    fn image_without_entrypoint_runs_cmd_or_args() {
        let img = image(&[], &["/bin/app"]);
        assert_eq!(args(&[], &[], Some(&img)).unwrap(), strings(&["/bin/app"]));
        assert_eq!(args(&[], &strings(&["/bin/other"]), Some(&img)).unwrap(), strings(&["/bin/other"]));
        let cleared = image(&[""], &["/bin/app"]);
        assert_eq!(args(&[], &[], Some(&cleared)).unwrap(), strings(&["/bin/app"]));
    }

    #[test]
    fn nothing_to_run_names_command() {
        let err = args(&[], &[], Some(&image(&[], &[]))).unwrap_err();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == "command"), "{err}");
        assert!(args(&[], &[], None).is_err());
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue { key: key.into(), value: value.into() }
    }

    #[test]
    fn env_defaults_path_and_hostname() {
        assert_eq!(env(&[], &[], "pod-a"), strings(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=pod-a"]));
    }

    #[test]
    fn env_config_wins_over_image_which_wins_over_defaults() {
        let image_env = strings(&["PATH=/opt/bin", "LANG=C", "A=image"]);
        let got = env(&image_env, &[kv("A", "config"), kv("B", "x=y")], "pod-a");
        assert_eq!(got, strings(&["PATH=/opt/bin", "HOSTNAME=pod-a", "LANG=C", "A=config", "B=x=y"]));
    }

    #[test]
    fn cwd_prefers_config_then_image_then_root() {
        let img = ConfigBuilder::default().working_dir("/srv").build().unwrap();
        assert_eq!(cwd("/work", Some(&img)).unwrap(), PathBuf::from("/work"));
        assert_eq!(cwd("", Some(&img)).unwrap(), PathBuf::from("/srv"));
        assert_eq!(cwd("", None).unwrap(), PathBuf::from("/"));
        assert!(cwd("relative", None).is_err());
    }

    #[test]
    fn oom_score_adj_is_clamped_to_the_host_minimum() {
        let resources = |adj| LinuxContainerResources { oom_score_adj: adj, ..Default::default() };
        assert_eq!(oom_score_adj(None, 0).unwrap(), None);
        assert_eq!(oom_score_adj(Some(&resources(-997)), -1000).unwrap(), Some(-997));
        assert_eq!(oom_score_adj(Some(&resources(-997)), -500).unwrap(), Some(-500));
        assert_eq!(oom_score_adj(Some(&resources(1000)), -500).unwrap(), Some(1000));
        assert!(oom_score_adj(Some(&resources(1001)), 0).is_err());
    }
}
