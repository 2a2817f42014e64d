//! A pod's `lo`, brought up by berth itself over rtnetlink (youki's
//! `libcontainer` client) as it makes the pod's netns, instead of by the CNI
//! `loopback` plugin that containerd and cri-o run: that plugin's ADD does only
//! this, and its DEL takes `lo` down in a netns about to be destroyed. Two
//! plugin processes fewer per pod (about 5 ms of a pod's lifecycle here), and a
//! node needs no `loopback` binary for pods to have a working `127.0.0.1`.

use std::fs::File;
use std::path::Path;

use libcontainer::network::link::LinkClient;
use libcontainer::network::wrapper::create_network_client;
use nix::sched::{CloneFlags, setns};

use super::error::SandboxError;

const LOOPBACK: &str = "lo";

/// Sets `lo` up in the network namespace pinned at `netns`. Blocking; on a
/// thread of its own, since `setns` moves the calling thread for good.
pub fn bring_up(netns: &Path) -> Result<(), SandboxError> {
    let fail = |reason: String| SandboxError::host(format!("bringing up lo in {}", netns.display()), reason);
    let namespace = File::open(netns).map_err(|e| fail(format!("cannot open it: {e}")))?;
    let worker = std::thread::Builder::new().name("berth-netns-lo".into()).spawn(move || -> Result<(), String> {
        setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
        let index = nix::net::if_::if_nametoindex(LOOPBACK).map_err(|e| format!("no {LOOPBACK}: {e}"))?;
        let mut links = LinkClient::new(create_network_client()).map_err(|e| format!("rtnetlink: {e}"))?;
        links.set_up(index).map_err(|e| format!("setting {LOOPBACK} up: {e}"))
    });
    let worker = worker.map_err(|e| fail(format!("cannot spawn a thread: {e}")))?;
    worker.join().map_err(|_| fail("its thread panicked".into()))?.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh netns, pinned under a temp dir, as berth pins a pod's.
    struct Pinned {
        dir: tempfile::TempDir,
    }

    impl Pinned {
        fn new() -> Pinned {
            let dir = tempfile::tempdir().unwrap();
            let pin = dir.path().join("net");
            let target = pin.clone();
            std::thread::spawn(move || {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
                File::create(&target).unwrap();
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    &target,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .unwrap();
            })
            .join()
            .unwrap();
            Pinned { dir }
        }

        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("net")
        }

        /// `lo`'s flags, read from inside the netns.
        fn loopback_flags(&self) -> u32 {
            let namespace = File::open(self.path()).unwrap();
            std::thread::spawn(move || {
                setns(&namespace, CloneFlags::CLONE_NEWNET).unwrap();
                // Not /sys/class/net: sysfs shows the netns it was mounted in.
                let index = nix::net::if_::if_nametoindex(LOOPBACK).unwrap();
                let mut links = LinkClient::new(create_network_client()).unwrap();
                let link = links.get_by_name(LOOPBACK).unwrap();
                assert_eq!(link.header.index, index);
                link.header.flags.bits()
            })
            .join()
            .unwrap()
        }
    }

    impl Drop for Pinned {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn lo_is_down_in_a_new_netns_and_up_after_bring_up_and_again() {
        if !is_root() {
            eprintln!("skipped: needs root for network namespaces");
            return;
        }
        const IFF_UP: u32 = 1;
        let netns = Pinned::new();
        assert_eq!(netns.loopback_flags() & IFF_UP, 0, "a new netns starts with lo down");
        bring_up(&netns.path()).unwrap();
        assert_eq!(netns.loopback_flags() & IFF_UP, IFF_UP);
        bring_up(&netns.path()).unwrap();
        assert_eq!(netns.loopback_flags() & IFF_UP, IFF_UP, "bringing it up again is no error");
    }

    #[test]
    fn a_path_that_is_no_netns_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let error = bring_up(&missing).unwrap_err().to_string();
        assert!(error.contains(&missing.display().to_string()), "{error}");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        let error = bring_up(&plain).unwrap_err().to_string();
        assert!(error.contains("setns"), "{error}");
    }
}
