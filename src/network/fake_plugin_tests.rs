//! ADD / DEL sequencing against fake plugins: shell scripts that record their environment and
//! stdin and print a canned answer. They touch nothing, so these tests are safe anywhere.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::error::{Classify, ErrorKind};

const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A real netns the fake plugins are told about (they never enter it).
const NETNS: &str = "/proc/self/ns/net";
const CNI_ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;\
K8S_POD_INFRA_CONTAINER_ID=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef;K8S_POD_UID=uid-42";

/// `fa` may get port mappings and IP ranges, `fb` bandwidth and DNS (and a capability berth
/// does not know), `fc` nothing.
const CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"fakenet","plugins":[
  {"type":"fa","capabilities":{"portMappings":true,"ipRanges":true,"bandwidth":false},"ipam":{"type":"fake-ipam"}},
  {"type":"fb","capabilities":{"bandwidth":true,"dns":true,"somethingNew":true}},
  {"type":"fc"}]}"#;

fn result_a() -> Value {
    json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "fakebr0"}, {"name": "eth0", "sandbox": NETNS}],
        "ips": [{"address": "10.1.2.1/24", "interface": 0}, {"address": "10.1.2.3/24", "interface": 1}]})
}

fn result_b() -> Value {
    let mut result = result_a();
    result["ips"].as_array_mut().unwrap().push(json!({"address": "fd00::3/64", "interface": 1}));
    result
}

