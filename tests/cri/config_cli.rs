//! `berth config`: precedence of file, drop-ins and flags; errors name key and file.

use crate::support::berth::run_berth;

struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    fn new(main: &str) -> Self {
        // Named as every test berth's directory is, for hack/sweep-test-leftovers.sh.
        let dir = tempfile::Builder::new().prefix("berth-test-").tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config.d")).unwrap();
        std::fs::write(dir.path().join("config.toml"), main).unwrap();
        ConfigDir { dir }
    }

    fn drop_in(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join("config.d").join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn run(&self, extra: &[&str]) -> std::process::Output {
        let config = self.dir.path().join("config.toml");
        let mut args = vec!["--config", config.to_str().unwrap(), "config"];
        args.extend_from_slice(extra);
        run_berth(&args)
    }

    fn effective(&self, extra: &[&str]) -> toml::Table {
        let output = self.run(extra);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().parse().unwrap()
    }
}

#[test]
fn defaults_are_printed_when_the_file_is_empty() {
    let effective = ConfigDir::new("").effective(&[]);
    assert_eq!(effective["socket"].as_str(), Some("/run/berth/berth.sock"));
    assert_eq!(effective["state_root"].as_str(), Some("/var/lib/berth"));
    assert_eq!(effective["cgroup_driver"].as_str(), Some("cgroupfs"));
    assert_eq!(effective["cni"]["conf_dir"].as_str(), Some("/etc/cni/net.d"));
    assert_eq!(effective["runtime"]["default_handler"].as_str(), Some("runc"));
    assert_eq!(effective["images"]["max_concurrent_downloads"].as_integer(), Some(3));
}

#[test]
fn drop_ins_override_the_file_in_lexical_order_and_flags_override_both() {
    let dir = ConfigDir::new("[log]\nlevel = \"warn\"\n[images]\nmax_concurrent_downloads = 5\n");
    dir.drop_in("20-late.toml", "[log]\nlevel = \"debug\"\n");
    dir.drop_in("10-early.toml", "[log]\nlevel = \"trace\"\nformat = \"json\"\n");
    let effective = dir.effective(&[]);
    assert_eq!(effective["log"]["level"].as_str(), Some("debug"));
    assert_eq!(effective["log"]["format"].as_str(), Some("json"));
    assert_eq!(effective["images"]["max_concurrent_downloads"].as_integer(), Some(5));

    let effective = dir.effective(&["--log-level", "error", "--socket", "/tmp/x.sock"]);
    assert_eq!(effective["log"]["level"].as_str(), Some("error"));
    assert_eq!(effective["socket"].as_str(), Some("/tmp/x.sock"));
    assert_eq!(effective["log"]["format"].as_str(), Some("json"));
}

#[test]
fn an_unknown_key_exits_2_naming_key_and_file() {
    let dir = ConfigDir::new("");
    let culprit = dir.drop_in("50-typo.toml", "[cni]\nconfdir = \"/x\"\n");
    let output = dir.run(&[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&culprit), "{stderr}");
    assert!(stderr.contains("confdir"), "{stderr}");
}

#[test]
fn a_bad_value_exits_2_naming_key_and_file() {
    let dir = ConfigDir::new("cgroup_driver = \"cgroupv3\"\n");
    let output = dir.run(&[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("config.toml") && stderr.contains("cgroup_driver"), "{stderr}");

    let output = ConfigDir::new("").run(&["--streaming-address", "localhost"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("command line") && stderr.contains("streaming.address"), "{stderr}");
}

#[test]
fn serve_refuses_a_bad_config_before_touching_anything() {
    let dir = ConfigDir::new("");
    // Roots of its own, so that a berth that served after all would touch
    // only the test's directory (and be killed by run_berth's bound).
    let (state_root, run_root) = (dir.dir.path().join("state"), dir.dir.path().join("run"));
    let main = format!("state_root = {state_root:?}\nrun_root = {run_root:?}\nsocket = \"relative.sock\"\n");
    let config = dir.dir.path().join("config.toml");
    std::fs::write(&config, main).unwrap();
    let output = run_berth(&["--config", config.to_str().unwrap(), "serve"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("must be an absolute path"));
    assert!(!state_root.exists() && !run_root.exists(), "the roots were created");
}

#[test]
fn an_explicit_config_file_that_is_missing_is_an_error() {
    let output = run_berth(&["--config", "/nonexistent/berth.toml", "config"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/berth.toml"));
}

#[test]
fn the_default_file_documents_every_key_and_loads_as_the_defaults() {
    // Needs no configuration file of its own: an installer writes it.
    let output = run_berth(&["--config", "/nonexistent/berth.toml", "config", "--default"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(ConfigDir::new(&text).effective(&[]), ConfigDir::new("").effective(&[]));
    // Every setting is preceded by its meaning.
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let setting = line.contains(" = ") && !line.starts_with("# -");
        if setting {
            assert!(i > 0 && lines[i - 1].starts_with('#') || line.starts_with("# "), "undocumented: {line}\n{text}");
        }
    }
    assert!(text.contains("\n# Fall back to `<host>` itself"), "{text}");
}
