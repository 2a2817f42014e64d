//! Exec, Attach and PortForward through berth's streaming server, driven as
//! kubectl and crictl drive it: SPDY/3.1 (berth's own SPDY module as the
//! client) and WebSocket (tokio-tungstenite), against real containers.

use std::time::{Duration, Instant};

use berth::streaming::spdy::RstStatus;
use berth::cri::v1::{AttachRequest, ContainerState, ExecRequest, PodSandboxStatusRequest, PortForwardRequest};
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{Bed, pod_network_options, security_context, sh, wait_for_line};
use crate::support::streaming::{
    SpdyCommand, StdinEnd, WAIT, Wanted, channel, spdy_upgrade, websocket, ws_read_all, ws_send,
};

const V4: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

fn exec_request(id: &str, cmd: &[&str], wanted: Wanted) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: wanted.tty,
        stdin: wanted.stdin,
        stdout: wanted.stdout,
        stderr: wanted.stderr,
    }
}

async fn exec_url(bed: &Bed, id: &str, cmd: &[&str], wanted: Wanted) -> String {
    let request = exec_request(id, cmd, wanted);
    bed.berth.runtime().await.exec(request).await.expect("Exec").into_inner().url
}

const OUT: Wanted = Wanted { stdin: false, stdout: true, stderr: true, tty: false };

fn status(error: &str) -> Value {
    serde_json::from_str(error).unwrap_or_else(|e| panic!("the error stream holds a Status ({e}): {error:?}"))
}

async fn sleeper(bed: &Bed) -> String {
    let pod = bed.pod(&format!("stream-{}", crate::support::containers::unique())).await;
    bed.run(&pod, sh("sleeper", &bed.busybox, "sleep 1000")).await
}