fn result_c() -> Value {
    let mut result = result_b();
    result["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    result
}

/// A temp dir with a bin dir of fake plugins, a conf dir, a cache dir and the plugins' records.
struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        let bed = Bed { dir: tempfile::tempdir().unwrap() };
        for dir in ["bin", "conf", "records"] {
            std::fs::create_dir(bed.dir.path().join(dir)).unwrap();
        }
        for plugin in ["fa", "fb", "fc"] {
            bed.plugin(plugin);
        }
        std::fs::write(bed.conf().join("10-fake.conflist"), CONFLIST).unwrap();
        bed.answer("fa", "ADD", &result_a().to_string());
        bed.answer("fb", "ADD", &result_b().to_string());
        bed.answer("fc", "ADD", &result_c().to_string());
        bed
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn records(&self) -> PathBuf {
        self.dir.path().join("records")
    }

    /// The records dir is written into the script: the plugin's environment is cleared.
    fn plugin(&self, name: &str) {
        let script = format!(
            r#"#!/bin/sh
d='{records}'
n=$(basename "$0")
c="$CNI_COMMAND"
echo "$c $n $CNI_IFNAME" >> "$d/calls"
env > "$d/$n.$c.env"
cat > "$d/$n.$c.stdin"
if [ -f "$d/$n.$c.fail" ]; then cat "$d/$n.$c.fail"; exit 1; fi
if [ -f "$d/$n.$c.out" ]; then cat "$d/$n.$c.out"; fi
exit 0
"#,
            records = self.records().display()
        );
        write_executable(&self.bin().join(name), &script);
    }

    fn answer(&self, plugin: &str, command: &str, output: &str) {
        std::fs::write(self.records().join(format!("{plugin}.{command}.out")), output).unwrap();
    }

    fn fail(&self, plugin: &str, command: &str, error: Value) {
        std::fs::write(self.records().join(format!("{plugin}.{command}.fail")), error.to_string()).unwrap();
    }

    fn network(&self) -> Network {
        let config = CniConfig {
            conf_dir: self.conf(),
            bin_dirs: vec![self.dir.path().join("nope"), self.bin()],
            ..CniConfig::default()
        };
        Network::new(&config, self.cache())
    }

    fn calls(&self) -> Vec<String> {
        match std::fs::read_to_string(self.records().join("calls")) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn forget_calls(&self) {
        let _ = std::fs::remove_file(self.records().join("calls"));
    }

    fn stdin(&self, plugin: &str, command: &str) -> Value {
        let text = std::fs::read_to_string(self.records().join(format!("{plugin}.{command}.stdin"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn env(&self, plugin: &str, command: &str) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.records().join(format!("{plugin}.{command}.env"))).unwrap();
        text.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn cache_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.cache()) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn attachment() -> Attachment {
    Attachment {
        container_id: CONTAINER_ID.into(),
        netns: NETNS.into(),
        ifname: "eth0".into(),
        pod_namespace: "team-a".into(),
        pod_name: "web-0".into(),
        pod_uid: "uid-42".into(),
        port_mappings: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "TCP".into(),
            host_ip: "127.0.0.1".into(),
        }],
        bandwidth: Some(Bandwidth {
            ingress_rate: 1_000_000,
            ingress_burst: 2_000,
            egress_rate: 3_000_000,
            egress_burst: 4_000,
        }),
        dns: Some(Dns {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["svc.local".into()],
            options: vec!["ndots:5".into()],
        }),
    }
}

fn port_mappings() -> Value {
    json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
}

fn bandwidth() -> Value {
    json!({"ingressRate": 1_000_000, "ingressBurst": 2_000, "egressRate": 3_000_000, "egressBurst": 4_000})
}

fn dns() -> Value {
    json!({"servers": ["10.96.0.10"], "searches": ["svc.local"], "options": ["ndots:5"]})
}

#[tokio::test]
async fn add_runs_the_list_in_order_and_no_loopback_plugin() {
    let bed = Bed::new();
    let network = bed.network();
    network.set_pod_cidr(Some("10.1.2.0/24".into()));
    let pod = network.attach(&attachment()).await.unwrap();

    // `lo` is the sandbox's to bring up (sandbox/loopback.rs), without a plugin.
    assert_eq!(bed.calls(), ["ADD fa eth0", "ADD fb eth0", "ADD fc eth0"]);
    assert_eq!(pod.ips, ["10.1.2.3".parse::<std::net::IpAddr>().unwrap(), "fd00::3".parse().unwrap()]);
    assert_eq!(pod.interface.as_deref(), Some("eth0"));
    assert_eq!(pod.raw_result, result_c());
    assert_eq!(network.cached(CONTAINER_ID), Some(pod));
    assert_eq!(bed.cache_files(), [format!("{CONTAINER_ID}.json")]);
}

#[tokio::test]
async fn add_environment_is_the_spec_s_and_nothing_else() {
    let bed = Bed::new();
    bed.network().attach(&attachment()).await.unwrap();
    let env = bed.env("fa", "ADD");
    let expected = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", CONTAINER_ID),
        ("CNI_NETNS", NETNS),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", CNI_ARGS),
        ("CNI_PATH", &format!("{}:{}", bed.dir.path().join("nope").display(), bed.bin().display())),
    ];
    for (key, value) in expected {
        assert_eq!(env.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert!(env.contains_key("PATH"));
    // The shell adds PWD (and OLDPWD/SHLVL/_ depending on the shell) itself.
    let shell_own = ["PATH", "PWD", "OLDPWD", "SHLVL", "_"];
    let extra: Vec<_> = env.keys().filter(|k| !k.starts_with("CNI_") && !shell_own.contains(&k.as_str())).collect();
    assert!(extra.is_empty(), "berth's environment leaked: {extra:?}");
}

#[tokio::test]
async fn add_stdin_chains_results_and_grants_declared_capabilities_only() {
    let bed = Bed::new();
    let network = bed.network();
    network.set_pod_cidr(Some("10.1.2.0/24".into()));
    network.attach(&attachment()).await.unwrap();

    let fa = bed.stdin("fa", "ADD");
    assert_eq!((&fa["name"], &fa["cniVersion"], &fa["type"]), (&json!("fakenet"), &json!("1.0.0"), &json!("fa")));
    assert_eq!(fa["ipam"], json!({"type": "fake-ipam"}), "the plugin's own config is passed on");
    assert!(fa.get("prevResult").is_none(), "the first plugin has no previous result");
    assert_eq!(
        fa["runtimeConfig"],
        json!({"portMappings": port_mappings(), "ipRanges": [[{"subnet": "10.1.2.0/24"}]]})
    );

    let fb = bed.stdin("fb", "ADD");
    assert_eq!(fb["name"], "fakenet");
    assert_eq!(fb["prevResult"], result_a());
    assert_eq!(fb["runtimeConfig"], json!({"bandwidth": bandwidth(), "dns": dns()}));

    let fc = bed.stdin("fc", "ADD");
    assert_eq!(fc["prevResult"], result_b());
    assert!(fc.get("runtimeConfig").is_none(), "{fc}");
}

#[tokio::test]
async fn no_pod_cidr_means_no_ip_ranges() {
    let bed = Bed::new();
    bed.network().attach(&attachment()).await.unwrap();
    assert_eq!(bed.stdin("fa", "ADD")["runtimeConfig"], json!({"portMappings": port_mappings()}));
}

#[tokio::test]
async fn failing_second_plugin_is_cleaned_up_and_named() {
    let bed = Bed::new();
    bed.fail("fb", "ADD", json!({"cniVersion": "1.0.0", "code": 11, "msg": "no free addresses", "details": "pool 7"}));
    let err = bed.network().attach(&attachment()).await.unwrap_err();

    let NetworkError::Plugin(plugin_error) = &err else { panic!("{err}") };
    assert_eq!(plugin_error.plugin, "fb");
    assert_eq!(plugin_error.code, Some(11));
    let text = err.to_string();
    assert!(text.contains("\"fb\"") && text.contains("no free addresses") && text.contains("pool 7"), "{text}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(bed.calls(), ["ADD fa eth0", "ADD fb eth0", "DEL fc eth0", "DEL fb eth0", "DEL fa eth0"]);
    assert_eq!(bed.stdin("fc", "DEL")["prevResult"], result_a(), "cleanup hands DEL the last result there was");
    assert!(bed.cache_files().is_empty(), "{:?}", bed.cache_files());
    assert_eq!(bed.network().cached(CONTAINER_ID), None);
}

#[tokio::test]
async fn cleanup_of_a_failed_add_survives_failing_deletes() {
    let bed = Bed::new();
    bed.fail("fa", "ADD", json!({"code": 7, "msg": "bad config"}));
    bed.fail("fb", "DEL", json!({"code": 11, "msg": "busy"}));
    let err = bed.network().attach(&attachment()).await.unwrap_err();
    assert!(err.to_string().contains("bad config"), "{err}");
    assert_eq!(bed.calls()[1..], ["DEL fc eth0", "DEL fb eth0", "DEL fa eth0"]);
    assert!(bed.cache_files().is_empty());
}

#[tokio::test]
async fn del_after_restart_uses_the_cached_config_in_reverse() {
    let bed = Bed::new();
    let network = bed.network();
    network.set_pod_cidr(Some("10.1.2.0/24".into()));
    network.attach(&attachment()).await.unwrap();
    drop(network);
    bed.forget_calls();
    std::fs::remove_file(bed.conf().join("10-fake.conflist")).unwrap();

    let restarted = bed.network();
    assert!(matches!(restarted.attach(&attachment()).await, Err(NetworkError::NotReady(_))));
    assert!(restarted.cached(CONTAINER_ID).is_some(), "a restart still knows the pod's addresses");
    restarted.detach(CONTAINER_ID, None).await.unwrap();

    assert_eq!(bed.calls(), ["DEL fc eth0", "DEL fb eth0", "DEL fa eth0"]);
    let fa = bed.stdin("fa", "DEL");
    assert_eq!(fa["prevResult"], result_c());
    assert_eq!(
        fa["runtimeConfig"],
        json!({"portMappings": port_mappings(), "ipRanges": [[{"subnet": "10.1.2.0/24"}]]})
    );
    assert_eq!(fa["ipam"], json!({"type": "fake-ipam"}));
    let env = bed.env("fa", "DEL");
    assert_eq!((env["CNI_ARGS"].as_str(), env["CNI_NETNS"].as_str()), (CNI_ARGS, NETNS));
    assert!(bed.cache_files().is_empty());
    assert_eq!(restarted.cached(CONTAINER_ID), None);
}

#[tokio::test]
async fn del_without_cache_is_a_no_op_and_repeatable() {
    let bed = Bed::new();
    let network = bed.network();
    network.detach(CONTAINER_ID, None).await.unwrap();
    network.attach(&attachment()).await.unwrap();
    network.detach(CONTAINER_ID, None).await.unwrap();
    bed.forget_calls();
    network.detach(CONTAINER_ID, None).await.unwrap();
    assert!(bed.calls().is_empty(), "{:?}", bed.calls());
}

#[tokio::test]
async fn del_of_a_gone_netns_passes_an_empty_netns() {
    let bed = Bed::new();
    let network = bed.network();
    network.attach(&attachment()).await.unwrap();
    // What a pinned netns becomes once unmounted: a plain file.
    let unpinned = bed.dir.path().join("netns-file");
    std::fs::write(&unpinned, "").unwrap();
    network.detach(CONTAINER_ID, Some(&unpinned)).await.unwrap();
    assert_eq!(bed.env("fb", "DEL")["CNI_NETNS"], "");
}

#[tokio::test]
async fn del_error_about_a_missing_link_is_success() {
    let bed = Bed::new();
    let network = bed.network();
    network.attach(&attachment()).await.unwrap();
    bed.fail("fb", "DEL", json!({"code": 999, "msg": "failed to find link \"eth0\": Link not found"}));
    network.detach(CONTAINER_ID, None).await.unwrap();
    assert!(bed.cache_files().is_empty());
}

#[tokio::test]
async fn other_del_errors_are_returned_after_deleting_the_rest_and_can_be_retried() {
    let bed = Bed::new();
    let network = bed.network();
    network.attach(&attachment()).await.unwrap();
    bed.forget_calls();
    bed.fail("fb", "DEL", json!({"code": 11, "msg": "ipam store locked"}));
    let err = network.detach(CONTAINER_ID, None).await.unwrap_err();
    assert!(err.to_string().contains("ipam store locked"), "{err}");
    assert_eq!(bed.calls(), ["DEL fc eth0", "DEL fb eth0", "DEL fa eth0"]);
    assert_eq!(bed.cache_files().len(), 1, "kept for the retry");

    std::fs::remove_file(bed.records().join("fb.DEL.fail")).unwrap();
    network.detach(CONTAINER_ID, None).await.unwrap();
    assert!(bed.cache_files().is_empty());
}

#[tokio::test]
async fn a_hung_plugin_is_killed_and_the_add_undone() {
    let bed = Bed::new();
    // fc records its call and its PID, then never ends by itself: only the
    // deadline can end its ADD, and its cleanup DEL, which hangs too.
    let hang = format!(
        "#!/bin/sh\necho \"$CNI_COMMAND fc $CNI_IFNAME\" >> '{records}/calls'\necho $$ >> '{records}/fc.pids'\nexec sleep 100000\n",
        records = bed.records().display()
    );
    write_executable(&bed.bin().join("fc"), &hang);
    let network = bed.network().with_plugin_timeout(Duration::from_millis(500));
    let attachment = attachment();
    let attach = network.attach(&attachment);
    // Only a guard against a hang: each call ends at its own deadline.
    let err = tokio::time::timeout(Duration::from_secs(60), attach).await.expect("the ADD hung").unwrap_err();
    assert!(matches!(err, NetworkError::Timeout { ref plugin, .. } if plugin == "fc"), "{err}");
    // Whether fc got as far as recording itself before its deadline is up to
    // the machine's speed; the others run to the end.
    let (hung, others): (Vec<String>, Vec<String>) = bed.calls().into_iter().partition(|call| call.contains(" fc "));
    assert_eq!(others, ["ADD fa eth0", "ADD fb eth0", "DEL fb eth0", "DEL fa eth0"]);
    assert!(hung.iter().all(|call| call == "ADD fc eth0" || call == "DEL fc eth0"), "{hung:?}");
    let pids = std::fs::read_to_string(bed.records().join("fc.pids")).unwrap_or_default();
    for pid in pids.split_whitespace().map(|pid| pid.parse::<i32>().unwrap()) {
        // Killed and reaped: not even a zombie is left under its PID.
        let probe = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
        assert_eq!(probe, Err(nix::errno::Errno::ESRCH), "the hung plugin {pid} is still there");
    }
    assert!(bed.cache_files().is_empty());
}

#[tokio::test]
async fn missing_config_bad_result_and_bad_input_are_classified() {
    let bed = Bed::new();
    bed.answer("fc", "ADD", "not json");
    let err = bed.network().attach(&attachment()).await.unwrap_err();
    assert!(matches!(err, NetworkError::BadResult { ref plugin, .. } if plugin == "fc"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(bed.cache_files().is_empty());

    let mut bad = attachment();
    bad.netns = bed.dir.path().join("no-such-netns");
    assert_eq!(bed.network().attach(&bad).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(bed.network().detach("../etc", None).await.unwrap_err().kind(), ErrorKind::InvalidArgument);

    std::fs::remove_file(bed.conf().join("10-fake.conflist")).unwrap();
    assert_eq!(bed.network().attach(&attachment()).await.unwrap_err().kind(), ErrorKind::FailedPrecondition);
}

#[test]
fn attach_and_detach_can_run_on_any_runtime_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let bed = Bed::new();
    let network = bed.network();
    let attachment = attachment();
    assert_send(&network.attach(&attachment));
    assert_send(&network.detach(CONTAINER_ID, None));
}
