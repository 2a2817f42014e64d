//! A FUSE filesystem that never answers: `/dev/fuse` is opened and mounted, and
//! nobody ever reads its requests, so every call on the mount waits, as on an NFS
//! server gone away. Dropping it aborts the connection (the waiting calls then
//! fail) and detaches the mount.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use tempfile::TempDir;

pub struct HungFuse {
    /// Where it is mounted; any call below it hangs until the drop.
    pub mount_point: PathBuf,
    device: Option<OwnedFd>,
    _dir: TempDir,
}

impl HungFuse {
    pub fn mount() -> HungFuse {
        let dir = tempfile::Builder::new().prefix("berth-test-fuse-").tempdir().expect("temp dir");
        let mount_point = dir.path().join("hung");
        std::fs::create_dir(&mount_point).expect("mount point");
        let raw =
            nix::fcntl::open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).expect("open /dev/fuse");
        // SAFETY: `open` just returned this descriptor, and nothing else owns it.
        let device = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let options = format!("fd={},rootmode=40000,user_id=0,group_id=0", device.as_raw_fd());
        nix::mount::mount(
            Some("berth-test-hung"),
            &mount_point,
            Some("fuse"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .expect("mount a FUSE filesystem");
        HungFuse { mount_point, device: Some(device), _dir: dir }
    }
}

impl Drop for HungFuse {
    fn drop(&mut self) {
        // Closing the last descriptor of the connection aborts it: every call
        // still waiting on it returns an error, and the mount can go.
        drop(self.device.take());
        let _ = nix::mount::umount2(&self.mount_point, MntFlags::MNT_DETACH);
    }
}
