//! Who the container's process runs as: run_as_username, run_as_user and
//! run_as_group, the image's User, supplemental groups and the groups of
//! /etc/group, as busybox `id` prints them inside the container.

use std::collections::BTreeSet;

use berth::cri::v1::{ContainerConfig, Int64Value};

use crate::support::containers::{Bed, Pod, security_context, sh};
use crate::support::image::{Compression, ImageBuilder, Layer};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
    bob:x:1001:1001:Bob:/home/bob:/bin/sh\n";
const GROUP: &str = "root:x:0:\nalice:x:1000:\nbob:x:1001:\nwheel:x:10:alice,bob\nstaff:x:50:alice\n";

fn image() -> ImageBuilder {
    ImageBuilder::busybox().layer(Layer::files_etc_passwd(PASSWD, GROUP), Compression::Gzip)
}

/// What `id` says: uid, gid, every group, user name.
#[derive(Debug, PartialEq)]
struct Id {
    uid: u32,
    gid: u32,
    groups: BTreeSet<u32>,
    name: String,
}

fn id(uid: u32, gid: u32, groups: &[u32], name: &str) -> Id {
    Id { uid, gid, groups: groups.iter().copied().collect(), name: name.into() }
}

async fn id_of(bed: &Bed, pod: &Pod, config: ContainerConfig) -> Id {
    let log = pod.log_path(&config);
    let name = config.metadata.as_ref().unwrap().name.clone();
    let exited = bed.run_to_exit(pod, config).await;
    let lines = crate::support::containers::log_lines(&log);
    assert_eq!(exited.exit_code, 0, "{name}: {exited:?} {lines:?}");
    let number = |line: &str| line.parse::<u32>().unwrap_or_else(|e| panic!("{name}: {line:?}: {e} in {lines:?}"));
    Id {
        uid: number(&lines[0]),
        gid: number(&lines[1]),
        groups: lines[2].split_whitespace().map(number).collect(),
        // busybox prints the number when the uid has no name.
        name: lines[3].clone(),
    }
}

// `id -un` fails (printing the number) for a uid /etc/passwd does not name.
const ID: &str = "id -u; id -g; id -G; id -un || true";

#[tokio::test]
async fn users_and_groups_come_from_the_config_and_the_images_files() {
    let bed = Bed::bare().await;
    let plain = bed.image("users", image()).await;
    let as_bob = bed.image("users-bob", image().user("bob")).await;
    let numeric = bed.image("users-numeric", image().user("1002:1003")).await;
    let pod = bed.pod("users").await;

    // The image's default user: root, with root's groups.
    assert_eq!(id_of(&bed, &pod, sh("default", &plain, ID)).await, id(0, 0, &[0], "root"));

    // A name: uid and primary gid from /etc/passwd, its groups from /etc/group.
    let mut config = sh("by-name", &plain, ID);
    security_context(&mut config).run_as_username = "alice".into();
    assert_eq!(id_of(&bed, &pod, config).await, id(1000, 1000, &[1000, 10, 50], "alice"));

    // A uid and a gid: the gid replaces the passwd one; bob's /etc/group memberships stay.
    let mut config = sh("by-uid", &plain, ID);
    let sc = security_context(&mut config);
    sc.run_as_user = Some(Int64Value { value: 1001 });
    sc.run_as_group = Some(Int64Value { value: 2001 });
    assert_eq!(id_of(&bed, &pod, config).await, id(1001, 2001, &[2001, 10], "bob"));

    // The image's User, by name.
    assert_eq!(id_of(&bed, &pod, sh("image-user", &as_bob, ID)).await, id(1001, 1001, &[1001, 10], "bob"));

    // The image's User as uid:gid that /etc/passwd does not know.
    assert_eq!(id_of(&bed, &pod, sh("image-numeric", &numeric, ID)).await, id(1002, 1003, &[1003], "1002"));

    // run_as_user wins over the image's User.
    let mut config = sh("override", &as_bob, ID);
    security_context(&mut config).run_as_user = Some(Int64Value { value: 1000 });
    assert_eq!(id_of(&bed, &pod, config).await, id(1000, 1000, &[1000, 10, 50], "alice"));

    // Supplemental groups are added to the user's own.
    let mut config = sh("supplemental", &plain, ID);
    let sc = security_context(&mut config);
    sc.run_as_user = Some(Int64Value { value: 1000 });
    sc.supplemental_groups = vec![5000, 6000];
    assert_eq!(id_of(&bed, &pod, config).await, id(1000, 1000, &[1000, 10, 50, 5000, 6000], "alice"));
}