#[tokio::test]
async fn exec_over_spdy_relays_output_stdin_and_exit_codes() {
    let bed = Bed::new().await;
    let id = sleeper(&bed).await;

    let url = exec_url(&bed, &id, &["sh", "-c", "echo out; echo err >&2"], OUT).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut command = SpdyCommand::connect(&url, V4, OUT).await;
    assert_eq!(command.protocol, "v4.channel.k8s.io");
    let (stdout, stderr, error) = command.outputs().await;
    assert_eq!((stdout.as_slice(), stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    assert_eq!(status(&error)["status"], "Success");

    let with_stdin = Wanted { stdin: true, ..OUT };
    let url = exec_url(&bed, &id, &["sh", "-c", "tr a-z A-Z"], with_stdin).await;
    let mut command = SpdyCommand::connect(&url, V4, with_stdin).await;
    let mut stdin = command.stdin.take().unwrap();
    stdin.write_all(b"hello from stdin\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let (stdout, _, error) = command.outputs().await;
    assert_eq!(stdout, b"HELLO FROM STDIN\n", "stdin reached the process and its end closed it");
    assert_eq!(status(&error)["status"], "Success");
    let stdin_end = command.server_stdin_end().await;
    assert_eq!(stdin_end, StdinEnd::Reset(RstStatus::CANCEL), "v4: the server resets stdin at the end, never FINs it");

    let url = exec_url(&bed, &id, &["sh", "-c", "exit 3"], OUT).await;
    let (_, _, error) = SpdyCommand::connect(&url, V4, OUT).await.outputs().await;
    let error = status(&error);
    assert_eq!(error["status"], "Failure");
    assert_eq!(error["reason"], "NonZeroExitCode");
    assert_eq!(error["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));

    // Before v4 the error stream carries the message only, and nothing on success.
    let url = exec_url(&bed, &id, &["sh", "-c", "exit 4"], OUT).await;
    let mut command = SpdyCommand::connect(&url, &["v2.channel.k8s.io"], OUT).await;
    assert_eq!(command.protocol, "v2.channel.k8s.io");
    let (_, _, error) = command.outputs().await;
    assert!(error.contains("exit code 4"), "{error:?}");
}

#[tokio::test]
async fn exec_requests_and_tokens_are_checked() {
    let bed = Bed::new().await;
    let id = sleeper(&bed).await;
    let mut runtime = bed.berth.runtime().await;
    let tty_and_stderr = Wanted { stdin: false, stdout: true, stderr: true, tty: true };
    let refused = runtime.exec(exec_request(&id, &["true"], tty_and_stderr)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let nothing = Wanted { stdin: false, stdout: false, stderr: false, tty: false };
    let refused = runtime.exec(exec_request(&id, &["true"], nothing)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let refused = runtime.exec(exec_request(&id, &[], OUT)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let refused = runtime.exec(exec_request(&"e".repeat(64), &["true"], OUT)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    let url = exec_url(&bed, &id, &["true"], OUT).await;
    let unknown = spdy_upgrade(&format!("{}x", url), V4).await;
    assert_eq!(unknown.status, 404, "a made-up token");
    let refused = spdy_upgrade(&url, &["v9.channel.k8s.io"]).await;
    assert_eq!(refused.status, 403, "no protocol in common");
    assert!(refused.header("x-accepted-stream-protocol-versions").is_some());
    let reused = spdy_upgrade(&url, V4).await;
    assert_eq!(reused.status, 404, "the token was spent by the refused attempt");

    let url = exec_url(&bed, &id, &["true"], OUT).await;
    let (_, _, error) = SpdyCommand::connect(&url, V4, OUT).await.outputs().await;
    assert_eq!(status(&error)["status"], "Success");
    assert_eq!(spdy_upgrade(&url, V4).await.status, 404, "a URL works once");

    // Garbage where SPDY frames should be: berth ends that connection, and only that.
    let url = exec_url(&bed, &id, &["sleep", "5"], OUT).await;
    let upgraded = spdy_upgrade(&url, V4).await;
    assert_eq!(upgraded.status, 101);
    let mut connection = upgraded.stream.into_inner();
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let _ = connection.write_all(&[0x80, 0x03, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff]).await;
    let _ = connection.write_all(&garbage).await;
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, connection.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "berth closed the connection that spoke garbage");
    let url = exec_url(&bed, &id, &["echo", "still serving"], OUT).await;
    let (stdout, _, _) = SpdyCommand::connect(&url, V4, OUT).await.outputs().await;
    assert_eq!(stdout, b"still serving\n");
}

#[tokio::test]
async fn tty_exec_applies_resizes() {
    let bed = Bed::new().await;
    let id = sleeper(&bed).await;
    let tty = Wanted { stdin: true, stdout: true, stderr: false, tty: true };
    let url = exec_url(&bed, &id, &["sh", "-c", "while read line; do stty size; done"], tty).await;
    let mut command = SpdyCommand::connect(&url, V4, tty).await;
    let mut resize = command.resize.take().expect("a resize stream with a tty");
    resize.write_all(br#"{"Width":100,"Height":30}"#).await.unwrap();
    let mut stdin = command.stdin.take().unwrap();
    let mut stdout = command.stdout.take().unwrap();
    // The size reaches the container's pty through the runtime, a moment after
    // the message: ask until it shows.
    let deadline = Instant::now() + WAIT;
    let mut seen = String::new();
    while !seen.contains("30 100") {
        assert!(Instant::now() < deadline, "the terminal never became 30 x 100: {seen:?}");
        stdin.write_all(b"\n").await.unwrap();
        let mut buffer = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), stdout.read(&mut buffer)).await {
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    }
    // ^D at the start of a line ends `read`, and with it the shell.
    stdin.write_all(&[4]).await.unwrap();
    let mut error = String::new();
    tokio::time::timeout(WAIT, command.error.read_to_string(&mut error)).await.unwrap().unwrap();
    assert_eq!(status(&error)["status"], "Success");
}

#[tokio::test]
async fn exec_streams_100_mib_with_bounded_memory_and_a_vanished_client_leaves_nothing() {
    let bed = Bed::new().await;
    let id = sleeper(&bed).await;
    let berth_pid = bed.berth.pid().expect("berth runs");
    let rss = || crate::support::streaming::rss_kib(berth_pid);
    let before = rss();

    let out_only = Wanted { stdin: false, stdout: true, stderr: false, tty: false };
    let url = exec_url(&bed, &id, &["head", "-c", "104857600", "/dev/zero"], out_only).await;
    let mut command = SpdyCommand::connect(&url, V4, out_only).await;
    let mut stdout = command.stdout.take().unwrap();
    let mut total = 0usize;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut peak = before;
    loop {
        let n = tokio::time::timeout(WAIT, stdout.read(&mut buffer)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        assert!(buffer[..n].iter().all(|b| *b == 0));
        total += n;
        if total % (8 << 20) < n {
            peak = peak.max(rss());
        }
    }
    assert_eq!(total, 100 << 20, "every byte arrived");
    let (_, _, error) = command.outputs().await;
    assert_eq!(status(&error)["status"], "Success");
    assert!(peak < before + 16 * 1024, "berth's RSS went from {before} KiB to {peak} KiB for 100 MiB");

    // A client that disappears: the process it ran must not stay behind.
    let marker = "4711";
    // A compound command: the shell stays, with `sleep` its child.
    let url = exec_url(&bed, &id, &["sh", "-c", &format!("sleep {marker}; true")], OUT).await;
    let command = SpdyCommand::connect(&url, V4, OUT).await;
    let running = || crate::support::streaming::processes_with_args(&["sleep", marker]);
    let deadline = Instant::now() + WAIT;
    while running().is_empty() {
        assert!(Instant::now() < deadline, "the exec never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    command.session.abort();
    drop(command);
    while !running().is_empty() {
        assert!(Instant::now() < deadline, "the exec'd process outlived its client: {:?}", running());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn exec_over_websocket_in_every_framing() {
    let bed = Bed::new().await;
    let id = sleeper(&bed).await;

    let url = exec_url(&bed, &id, &["sh", "-c", "echo out; echo err >&2; exit 5"], OUT).await;
    let (mut socket, chosen) = websocket(&url, &["v4.channel.k8s.io"]).await;
    assert_eq!(chosen.as_deref(), Some("v4.channel.k8s.io"));
    let messages = ws_read_all(&mut socket, false).await;
    assert_eq!(messages[0], (1, Vec::new()), "the first message opens stdout, empty");
    assert_eq!(channel(&messages, 1), b"out\n");
    assert_eq!(channel(&messages, 2), b"err\n");
    let error = status(&String::from_utf8(channel(&messages, 3)).unwrap());
    assert_eq!(error["details"]["causes"][0]["message"], "5");

    let url = exec_url(&bed, &id, &["echo", "hi"], OUT).await;
    let (mut socket, chosen) = websocket(&url, &["base64.channel.k8s.io"]).await;
    assert_eq!(chosen.as_deref(), Some("base64.channel.k8s.io"));
    let messages = ws_read_all(&mut socket, true).await;
    assert_eq!(channel(&messages, 1), b"hi\n");
    assert!(channel(&messages, 3).is_empty(), "channel.k8s.io reports nothing on success");

    // v5: the client closes stdin with [255, 0], and the process sees its end.
    let with_stdin = Wanted { stdin: true, ..OUT };
    let url = exec_url(&bed, &id, &["sh", "-c", "tr a-z A-Z"], with_stdin).await;
    let (mut socket, chosen) = websocket(&url, &["v5.channel.k8s.io", "v4.channel.k8s.io"]).await;
    assert_eq!(chosen.as_deref(), Some("v5.channel.k8s.io"));
    ws_send(&mut socket, 0, b"shout\n").await;
    ws_send(&mut socket, 255, &[0]).await;
    let messages = ws_read_all(&mut socket, false).await;
    assert_eq!(channel(&messages, 1), b"SHOUT\n");
    assert_eq!(status(&String::from_utf8(channel(&messages, 3)).unwrap())["status"], "Success");
}

fn attach_request(id: &str, stdin: bool) -> AttachRequest {
    AttachRequest { container_id: id.into(), stdin, tty: false, stdout: true, stderr: true }
}

#[tokio::test]
async fn attach_follows_a_container_until_it_stops_and_stdin_once_closes_its_stdin() {
    let bed = Bed::new().await;
    let pod = bed.pod("attach").await;
    let ticker = bed.run(&pod, sh("ticker", &bed.busybox, "while :; do echo tick; sleep 0.2; done")).await;
    let mut runtime = bed.berth.runtime().await;

    // Two sessions at once see the same output.
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let url = runtime.attach(attach_request(&ticker, false)).await.unwrap().into_inner().url;
        sessions.push(SpdyCommand::connect(&url, V4, OUT).await);
    }
    for session in &mut sessions {
        let stdout = session.stdout.as_mut().unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("tick") {
            let mut buffer = [0u8; 64];
            let n = tokio::time::timeout(WAIT, stdout.read(&mut buffer)).await.unwrap().unwrap();
            assert!(n > 0, "the attach ended early");
            seen.extend_from_slice(&buffer[..n]);
        }
    }
    // And a WebSocket client, read until the server closes it.
    let url = runtime.attach(attach_request(&ticker, false)).await.unwrap().into_inner().url;
    let (mut socket, _) = websocket(&url, &["v4.channel.k8s.io"]).await;
    let mut ticked = false;
    while !ticked {
        let message = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut socket)).await.unwrap();
        let bytes = message.expect("the attach stays open").unwrap().into_data();
        ticked = bytes.first() == Some(&1) && String::from_utf8_lossy(&bytes[1..]).contains("tick");
    }
    bed.stop(&ticker, 0).await.unwrap();
    let messages = ws_read_all(&mut socket, false).await;
    assert_eq!(status(&String::from_utf8(channel(&messages, 3)).unwrap())["status"], "Success");
    for mut session in sessions {
        let (_, _, error) = session.outputs().await;
        assert_eq!(status(&error)["status"], "Success", "the attach ends with the container");
    }
    let refused = runtime.attach(attach_request(&ticker, false)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "a stopped container");

    let mut config = sh("reader", &bed.busybox, "tr a-z A-Z; echo stdin closed");
    config.stdin = true;
    config.stdin_once = true;
    let reader = bed.run(&pod, config).await;
    let url = runtime.attach(attach_request(&reader, true)).await.unwrap().into_inner().url;
    let with_stdin = Wanted { stdin: true, ..OUT };
    let mut session = SpdyCommand::connect(&url, V4, with_stdin).await;
    let mut stdin = session.stdin.take().unwrap();
    stdin.write_all(b"typed\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let (stdout, _, _) = session.outputs().await;
    assert_eq!(String::from_utf8_lossy(&stdout), "TYPED\nstdin closed\n");
    let exited = bed.wait_state(&reader, ContainerState::ContainerExited).await;
    assert_eq!(exited.exit_code, 0);

    // Without stdin_once, the end of the client's stdin detaches the client and
    // leaves the container's stdin open.
    let mut config = sh("keeper", &bed.busybox, "tr a-z A-Z");
    config.stdin = true;
    let keeper = bed.run(&pod, config).await;
    let url = runtime.attach(attach_request(&keeper, true)).await.unwrap().into_inner().url;
    let mut session = SpdyCommand::connect(&url, V4, with_stdin).await;
    let mut stdin = session.stdin.take().unwrap();
    stdin.write_all(b"typed\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let (_, _, error) = session.outputs().await;
    assert_eq!(status(&error)["status"], "Success", "detached");
    assert_eq!(bed.status(&keeper).await.state(), ContainerState::ContainerRunning);
}

#[tokio::test]
async fn port_forward_reaches_a_pod_port_over_spdy_and_websocket() {
    let network = TestNetwork::new();
    let bed = Bed::with(Berth::builder().cni_conflist(&network.conflist())).await;
    let pod = bed.pod_with(crate::support::pods::pod_config("forward"), "").await.unwrap();
    let script = "mkdir -p /www && echo pong > /www/index.html && echo ready && exec httpd -f -p 8080 -h /www";
    let mut server = sh("server", &bed.busybox, script);
    security_context(&mut server).namespace_options = Some(pod_network_options());
    let log = pod.log_path(&server);
    bed.run(&pod, server).await;
    wait_for_line(&log, "ready").await;
    let mut runtime = bed.berth.runtime().await;
    let status_request = PodSandboxStatusRequest { pod_sandbox_id: pod.id.clone(), verbose: false };
    assert!(runtime.pod_sandbox_status(status_request).await.unwrap().into_inner().status.is_some());

    let forward = PortForwardRequest { pod_sandbox_id: pod.id.clone(), port: vec![8080] };
    let url = runtime.port_forward(forward.clone()).await.unwrap().into_inner().url;
    let upgraded = spdy_upgrade(&url, &["portforward.k8s.io"]).await;
    assert_eq!(upgraded.status, 101);
    let (session, _incoming) = berth::streaming::spdy::Session::client(upgraded.stream.into_inner());
    let open = |kind: &'static str, port: &'static str, request: &'static str| {
        let session = session.clone();
        async move {
            let headers = berth::streaming::spdy::Headers::new()
                .with("streamType", kind)
                .with("port", port)
                .with("requestID", request);
            session.open(headers, false).await.unwrap()
        }
    };
    // Two connections through one session, as kubectl makes them.
    for request in ["0", "1"] {
        let mut error = open("error", "8080", request).await;
        error.shutdown().await.unwrap();
        let mut data = open("data", "8080", request).await;
        data.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, data.read_to_end(&mut answer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.") && answer.ends_with("pong\n"), "{answer:?}");
        let mut message = String::new();
        tokio::time::timeout(WAIT, error.read_to_string(&mut message)).await.unwrap().unwrap();
        assert_eq!(message, "", "no error");
    }
    // A port nothing listens on: the error stream says so.
    let mut error = open("error", "9", "2").await;
    error.shutdown().await.unwrap();
    let _data = open("data", "9", "2").await;
    let mut message = String::new();
    let _ = tokio::time::timeout(WAIT, error.read_to_string(&mut message)).await.unwrap();
    assert!(message.contains("error forwarding port 9"), "{message:?}");
    session.abort();

    let url = runtime.port_forward(forward).await.unwrap().into_inner().url;
    let (mut socket, chosen) = websocket(&url, &["v4.channel.k8s.io"]).await;
    assert_eq!(chosen.as_deref(), Some("v4.channel.k8s.io"));
    ws_send(&mut socket, 0, b"GET / HTTP/1.0\r\n\r\n").await;
    let messages = ws_read_all(&mut socket, false).await;
    assert_eq!(messages[0], (0, 8080u16.to_le_bytes().to_vec()), "data channel first carries the port");
    assert_eq!(messages[1], (1, 8080u16.to_le_bytes().to_vec()), "so does the error channel");
    let answer = String::from_utf8_lossy(&channel(&messages, 0)[2..]).into_owned();
    assert!(answer.starts_with("HTTP/1.") && answer.ends_with("pong\n"), "{answer:?}");
    assert_eq!(channel(&messages, 1).len(), 2, "no error");

    let refused =
        runtime.port_forward(PortForwardRequest { pod_sandbox_id: "f".repeat(64), port: vec![80] }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn with_tls_the_urls_are_https_and_sessions_run_over_it() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = crate::support::registry::write_self_signed_cert(certs.path());
    let config = format!("[streaming]\ntls_cert_file = {:?}\ntls_key_file = {:?}", cert, key);
    let bed = Bed::with(Berth::builder().config(&config)).await;
    let id = sleeper(&bed).await;
    let url = exec_url(&bed, &id, &["echo", "over tls"], OUT).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&cert).unwrap();
    for der in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(der.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (address, _) = crate::support::streaming::split_url(&url);
    let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client)).connect(name, tcp).await.unwrap();
    let upgraded = crate::support::streaming::spdy_upgrade_over(tls, &url, V4).await;
    let (stdout, _, error) = SpdyCommand::over(upgraded, OUT).await.outputs().await;
    assert_eq!(stdout, b"over tls\n");
    assert_eq!(status(&error)["status"], "Success");

    let plain = tokio::net::TcpStream::connect(&address).await.unwrap();
    let refused = crate::support::streaming::spdy_upgrade_over(plain, &url, V4);
    assert!(
        tokio::time::timeout(WAIT, refused).await.is_ok_and(|answer| answer.status != 101),
        "plain HTTP is refused"
    );
}

#[tokio::test]
async fn attach_to_a_tty_container_types_into_it_and_resizes_it() {
    let bed = Bed::new().await;
    let pod = bed.pod("attach-tty").await;
    let mut config = sh("shell", &bed.busybox, "while read line; do echo \"got $line\"; stty size; done");
    (config.stdin, config.tty) = (true, true);
    let id = bed.run(&pod, config).await;
    let request = AttachRequest { container_id: id.clone(), stdin: true, tty: true, stdout: true, stderr: false };
    let url = bed.berth.runtime().await.attach(request).await.unwrap().into_inner().url;
    let tty = Wanted { stdin: true, stdout: true, stderr: false, tty: true };
    let mut session = SpdyCommand::connect(&url, V4, tty).await;
    let mut resize = session.resize.take().expect("a resize stream with a tty");
    resize.write_all(br#"{"Width":90,"Height":20}"#).await.unwrap();
    let mut stdin = session.stdin.take().unwrap();
    let mut stdout = session.stdout.take().unwrap();
    let deadline = Instant::now() + WAIT;
    let mut seen = String::new();
    while !(seen.contains("got hi") && seen.contains("20 90")) {
        assert!(Instant::now() < deadline, "no echo or no resize through the attach: {seen:?}");
        stdin.write_all(b"hi\n").await.unwrap();
        let mut buffer = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), stdout.read(&mut buffer)).await {
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    }
    bed.stop(&id, 0).await.unwrap();
    let mut error = String::new();
    tokio::time::timeout(WAIT, session.error.read_to_string(&mut error)).await.unwrap().unwrap();
    assert_eq!(status(&error)["status"], "Success", "the attach ends with the container");
}

#[tokio::test]
async fn an_idle_session_is_ended_with_its_process() {
    let bed = Bed::with(Berth::builder().config("[streaming]\nidle_timeout = \"1s\"")).await;
    let id = sleeper(&bed).await;
    let marker = "4712";
    let url = exec_url(&bed, &id, &["sh", "-c", &format!("sleep {marker}; true")], OUT).await;
    // berth's SPDY client sends no pings (client-go's every 5 s would keep it alive).
    let mut command = SpdyCommand::connect(&url, V4, OUT).await;
    let running = || crate::support::streaming::processes_with_args(&["sleep", marker]);
    let deadline = Instant::now() + WAIT;
    while running().is_empty() {
        assert!(Instant::now() < deadline, "the exec never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut error = Vec::new();
    let ended = tokio::time::timeout(WAIT, command.error.read_to_end(&mut error)).await;
    assert!(ended.is_ok(), "the idle session was ended");
    while !running().is_empty() {
        assert!(Instant::now() < deadline, "the idle session's process outlived it: {:?}", running());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
