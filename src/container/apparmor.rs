//! berth's default AppArmor profile (`RuntimeDefault` on a host with AppArmor),
//! loaded at start when the kernel does not have it yet, as containerd does for
//! its own. Without it, every container asking for the runtime default (kubelet
//! asks for it on every AppArmor node) would fail in the OCI runtime.

use std::io::Write;
use std::process::Command;

use super::spec::DEFAULT_APPARMOR_PROFILE;

/// Where the kernel lists its loaded profiles, one `<name> (<mode>)` per line.
const LOADED_PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// The profile: everything a container normally does is allowed (the namespaces,
/// capabilities and seccomp already confine it); what reaches the host's kernel
/// state around them is denied.
pub fn default_profile() -> String {
    format!(
        r#"#include <tunables/global>

profile {name} flags=(attach_disconnected,mediate_deleted) {{
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,
  # Containers mount nothing themselves: kubelet's mounts are made before they start.
  deny mount,

  # /proc: host-wide knobs and memory. A pid's own files (/proc/<pid>/...) stay writable.
  deny @{{PROC}}/* w,
  deny @{{PROC}}/{{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}}/** w,
  deny @{{PROC}}/sys/[^k]** w,
  deny @{{PROC}}/sys/kernel/{{?,??,[^s][^h][^m]**}} w,
  deny @{{PROC}}/sysrq-trigger rwklx,
  deny @{{PROC}}/kcore rwklx,

  # /sys: read-only except the container's own cgroup files; firmware and LSM state hidden.
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,

  # Containers under this profile may signal and trace each other as their
  # namespaces allow; the runtime (unconfined) may signal them.
  signal (receive) peer=unconfined,
  signal (send,receive) peer={name},
  ptrace (trace,read,tracedby,readby) peer={name},
}}
"#,
        name = DEFAULT_APPARMOR_PROFILE
    )
}

fn is_loaded(profiles: &str) -> bool {
    profiles.lines().any(|line| line.split(" (").next() == Some(DEFAULT_APPARMOR_PROFILE))
}

/// Loads the default profile unless the kernel has it. Called once at start on
/// hosts with AppArmor; the error says why the profile could not be loaded.
pub fn ensure_default_profile() -> Result<(), String> {
    if std::fs::read_to_string(LOADED_PROFILES).is_ok_and(|profiles| is_loaded(&profiles)) {
        return Ok(());
    }
    parse_profile(&["-r"])?;
    tracing::info!(profile = DEFAULT_APPARMOR_PROFILE, "AppArmor profile loaded");
    Ok(())
}

/// Runs `apparmor_parser -K <extra> <profile file>` (-K: no cache, the profile is small).
fn parse_profile(extra: &[&str]) -> Result<(), String> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| format!("writing the profile: {e}"))?;
    file.write_all(default_profile().as_bytes()).map_err(|e| format!("writing the profile: {e}"))?;
    let output = Command::new("apparmor_parser")
        .arg("-K")
        .args(extra)
        .arg(file.path())
        .output()
        .map_err(|e| format!("running apparmor_parser: {e}"))?;
    if !output.status.success() {
        return Err(format!("apparmor_parser: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_profiles_are_recognised_by_name() {
        assert!(is_loaded("docker-default (enforce)\nberth-default (enforce)\n"));
        assert!(!is_loaded("berth-default-old (enforce)\n"));
    }

    /// apparmor_parser -Q parses and compiles without loading into the kernel, so
    /// this runs on hosts without AppArmor too (hack/setup.sh installs the parser).
    #[test]
    fn the_default_profile_compiles() {
        if let Err(e) = parse_profile(&["-Q"]) {
            panic!("{e}\n{}", default_profile());
        }
    }
}
