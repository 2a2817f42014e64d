//! The command line. Flags that mirror config keys override the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use toml::{Table, Value};

use crate::config::{ConfigSources, load::set_override};

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "A Kubernetes CRI server")]
pub struct Cli {
    /// Main configuration file [default: /etc/berth/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Drop-in directory merged after the main file in lexical order [default: config.d beside the main file]
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the CRI on the configured unix socket until SIGTERM or SIGINT.
    Serve,
    /// Print the effective configuration as TOML.
    Config {
        /// Print the complete default file instead, every key commented with
        /// its meaning.
        #[arg(long)]
        default: bool,
    },
    #[command(flatten)]
    Client(crate::client::ClientCommand),
    /// The installer's record on its Node object (run by deploy/installer/install.sh).
    #[command(hide = true, name = "node-report")]
    NodeReport {
        #[command(flatten)]
        args: crate::cmd::node_report::NodeReportArgs,
    },
    /// The infra process of a pod with a shared PID namespace (started by berth).
    #[command(hide = true)]
    Pause {
        #[arg(long, value_name = "FILE")]
        pid_file: std::path::PathBuf,
        /// berth made the PID namespace before exec (a pod in its own user
        /// namespace, whose capabilities do not survive the exec).
        #[arg(long)]
        pid_namespace_made: bool,
    },
    /// The per-container monitor (started by berth; see `monitor::spawn`).
    #[command(hide = true)]
    Monitor {
        #[command(flatten)]
        args: crate::monitor::MonitorArgs,
    },
    /// One process exec'd into a container of the internal runtime (started by berth).
    #[command(hide = true, name = "internal-exec")]
    InternalExec {
        #[command(flatten)]
        args: crate::runtime::internal::ExecHelperArgs,
    },
    /// The internal runtime's createContainer hook that sets bind propagation.
    #[command(hide = true, name = "internal-propagation")]
    InternalPropagation {
        #[command(flatten)]
        args: crate::runtime::internal::PropagationHookArgs,
    },
}

/// Each flag sets the config key named in its help.
#[derive(Debug, Default, Args)]
pub struct Overrides {
    /// socket
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// state_root
    #[arg(long, global = true, value_name = "DIR")]
    pub state_root: Option<PathBuf>,
    /// run_root
    #[arg(long, global = true, value_name = "DIR")]
    pub run_root: Option<PathBuf>,
    /// cgroup_driver (cgroupfs | systemd)
    #[arg(long, global = true)]
    pub cgroup_driver: Option<String>,
    /// log.level
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// log.format (text | json)
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    /// cni.conf_dir
    #[arg(long, global = true, value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// cni.bin_dirs (repeat for several)
    #[arg(long = "cni-bin-dir", global = true, value_name = "DIR")]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// runtime.default_handler
    #[arg(long, global = true, value_name = "NAME")]
    pub default_runtime: Option<String>,
    /// streaming.address
    #[arg(long, global = true, value_name = "IP")]
    pub streaming_address: Option<String>,
    /// streaming.port
    #[arg(long, global = true)]
    pub streaming_port: Option<u16>,
}

impl Cli {
    pub fn config_sources(&self) -> ConfigSources {
        ConfigSources {
            file: self.config.clone(),
            drop_in_dir: self.config_dir.clone(),
            overrides: self.overrides.to_table(),
        }
    }
}

impl Overrides {
    fn to_table(&self) -> Table {
        let path = |p: &PathBuf| Value::String(p.display().to_string());
        let mut entries: Vec<(&str, Value)> = Vec::new();
        let strings = [
            ("cgroup_driver", &self.cgroup_driver),
            ("log.level", &self.log_level),
            ("log.format", &self.log_format),
            ("runtime.default_handler", &self.default_runtime),
            ("streaming.address", &self.streaming_address),
        ];
        entries.extend(strings.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, Value::String(v)))));
        let paths = [
            ("socket", &self.socket),
            ("state_root", &self.state_root),
            ("run_root", &self.run_root),
            ("cni.conf_dir", &self.cni_conf_dir),
        ];
        entries.extend(paths.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k, path(v)))));
        if !self.cni_bin_dirs.is_empty() {
            entries.push(("cni.bin_dirs", Value::Array(self.cni_bin_dirs.iter().map(path).collect())));
        }
        if let Some(port) = self.streaming_port {
            entries.push(("streaming.port", Value::Integer(port.into())));
        }
        let mut table = Table::new();
        for (key, value) in entries {
            set_override(&mut table, key, value);
        }
        table
    }
}
