//! Plugins' adjustments of a container being created, applied to its OCI
//! spec before the runtime sees it.
//!
//! Applied: annotations, environment, arguments, mounts, devices (with their
//! cgroup rule), OCI hooks (added to those there are), rlimits, the OOM score
//! (raised to what berth may set, as the spec builder does), and the memory,
//! CPU and PIDs limits and cgroups path. NRI's removal marks are honoured (a
//! key, mount destination or device path prefixed `-` removes it). Two
//! plugins touching the same thing is a conflict, as NRI specifies: the create
//! fails naming both. Anything else a plugin asks for (CDI devices,
//! namespaces, sysctls, seccomp, scheduling, RDT, ...) is refused by name
//! rather than silently not done.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::api;
use super::service::NriError;

/// Who set what: the first plugin to touch a field owns it.
#[derive(Default)]
struct Owners(HashMap<String, String>);

impl Owners {
    fn claim(&mut self, field: String, plugin: &str) -> Result<(), NriError> {
        match self.0.get(&field) {
            Some(owner) if owner != plugin => Err(NriError::Conflict { field, first: owner.clone(), second: plugin.into() }),
            _ => {
                self.0.insert(field, plugin.to_string());
                Ok(())
            }
        }
    }
}

/// Applies each plugin's adjustment in turn (plugins' index order).
pub fn apply(
    spec: &mut oci_spec::runtime::Spec,
    adjustments: &[(String, api::ContainerAdjustment)],
    min_oom_score_adj: i64,
) -> Result<(), NriError> {
    if adjustments.iter().all(|(_, adjust)| *adjust == api::ContainerAdjustment::default()) {
        return Ok(());
    }
    let mut json = serde_json::to_value(&*spec).map_err(|e| internal(e.to_string()))?;
    let mut owners = Owners::default();
    for (plugin, adjust) in adjustments {
        refuse_unsupported(plugin, adjust)?;
        apply_one(&mut json, &mut owners, plugin, adjust, min_oom_score_adj)?;
    }
    *spec = serde_json::from_value(json).map_err(|e| internal(format!("the adjusted spec does not parse: {e}")))?;
    Ok(())
}

fn internal(message: String) -> NriError {
    NriError::Unsupported { plugin: "berth".into(), message }
}

fn refuse_unsupported(plugin: &str, adjust: &api::ContainerAdjustment) -> Result<(), NriError> {
    let linux = adjust.linux.clone().unwrap_or_default();
    let resources = linux.resources.clone().unwrap_or_default();
    let asked = [
        ("CDI_devices", !adjust.cdi_devices.is_empty()),
        ("linux.io_priority", linux.io_priority.is_some()),
        ("linux.seccomp_policy", linux.seccomp_policy.is_some()),
        ("linux.namespaces", !linux.namespaces.is_empty()),
        ("linux.sysctl", !linux.sysctl.is_empty()),
        ("linux.net_devices", !linux.net_devices.is_empty()),
        ("linux.scheduler", linux.scheduler.is_some()),
        ("linux.rdt", linux.rdt.is_some()),
        ("linux.resources.hugepage_limits", !resources.hugepage_limits.is_empty()),
        ("linux.resources.blockio_class", resources.blockio_class.is_some()),
        ("linux.resources.rdt_class", resources.rdt_class.is_some()),
        ("linux.resources.unified", !resources.unified.is_empty()),
        ("linux.resources.devices", !resources.devices.is_empty()),
    ];
    match asked.iter().find(|(_, asked)| *asked) {
        Some((field, _)) => Err(NriError::Unsupported {
            plugin: plugin.to_string(),
            message: format!("adjusts {field}, which berth does not apply yet"),
        }),
        None => Ok(()),
    }
}

fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(inner) => inner,
        _ => unreachable!("made an object just before"),
    }
}

fn array<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let entry = map.entry(key.to_string()).or_insert_with(|| json!([]));
    if !entry.is_array() {
        *entry = json!([]);
    }
    match entry {
        Value::Array(items) => items,
        _ => unreachable!("made an array just before"),
    }
}

