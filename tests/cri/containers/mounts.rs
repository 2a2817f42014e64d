//! Kubelet's mounts: host directories read-write and read-only, missing host
//! paths made as directories, and host-to-container propagation.

use berth::cri::v1::{ContainerState, Mount, MountPropagation, StatusRequest};

use crate::support::containers::{Bed, Mounts, log_lines, mounts_mentioning, sh, wait_for_line};

fn mount(container_path: &str, host_path: &std::path::Path, readonly: bool) -> Mount {
    Mount {
        container_path: container_path.into(),
        host_path: host_path.display().to_string(),
        readonly,
        ..Default::default()
    }
}

#[tokio::test]
async fn host_directories_read_write_read_only_and_made_when_missing() {
    let bed = Bed::new().await;
    let pod = bed.pod("mounts").await;
    let rw = bed.berth.dir().join("rw");
    let ro = bed.berth.dir().join("ro");
    let missing = bed.berth.dir().join("missing/deep");
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("existing"), "from the host\n").unwrap();
    let script = "echo hello > /rw/file && echo rw-ok; \
        if echo x > /ro/existing; then echo ro-writable; else echo ro-refused; fi; cat /ro/existing; \
        test -d /new && touch /new/inside && echo new-ok";
    let mut config = sh("mounts", &bed.busybox, script);
    config.mounts = vec![mount("/rw", &rw, false), mount("/ro", &ro, true), mount("/new", &missing, false)];
    let log = pod.log_path(&config);
    let exited = bed.run_to_exit(&pod, config).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    assert_eq!(log_lines(&log), ["rw-ok", "ro-refused", "from the host", "new-ok"]);
    assert_eq!(std::fs::read_to_string(rw.join("file")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_to_string(ro.join("existing")).unwrap(), "from the host\n");
    assert!(missing.is_dir(), "the missing host path was made as a directory");
    assert!(missing.join("inside").exists(), "and is what the container wrote to");
}

#[tokio::test]
async fn host_to_container_propagation_shows_later_host_mounts() {
    let bed = Bed::new().await;
    let pod = bed.pod("propagation").await;
    let mut mounts = Mounts::default();
    // `/` is private on the test VMs: the volume is made a shared mount of its own,
    // as kubelet's directories are on a shared root.
    let volume = bed.berth.dir().join("shared-volume");
    std::fs::create_dir_all(volume.join("sub")).unwrap();
    mounts.shared_bind(&volume);
    // A private bind beside it in the same container keeps to itself (the
    // internal runtime sets the two apart with a hook: see its propagation.rs).
    let beside = bed.berth.dir().join("shared-beside");
    std::fs::create_dir_all(beside.join("sub")).unwrap();
    mounts.shared_bind(&beside);

    let script = "echo up; while [ ! -e /volume/sub/marker ]; do usleep 100000; done; cat /volume/sub/marker; \
        if [ -e /beside/sub/marker ]; then echo private-saw-it; else echo private-kept-out; fi";
    let mut config = sh("slave", &bed.busybox, script);
    config.mounts = vec![
        Mount { propagation: MountPropagation::PropagationHostToContainer as i32, ..mount("/volume", &volume, false) },
        mount("/beside", &beside, false),
    ];
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "up").await;
    assert_eq!(bed.status(&id).await.state(), ContainerState::ContainerRunning);

    // The markers live in tmpfs mounts made after the container started: the
    // container sees one only if the mount propagated.
    mounts.tmpfs(&beside.join("sub"));
    std::fs::write(beside.join("sub/marker"), "not for the container\n").unwrap();
    mounts.tmpfs(&volume.join("sub"));
    std::fs::write(volume.join("sub/marker"), "propagated\n").unwrap();
    let exited = bed.wait_exited(&id).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    assert_eq!(log_lines(&log), ["up", "propagated", "private-kept-out"]);

    // A private mount of the same volume does not see a later host mount.
    std::fs::create_dir_all(volume.join("other")).unwrap();
    let script = "echo up; sleep 1000";
    let mut config = sh("private", &bed.busybox, script);
    config.mounts = vec![mount("/volume", &volume, false)];
    let log = pod.log_path(&config);
    let private = bed.run(&pod, config).await;
    wait_for_line(&log, "up").await;
    mounts.tmpfs(&volume.join("other"));
    std::fs::write(volume.join("other/marker"), "host only\n").unwrap();
    let pid = bed.pid(&private).await;
    let inside = std::path::PathBuf::from(format!("/proc/{pid}/root/volume/other/marker"));
    assert!(!inside.exists(), "a private mount saw a later host mount");
    drop(mounts);
}

/// A recursive read-only bind is read-only in its sub-mounts too, on every
/// handler (berth stages it: runc 1.1 could not make it), where a plain
/// read-only bind leaves them writable.
#[tokio::test]
async fn recursive_read_only_binds_on_every_handler() {
    let bed = Bed::new().await;
    let pod = bed.pod("rro").await;
    let volume = bed.berth.dir().join("rro-volume");
    std::fs::create_dir_all(volume.join("sub")).unwrap();
    let mut mounts = Mounts::default();
    mounts.tmpfs(&volume.join("sub"));
    let script = "if touch /v/sub/x; then echo sub-writable; else echo sub-read-only; fi; \
        if touch /v/top; then echo top-writable; else echo top-read-only; fi";

    let mut config = sh("plain", &bed.busybox, script);
    config.mounts = vec![mount("/v", &volume, true)];
    let log = pod.log_path(&config);
    bed.run_to_exit(&pod, config).await;
    assert_eq!(log_lines(&log), ["sub-writable", "top-read-only"], "a plain read-only bind is read-only on top only");

    let status = bed.berth.runtime().await.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    let default = status.runtime_handlers.iter().find(|handler| handler.name.is_empty()).unwrap();
    let can = default.features.as_ref().is_some_and(|features| features.recursive_read_only_mounts);
    assert!(can, "this kernel has mount_setattr: every handler says it can");
    let mut config = sh("recursive", &bed.busybox, script);
    config.mounts = vec![Mount { recursive_read_only: true, ..mount("/v", &volume, true) }];
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    let exited = bed.wait_exited(&id).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    assert_eq!(log_lines(&log), ["sub-read-only", "top-read-only"]);
    std::fs::write(volume.join("sub/from-the-host"), "x").expect("the host's own mount stays writable");
    // critest's order: the host path goes while the container still exists;
    // nothing berth staged on the node pins it.
    assert!(mounts_mentioning(&format!("{id}/binds")).is_empty(), "the container holds the staged bind alone");
    drop(mounts);
    std::fs::remove_dir_all(&volume).expect("the host path can go");
    bed.remove(&id).await.unwrap();

    // The CRI's rules still hold: read-only and PRIVATE, else refused by name.
    let mut config = sh("writable", &bed.busybox, script);
    config.mounts = vec![Mount { recursive_read_only: true, ..mount("/v", bed.berth.dir(), false) }];
    let err = bed.create(&pod, config).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("mounts[0].recursive_read_only"), "{err:?}");
}