#[tokio::test]
async fn an_unknown_user_name_is_refused_at_create() {
    let bed = Bed::bare().await;
    let plain = bed.image("users", image()).await;
    let pod = bed.pod("nobody").await;
    let mut config = sh("nobody", &plain, ID);
    security_context(&mut config).run_as_username = "mallory".into();
    let err = bed.create(&pod, config).await.unwrap_err();
    assert!(err.message().contains("mallory"), "{err:?}");
    assert!(bed.list_all().await.is_empty(), "nothing left by a refused create");
}

/// An image's /etc/passwd may be any file a tar carries. A FIFO there used to
/// hang CreateContainer (and every retry of it) for good; a device, or a link
/// to one, was read until memory ran out, and a huge file was held whole. Each
/// is refused at create, naming the file, and leaves nothing behind.
#[tokio::test]
async fn a_hostile_etc_passwd_is_refused_at_create() {
    let bed = Bed::bare().await;
    let pod = bed.pod("hostile").await;
    let layers = [
        ("fifo", Layer::new().dir("/etc", 0o755).fifo("/etc/passwd", 0o644), "a FIFO"),
        ("zero", Layer::new().dir("/etc", 0o755).char_device("/etc/passwd", 1, 5, 0o644), "a character device"),
        ("loop", Layer::new().dir("/etc", 0o755).block_device("/etc/passwd", 7, 0, 0o644), "a block device"),
        ("dir", Layer::new().dir("/etc", 0o755).dir("/etc/passwd", 0o755), "a directory"),
        ("huge", Layer::new().dir("/etc", 0o755).random_file("/etc/passwd", 5 << 20, 7), "over the"),
        (
            "hardlink",
            Layer::new().dir("/etc", 0o755).fifo("/etc/pipe", 0o644).hardlink("/etc/passwd", "/etc/pipe"),
            "a FIFO",
        ),
        (
            "link",
            Layer::new()
                .dir("/dev", 0o755)
                .char_device("/dev/zero", 1, 5, 0o666)
                .dir("/etc", 0o755)
                .symlink("/etc/passwd", "/dev/zero"),
            "a character device",
        ),
    ];
    for (name, layer, problem) in layers {
        let image =
            bed.image(&format!("hostile-{name}"), ImageBuilder::busybox().layer(layer, Compression::Gzip)).await;
        let mut config = sh(name, &image, ID);
        security_context(&mut config).run_as_username = "alice".into();
        let create = tokio::time::timeout(std::time::Duration::from_secs(60), bed.create(&pod, config));
        let err = create.await.unwrap_or_else(|_| panic!("{name}: CreateContainer hung")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{name}: {err:?}");
        assert!(err.message().contains("/etc/passwd") && err.message().contains(problem), "{name}: {err:?}");
    }
    assert!(bed.list_all().await.is_empty(), "nothing left by a refused create");
    assert!(bed.runc_containers().is_empty(), "no runtime state left");
}

/// SupplementalGroupsPolicy: Merge (the default) adds the groups /etc/group
/// gives the user to the config's; Strict takes only the config's. Either way
/// ContainerStatus reports the process's user as it runs, and Status
/// advertises the feature, as kubelet checks before it sends Strict.
#[tokio::test]
async fn supplemental_groups_policy_merge_and_strict_with_the_user_in_status() {
    use berth::cri::v1::{StatusRequest, SupplementalGroupsPolicy};
    let bed = Bed::bare().await;
    let plain = bed.image("groups-policy", image()).await;
    let pod = bed.pod("groups-policy").await;
    let status = bed.berth.runtime().await.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    assert!(status.features.is_some_and(|f| f.supplemental_groups_policy), "advertised");

    for (policy, groups) in [
        (SupplementalGroupsPolicy::Merge, vec![10, 50, 1000, 1234]),
        (SupplementalGroupsPolicy::Strict, vec![1000, 1234]),
    ] {
        let mut config = sh(&format!("{policy:?}").to_lowercase(), &plain, "id -G; echo listed; sleep 1000");
        let sc = security_context(&mut config);
        sc.run_as_user = Some(Int64Value { value: 1000 });
        sc.supplemental_groups = vec![1234];
        sc.supplemental_groups_policy = policy as i32;
        let log = pod.log_path(&config);
        let id = bed.run(&pod, config).await;
        crate::support::containers::wait_for_line(&log, "listed").await;
        let seen: BTreeSet<u32> = crate::support::containers::log_lines(&log)[0]
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        let expected: BTreeSet<u32> = groups.iter().map(|&g| g as u32).collect();
        assert_eq!(seen, expected, "{policy:?}: the process's groups");
        let user = bed.status(&id).await.user.and_then(|u| u.linux).expect("the user in ContainerStatus");
        let mut reported = user.supplemental_groups.clone();
        reported.sort();
        assert_eq!((user.uid, user.gid, reported), (1000, 1000, groups), "{policy:?}: ContainerStatus.user");
    }
}
