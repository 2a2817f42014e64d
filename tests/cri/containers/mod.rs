//! The container RPCs against a real berth, runc and busybox images: lifecycle,
//! listing, what the process sees (command, environment, user, capabilities,
//! seccomp, masked paths, mounts, cgroups), stopping, logs, ExecSync, berth
//! restarts, pods going away, images removed under running containers, and
//! other runtime handlers. Behaviour is checked from inside the container
//! (its log, /proc/<pid>/root) or from the host (cgroup files, runc, mounts),
//! not only from the RPC's answer.
//!
//! Most pods use the node's network: CNI is the pod tests' business. Each test
//! has its own berth, registry and directories, so tests run in parallel; the
//! test bed's `Berth` drop removes containers, monitors, mounts and cgroups even
//! when a test fails.

mod events;
mod exec;
mod handlers;
mod hostile_rootfs;
mod image_volumes;
mod images;
mod internal;
mod lifecycle;
mod limits;
mod list;
mod logs;
mod metrics;
mod mounts;
mod pods;
mod process;
mod resources;
mod restart;
mod security;
mod stats;
mod stop;
mod user_namespaces;
mod users;
