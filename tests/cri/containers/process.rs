//! The process a container runs: Kubernetes' rules for merging the image's
//! ENTRYPOINT / CMD with the config's command / args, the environment, and the
//! working directory, as the container itself prints them in its log.

use crate::support::containers::{Bed, container, env, log_lines};
use crate::support::image::{Compression, ImageBuilder, Layer};

fn image() -> ImageBuilder {
    ImageBuilder::new()
        .layer(Layer::busybox().dir("/work", 0o755), Compression::Gzip)
        .entrypoint(["/bin/echo", "entry"])
        .cmd(["cmd1", "cmd2"])
        .env(["PATH=/bin", "FROM_IMAGE=image", "SHARED=image"])
        .working_dir("/work")
}

#[tokio::test]
async fn command_and_args_follow_kubernetes_rules() {
    let bed = Bed::bare().await;
    let image = bed.image("entry", image()).await;
    let pod = bed.pod("argv").await;
    let strings = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let cases: [(&str, &[&str], &[&str], &str); 4] = [
        // Neither: the image's ENTRYPOINT then CMD.
        ("image", &[], &[], "entry cmd1 cmd2"),
        // Args only: they replace CMD, the ENTRYPOINT stays.
        ("args", &[], &["a1", "a2"], "entry a1 a2"),
        // Command only: it replaces both ENTRYPOINT and CMD.
        ("command", &["/bin/echo", "own"], &[], "own"),
        // Both: the config's, nothing of the image's.
        ("both", &["/bin/echo", "own"], &["a1"], "own a1"),
    ];
    for (name, command, args, expected) in cases {
        let config =
            berth::cri::v1::ContainerConfig { command: strings(command), args: strings(args), ..container(name, &image) };
        let log = pod.log_path(&config);
        let exited = bed.run_to_exit(&pod, config).await;
        assert_eq!(exited.exit_code, 0, "{name}: {exited:?}");
        assert_eq!(log_lines(&log), [expected], "{name}");
    }
}

#[tokio::test]
async fn environment_and_working_dir_merge_image_then_config() {
    let bed = Bed::bare().await;
    let image = bed.image("entry", image()).await;
    let pod = bed.pod("env").await;
    let script = "echo \"$FROM_IMAGE $SHARED $FROM_CONFIG\"; pwd; echo \"$PATH\"; echo \"$HOSTNAME\"";
    let config = berth::cri::v1::ContainerConfig {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        envs: env(&[("SHARED", "config"), ("FROM_CONFIG", "config")]),
        ..container("env", &image)
    };
    let log = pod.log_path(&config);
    assert_eq!(bed.run_to_exit(&pod, config).await.exit_code, 0);
    let lines = log_lines(&log);
    assert_eq!(lines[0], "image config config", "image env first, the config's wins: {lines:?}");
    assert_eq!(lines[1], "/work", "the image's WorkingDir: {lines:?}");
    assert_eq!(lines[2], "/bin", "the image's PATH: {lines:?}");
    assert!(!lines[3].is_empty(), "HOSTNAME is set: {lines:?}");

    let config = berth::cri::v1::ContainerConfig {
        command: vec!["/bin/sh".into(), "-c".into(), "pwd".into()],
        working_dir: "/tmp".into(),
        ..container("cwd", &image)
    };
    let log = pod.log_path(&config);
    assert_eq!(bed.run_to_exit(&pod, config).await.exit_code, 0);
    assert_eq!(log_lines(&log), ["/tmp"], "the config's working_dir wins");

    // An image with no PATH gets the default one.
    let bare = bed.image("nopath", ImageBuilder::new().layer(Layer::busybox(), Compression::Gzip)).await;
    let config = berth::cri::v1::ContainerConfig {
        command: vec!["/bin/sh".into(), "-c".into(), "echo \"$PATH\"".into()],
        ..container("path", &bare)
    };
    let log = pod.log_path(&config);
    assert_eq!(bed.run_to_exit(&pod, config).await.exit_code, 0);
    let path = log_lines(&log).join("");
    assert!(path.split(':').any(|dir| dir == "/bin") && path.contains("/usr/bin"), "default PATH: {path}");
}