fn apply_one(
    spec: &mut Value,
    owners: &mut Owners,
    plugin: &str,
    adjust: &api::ContainerAdjustment,
    min_oom_score_adj: i64,
) -> Result<(), NriError> {
    let Some(spec) = spec.as_object_mut() else { return Err(internal("the spec is not a JSON object".into())) };
    for (key, value) in &adjust.annotations {
        let (name, remove) = removal(key);
        owners.claim(format!("annotations[{name}]"), plugin)?;
        let annotations = object(spec, "annotations");
        if remove {
            annotations.remove(name);
        } else {
            annotations.insert(name.to_string(), json!(value));
        }
    }
    for kv in &adjust.env {
        let (name, remove) = removal(&kv.key);
        owners.claim(format!("env[{name}]"), plugin)?;
        let env = array(object(spec, "process"), "env");
        env.retain(|entry| entry.as_str().is_none_or(|e| e.split_once('=').map_or(e, |(k, _)| k) != name));
        if !remove {
            env.push(json!(format!("{name}={}", kv.value)));
        }
    }
    if !adjust.args.is_empty() {
        owners.claim("args".into(), plugin)?;
        object(spec, "process").insert("args".into(), json!(adjust.args));
    }
    for mount in &adjust.mounts {
        let (destination, remove) = removal(&mount.destination);
        owners.claim(format!("mounts[{destination}]"), plugin)?;
        let mounts = array(spec, "mounts");
        mounts.retain(|m| m.get("destination").and_then(Value::as_str) != Some(destination));
        if !remove {
            mounts.push(json!({
                "destination": destination,
                "type": if mount.r#type.is_empty() { "bind" } else { mount.r#type.as_str() },
                "source": mount.source,
                "options": mount.options,
            }));
        }
    }
    for rlimit in &adjust.rlimits {
        owners.claim(format!("rlimits[{}]", rlimit.r#type), plugin)?;
        let rlimits = array(object(spec, "process"), "rlimits");
        rlimits.retain(|r| r.get("type").and_then(Value::as_str) != Some(rlimit.r#type.as_str()));
        rlimits.push(json!({"type": rlimit.r#type, "hard": rlimit.hard, "soft": rlimit.soft}));
    }
    if let Some(hooks) = &adjust.hooks {
        add_hooks(spec, hooks);
    }
    let Some(linux) = &adjust.linux else { return Ok(()) };
    if let Some(oom) = &linux.oom_score_adj {
        owners.claim("linux.oom_score_adj".into(), plugin)?;
        object(spec, "process").insert("oomScoreAdj".into(), json!(oom.value.max(min_oom_score_adj)));
    }
    for device in &linux.devices {
        let (path, remove) = removal(&device.path);
        owners.claim(format!("devices[{path}]"), plugin)?;
        let devices = array(object(spec, "linux"), "devices");
        devices.retain(|d| d.get("path").and_then(Value::as_str) != Some(path));
        if remove {
            continue;
        }
        let mut entry = json!({"path": path, "type": device.r#type, "major": device.major, "minor": device.minor});
        if let Some(mode) = &device.file_mode {
            entry["fileMode"] = json!(mode.value);
        }
        if let Some(uid) = &device.uid {
            entry["uid"] = json!(uid.value);
        }
        if let Some(gid) = &device.gid {
            entry["gid"] = json!(gid.value);
        }
        devices.push(entry);
        // The device cgroup lets the container use what it now has.
        let rules = array(object(object(spec, "linux"), "resources"), "devices");
        rules.push(json!({"allow": true, "type": device.r#type, "major": device.major, "minor": device.minor, "access": "rwm"}));
    }
    if !linux.cgroups_path.is_empty() {
        owners.claim("linux.cgroups_path".into(), plugin)?;
        object(spec, "linux").insert("cgroupsPath".into(), json!(linux.cgroups_path));
    }
    let Some(resources) = &linux.resources else { return Ok(()) };
    let mut set = |path: &[&str], value: Value| -> Result<(), NriError> {
        owners.claim(format!("linux.resources.{}", path.join(".")), plugin)?;
        let mut at = object(object(spec, "linux"), "resources");
        for key in &path[..path.len() - 1] {
            at = object(at, key);
        }
        at.insert(path[path.len() - 1].to_string(), value);
        Ok(())
    };
    if let Some(memory) = &resources.memory {
        for (key, value) in [("limit", &memory.limit), ("reservation", &memory.reservation), ("swap", &memory.swap)] {
            if let Some(value) = value {
                set(&["memory", key], json!(value.value))?;
            }
        }
    }
    if let Some(cpu) = &resources.cpu {
        if let Some(shares) = &cpu.shares {
            set(&["cpu", "shares"], json!(shares.value))?;
        }
        if let Some(quota) = &cpu.quota {
            set(&["cpu", "quota"], json!(quota.value))?;
        }
        if let Some(period) = &cpu.period {
            set(&["cpu", "period"], json!(period.value))?;
        }
        if !cpu.cpus.is_empty() {
            set(&["cpu", "cpus"], json!(cpu.cpus))?;
        }
        if !cpu.mems.is_empty() {
            set(&["cpu", "mems"], json!(cpu.mems))?;
        }
    }
    if let Some(pids) = &resources.pids {
        set(&["pids", "limit"], json!(pids.limit))?;
    }
    Ok(())
}

/// Hooks are added to those the spec has (several plugins may each add some).
fn add_hooks(spec: &mut Map<String, Value>, hooks: &api::Hooks) {
    let kinds = [
        ("prestart", &hooks.prestart),
        ("createRuntime", &hooks.create_runtime),
        ("createContainer", &hooks.create_container),
        ("startContainer", &hooks.start_container),
        ("poststart", &hooks.poststart),
        ("poststop", &hooks.poststop),
    ];
    for (kind, list) in kinds {
        for hook in list {
            let mut entry = json!({"path": hook.path, "args": hook.args, "env": hook.env});
            if let Some(timeout) = &hook.timeout {
                entry["timeout"] = json!(timeout.value);
            }
            array(object(spec, "hooks"), kind).push(entry);
        }
    }
}

/// NRI's removal mark: a leading `-`.
fn removal(key: &str) -> (&str, bool) {
    match key.strip_prefix('-') {
        Some(name) => (name, true),
        None => (key, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> oci_spec::runtime::Spec {
        let mut spec = oci_spec::runtime::Spec::default();
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_env(Some(vec!["PATH=/bin".into(), "KEEP=1".into(), "DROP=1".into()]));
        spec.set_process(Some(process));
        spec
    }

    #[test]
    fn env_annotations_mounts_rlimits_and_resources_are_applied() {
        let adjust = api::ContainerAdjustment {
            annotations: HashMap::from([("nri.io/by".to_string(), "plugin".to_string())]),
            env: vec![
                api::KeyValue { key: "ADDED".into(), value: "yes".into() },
                api::KeyValue { key: "-DROP".into(), value: String::new() },
            ],
            mounts: vec![api::Mount {
                destination: "/data".into(),
                source: "/srv/data".into(),
                options: vec!["rbind".into(), "ro".into()],
                ..Default::default()
            }],
            rlimits: vec![api::PosixRlimit { r#type: "RLIMIT_NOFILE".into(), hard: 4096, soft: 1024 }],
            linux: Some(api::LinuxContainerAdjustment {
                resources: Some(api::LinuxResources {
                    memory: Some(api::LinuxMemory { limit: Some(api::OptionalInt64 { value: 1 << 26 }), ..Default::default() }),
                    cpu: Some(api::LinuxCpu { cpus: "0".into(), ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut spec = spec();
        apply(&mut spec, &[("10-test".into(), adjust)], -1000).unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, ["PATH=/bin", "KEEP=1", "ADDED=yes"]);
        assert_eq!(spec.annotations().as_ref().unwrap()["nri.io/by"], "plugin");
        let data = spec.mounts().as_ref().unwrap().iter().find(|m| m.destination().to_str() == Some("/data")).unwrap();
        assert_eq!(data.source().as_ref().unwrap().to_str(), Some("/srv/data"));
        let rlimits = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
        assert_eq!((rlimits[0].hard(), rlimits[0].soft()), (4096, 1024));
        let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(1 << 26));
        assert_eq!(resources.cpu().as_ref().unwrap().cpus().as_deref(), Some("0"));
    }

    #[test]
    fn two_plugins_on_one_field_conflict_and_the_unsupported_is_named() {
        let env = |value: &str| api::ContainerAdjustment {
            env: vec![api::KeyValue { key: "SAME".into(), value: value.into() }],
            ..Default::default()
        };
        let error = apply(&mut spec(), &[("10-a".into(), env("a")), ("20-b".into(), env("b"))], -1000).unwrap_err();
        assert!(matches!(&error, NriError::Conflict { field, first, second }
            if field == "env[SAME]" && first == "10-a" && second == "20-b"), "{error}");
        let cdi = api::ContainerAdjustment {
            cdi_devices: vec![api::CdiDevice { name: "vendor.com/gpu=0".into() }],
            ..Default::default()
        };
        let error = apply(&mut spec(), &[("10-a".into(), cdi)], -1000).unwrap_err();
        assert!(error.to_string().contains("CDI_devices"), "{error}");
    }

    #[test]
    fn hooks_add_up_devices_get_their_cgroup_rule_and_the_oom_score_is_raised_to_what_berth_may_set() {
        let hook = |path: &str| api::Hooks {
            create_container: vec![api::Hook { path: path.into(), args: vec![path.into()], ..Default::default() }],
            ..Default::default()
        };
        let first = api::ContainerAdjustment {
            hooks: Some(hook("/usr/bin/first")),
            linux: Some(api::LinuxContainerAdjustment {
                devices: vec![api::LinuxDevice { path: "/dev/fuse".into(), r#type: "c".into(), major: 10, minor: 229, ..Default::default() }],
                oom_score_adj: Some(api::OptionalInt { value: -999 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let second = api::ContainerAdjustment { hooks: Some(hook("/usr/bin/second")), ..Default::default() };
        let mut spec = spec();
        apply(&mut spec, &[("10-a".into(), first), ("20-b".into(), second)], 0).unwrap();
        let hooks = spec.hooks().clone().unwrap().create_container().clone().unwrap();
        let paths: Vec<_> = hooks.iter().map(|h| h.path().display().to_string()).collect();
        assert_eq!(paths, ["/usr/bin/first", "/usr/bin/second"]);
        let linux = spec.linux().clone().unwrap();
        let device = &linux.devices().clone().unwrap()[0];
        assert_eq!((device.path().to_str(), device.major(), device.minor()), (Some("/dev/fuse"), 10, 229));
        let rules = linux.resources().clone().unwrap().devices().clone().unwrap();
        assert!(rules.iter().any(|r| r.allow() && r.major() == Some(10) && r.minor() == Some(229)), "{rules:?}");
        assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(0), "raised to berth's own");
    }
}
