//! SIGHUP: what can change while berth runs is applied (log level, registries
//! and mirrors, the CNI conf dir, the metrics endpoint), what cannot is named,
//! and a file that does not load changes nothing and stops nothing.

use std::time::{Duration, Instant};

use berth::cri::v1::{StatusRequest, VersionRequest};
use nix::sys::signal::Signal;

use crate::images::{closed_port_host, pull};
use crate::support::berth::{Berth, LOOPBACK_CONFLIST};
use crate::support::image::ImageBuilder;
use crate::support::metrics::{free_address, scrape};
use crate::support::registry::Registry;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn sighup_applies_what_it_can_and_names_what_waits_for_a_restart() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().label("reloaded", "yes").build();
    image.push(&registry, "test/reloaded", "v1").await;
    let berth = Berth::builder().log_level_from_config().config("[log]\nlevel = \"info\"\n").start().await;
    let upstream = closed_port_host();
    let name = format!("{upstream}/test/reloaded:v1");
    assert!(pull(&berth, &name).await.is_err(), "no mirror yet, and nothing listens upstream");
    assert!(!network_ready(&berth).await);
    assert!(!berth.log().contains("DEBUG"), "info, as configured");

    let conf_dir = berth.dir().join("net.d-reloaded");
    std::fs::create_dir(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("10-lo.conflist"), LOOPBACK_CONFLIST).unwrap();
    let metrics_address = free_address();
    let mut config = config_table(&berth);
    config.insert("state_root".into(), berth.dir().join("elsewhere").display().to_string().into());
    set(&mut config, &["log", "level"], "berth=debug,info".into());
    set(&mut config, &["cni", "conf_dir"], conf_dir.display().to_string().into());
    set(&mut config, &["metrics", "address"], metrics_address.clone().into());
    let mirror = toml::Value::Array(vec![format!("http://{}", registry.host()).into()]);
    set(&mut config, &["registries", upstream.as_str(), "mirrors"], mirror);
    write_config(&berth, &config);
    berth.signal(Signal::SIGHUP);
    let reloaded = wait_for_log(&berth, "configuration reloaded").await;
    for key in ["log.level", "registries", "cni.conf_dir", "metrics.address"] {
        assert!(reloaded.contains(key), "{key} applied: {reloaded}");
    }
    let later = wait_for_log(&berth, "in force only after a restart").await;
    assert!(later.contains("state_root") && !later.contains("log.level"), "{later}");

    assert_eq!(pull(&berth, &name).await.unwrap(), image.image_id(), "through the new mirror");
    assert!(network_ready(&berth).await, "the new conf dir is read");
    assert!(scrape(&metrics_address).starts_with("HTTP/1.1 200"), "metrics served on the new address");
    assert!(berth.log().contains("DEBUG"), "the new level is in force");
    assert!(!berth.dir().join("elsewhere").exists(), "state_root waits for a restart");

    // A file that does not load: logged with the key, nothing changes, berth serves on.
    let mut config = config_table(&berth);
    config.insert("no_such_key".into(), 1.into());
    write_config(&berth, &config);
    berth.signal(Signal::SIGHUP);
    let refused = wait_for_log(&berth, "does not load").await;
    assert!(refused.contains("no_such_key"), "{refused}");
    berth.runtime().await.version(VersionRequest::default()).await.unwrap();
    assert!(scrape(&metrics_address).starts_with("HTTP/1.1 200"), "the endpoint stays");
    assert!(network_ready(&berth).await);

    // Fixed again, and the endpoint turned off: its port is let go.
    let mut config = config_table(&berth);
    config.remove("no_such_key");
    set(&mut config, &["metrics", "address"], "".into());
    write_config(&berth, &config);
    berth.signal(Signal::SIGHUP);
    wait_until("the metrics port is let go", || std::net::TcpStream::connect(&metrics_address).is_err()).await;
}

async fn network_ready(berth: &Berth) -> bool {
    let status = berth.runtime().await.status(StatusRequest::default()).await.unwrap().into_inner();
    status.status.unwrap().conditions.iter().any(|c| c.r#type == "NetworkReady" && c.status)
}

fn config_table(berth: &Berth) -> toml::Table {
    std::fs::read_to_string(&berth.paths.config).unwrap().parse().unwrap()
}

fn write_config(berth: &Berth, config: &toml::Table) {
    std::fs::write(&berth.paths.config, toml::to_string(config).unwrap()).unwrap();
}

/// `config[path...] = value`, making the tables on the way.
fn set(config: &mut toml::Table, path: &[&str], value: toml::Value) {
    let (last, tables) = path.split_last().unwrap();
    let mut table = config;
    for name in tables {
        table = table.entry(name.to_string()).or_insert_with(|| toml::Table::new().into()).as_table_mut().unwrap();
    }
    table.insert(last.to_string(), value);
}

/// The first log line after the last SIGHUP that mentions `needle`.
async fn wait_for_log(berth: &Berth, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = berth.log();
        if let Some(line) = log.lines().rev().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no log line with {needle:?} within {WAIT:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
