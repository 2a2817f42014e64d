//! Plugins' adjustments of a container being created, applied to its OCI
//! spec before the runtime sees it.
//!
//! Applied: annotations, environment, arguments, mounts, rlimits, and the
//! memory, CPU and PIDs limits and cgroups path. NRI's removal marks are
//! honoured (a key or mount destination prefixed `-` removes it). Two plugins
//! touching the same thing is a conflict, as NRI specifies: the create fails
//! naming both. Anything else a plugin asks for (devices, hooks, CDI devices,
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
pub fn apply(spec: &mut oci_spec::runtime::Spec, adjustments: &[(String, api::ContainerAdjustment)]) -> Result<(), NriError> {
    if adjustments.iter().all(|(_, adjust)| *adjust == api::ContainerAdjustment::default()) {
        return Ok(());
    }
    let mut json = serde_json::to_value(&*spec).map_err(|e| internal(e.to_string()))?;
    let mut owners = Owners::default();
    for (plugin, adjust) in adjustments {
        refuse_unsupported(plugin, adjust)?;
        apply_one(&mut json, &mut owners, plugin, adjust)?;
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
        ("hooks", adjust.hooks.as_ref().is_some_and(|h| *h != api::Hooks::default())),
        ("CDI_devices", !adjust.cdi_devices.is_empty()),
        ("linux.devices", !linux.devices.is_empty()),
        ("linux.oom_score_adj", linux.oom_score_adj.is_some()),
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

fn apply_one(spec: &mut Value, owners: &mut Owners, plugin: &str, adjust: &api::ContainerAdjustment) -> Result<(), NriError> {
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
    let Some(linux) = &adjust.linux else { return Ok(()) };
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
        apply(&mut spec, &[("10-test".into(), adjust)]).unwrap();
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
        let error = apply(&mut spec(), &[("10-a".into(), env("a")), ("20-b".into(), env("b"))]).unwrap_err();
        assert!(matches!(&error, NriError::Conflict { field, first, second }
            if field == "env[SAME]" && first == "10-a" && second == "20-b"), "{error}");
        let hooks = api::ContainerAdjustment {
            hooks: Some(api::Hooks { prestart: vec![api::Hook { path: "/x".into(), ..Default::default() }], ..Default::default() }),
            ..Default::default()
        };
        let error = apply(&mut spec(), &[("10-a".into(), hooks)]).unwrap_err();
        assert!(error.to_string().contains("hooks"), "{error}");
    }
}
