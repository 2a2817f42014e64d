//! berth's SPDY/3.1 against spdystream, the Go library that kubelet, kubectl
//! and crictl use. A test of the implementation against itself would pass
//! with symmetric mistakes (a wrong zlib dictionary, a misplaced flag), so
//! the peer here is `tests/interop/spdy_peer/main.go`, built with Debian's
//! `golang-go` and `golang-github-docker-spdystream-dev`.
//!
//! Both sides implement the same "ops" (see main.go): a stream's `op` header
//! says what the serving side does with it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use berth::streaming::spdy::{Error, Headers, RstStatus, Session, Stream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio::time::timeout;

/// The checks the Go client runs against berth's server, in its order.
const GO_CLIENT_CHECKS: [&str; 9] = [
    "ping",
    "headers",
    "concurrent-echo",
    "large-echo",
    "large-sink",
    "large-source",
    "reset-by-server",
    "reset-by-client",
    "ping-again",
];
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// A bound on each wait for an event, only there so that a test that goes
/// wrong says where instead of hanging: no wait is expected to come near it.
const HANG_GUARD: Duration = Duration::from_secs(60);

// ---- the Go peer -----------------------------------------------------------

/// Builds the Go peer once per test binary.
fn peer_binary() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/spdy_peer/main.go");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("spdy_peer");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let bin = dir.join("spdy_peer");
        let gopath = std::env::var("SPDY_PEER_GOPATH").unwrap_or_else(|_| "/usr/share/gocode".into());
        let out = std::process::Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            // GOPATH mode against the packaged spdystream; nothing is fetched.
            .env("GO111MODULE", "off")
            .env("GOPATH", gopath)
            .env("GOCACHE", dir.join("gocache"))
            .env("GOENV", "off")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .output()
            .map_err(|e| {
                format!("running `go build` ({e}): install golang-go and golang-github-docker-spdystream-dev")
            })?;
        if !out.status.success() {
            return Err(format!(
                "building the spdystream peer failed (needs golang-go and golang-github-docker-spdystream-dev):\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(bin)
    })
    .clone()
}

struct Peer {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The peer exits when this pipe closes: a backstop to `kill_on_drop`
    /// for when the test process itself is killed.
    _stdin: ChildStdin,
}

impl Peer {
    async fn spawn(args: &[&str]) -> Peer {
        let bin = tokio::task::spawn_blocking(peer_binary).await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // The process is killed whatever way the test ends.
        cmd.kill_on_drop(true);
        cmd.env_remove("DEBUG");
        if std::env::var_os("SPDY_PEER_DEBUG").is_some() {
            cmd.env("DEBUG", "1");
        }
        let mut child = cmd.spawn().expect("starting the spdystream peer");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let _stdin = child.stdin.take().expect("piped stdin");
        Peer { child, stdout, _stdin }
    }

    async fn line(&mut self) -> Option<String> {
        timeout(TEST_TIMEOUT, self.stdout.next_line()).await.expect("peer output timed out").expect("reading peer")
    }

    async fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            match self.line().await {
                Some(line) if line.starts_with(prefix) => return line,
                Some(line) => eprintln!("peer: {line}"),
                None => panic!("peer ended before printing {prefix:?}"),
            }
        }
    }

    async fn server() -> (Peer, SocketAddr) {
        let mut peer = Peer::spawn(&["server"]).await;
        let line = peer.expect_line("LISTEN ").await;
        let addr = line["LISTEN ".len()..].parse().expect("peer address");
        (peer, addr)
    }
}

// ---- shared helpers --------------------------------------------------------

fn pattern_byte(seed: u64, i: u64) -> u8 {
    ((i * 7 + seed) % 251) as u8
}

fn pattern(seed: u64, off: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(seed, off + i)).collect()
}

fn header_num(h: &Headers, name: &str) -> u64 {
    h.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Reads to EOF, checking the pattern; answers like the Go "sink" op.
async fn verify_sink<R: AsyncReadExt + Unpin>(r: &mut R, seed: u64) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => return format!("ok {off}"),
            Ok(n) => n,
            Err(e) => return format!("error {e} after {off}"),
        };
        for (i, b) in buf[..n].iter().enumerate() {
            if *b != pattern_byte(seed, off + i as u64) {
                return format!("bad {}", off + i as u64);
            }
        }
        off += n as u64;
    }
}

async fn write_source<W: AsyncWriteExt + Unpin>(w: &mut W, seed: u64, size: u64, chunk: usize) -> std::io::Result<()> {
    let chunk = if chunk == 0 { 32 * 1024 } else { chunk };
    let mut off = 0u64;
    while off < size {
        let n = chunk.min((size - off) as usize);
        w.write_all(&pattern(seed, off, n)).await?;
        off += n as u64;
    }
    Ok(())
}

fn header_lines(h: &Headers) -> String {
    let mut entries: Vec<(&str, &str)> = h.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.iter().map(|(n, v)| format!("{n}={v}\n")).collect()
}

/// What the "expect-reset" streams saw, by tag; "query" waits for its tag to
/// be set (the test's guard bounds that wait).
type Tags = Arc<watch::Sender<HashMap<String, String>>>;

async fn wait_tag(tags: &Tags, tag: &str) -> String {
    let mut seen = tags.subscribe();
    let set = seen.wait_for(|tags| tags.contains_key(tag)).await.expect("the sender lives in `tags`");
    set[tag].clone()
}

/// The Rust side of the ops, for the Go client.
async fn serve(stream: Stream, tags: Tags) {
    let h = stream.headers().clone();
    let op = h.get("op").unwrap_or_default().to_owned();
    let (mut rd, mut wr) = stream.split();
    match op.as_str() {
        "echo" => {
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
            let _ = wr.shutdown().await;
        }
        "headers" => {
            let _ = wr.write_all(header_lines(&h).as_bytes()).await;
            let _ = wr.shutdown().await;
        }
        "sink" => {
            let answer = verify_sink(&mut rd, header_num(&h, "seed")).await;
            let _ = wr.write_all(answer.as_bytes()).await;
            let _ = wr.shutdown().await;
        }
        "source" => {
            let (seed, size, chunk) = (header_num(&h, "seed"), header_num(&h, "size"), header_num(&h, "chunk"));
            if write_source(&mut wr, seed, size, chunk as usize).await.is_ok() {
                let _ = wr.shutdown().await;
            }
        }
        "reset" => {
            let _ = wr.write_all(b"bye").await;
            // flush: "bye" is handed to the connection before the reset,
            // which would otherwise discard it.
            let _ = wr.flush().await;
            wr.reset(RstStatus::CANCEL);
        }
        "expect-reset" => {
            let mut sink = Vec::new();
            let seen = match rd.read_to_end(&mut sink).await {
                Ok(_) => "fin",
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset",
                Err(e) => panic!("expect-reset: {e}"),
            };
            tags.send_modify(|tags| {
                tags.insert(h.get("tag").unwrap_or_default().to_owned(), seen.to_owned());
            });
        }
        "query" => {
            let answer = wait_tag(&tags, h.get("tag").unwrap_or_default()).await;
            let _ = wr.write_all(answer.as_bytes()).await;
            let _ = wr.shutdown().await;
        }
        other => {
            eprintln!("unknown op {other:?}");
            wr.reset(RstStatus::REFUSED_STREAM);
        }
    }
}

async fn read_all<R: AsyncReadExt + Unpin>(r: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(TEST_TIMEOUT, r.read_to_end(&mut out)).await.expect("read timed out").expect("read failed");
    out
}

async fn open(session: &Session, pairs: &[(&str, &str)]) -> Stream {
    let headers: Headers = pairs.iter().copied().collect();
    timeout(HANG_GUARD, session.open(headers, false)).await.expect("no SYN_REPLY").expect("open failed")
}

async fn echo(session: &Session, payload: Vec<u8>) {
    let (mut rd, mut wr) = open(session, &[("op", "echo")]).await.split();
    let len = payload.len();
    let writer = tokio::spawn(async move {
        // Assorted write sizes, including ones far above the frame size.
        let sizes = [1usize, 100, 32 * 1024, 1 << 20];
        let mut rest = &payload[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            wr.write_all(&rest[..n]).await.unwrap();
            rest = &rest[n..];
            i += 1;
        }
        wr.shutdown().await.unwrap();
        payload
    });
    let got = read_all(&mut rd).await;
    let payload = writer.await.unwrap();
    assert_eq!(got.len(), len);
    assert!(got == payload, "echo of {len} bytes came back different");
}

/// Whether the peer of the TCP socket `socket` advertises a zero receive
/// window: it takes nothing more until its application reads.
fn receive_window_closed(socket: &OwnedFd) -> bool {
    use nix::libc;
    // SAFETY: tcp_info is plain data, zeroed is a valid value of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which has them.
    let got = unsafe {
        libc::getsockopt(socket.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len)
    };
    assert_eq!(got, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_snd_wnd == 0
}

// ---- tests -----------------------------------------------------------------

/// A Go (spdystream) client runs its checks against a berth server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_against_rust_server() {
    timeout(TEST_TIMEOUT, async {
        let started = Instant::now();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut peer = Peer::spawn(&["client", &addr]).await;
        let (tcp, _) = listener.accept().await.unwrap();
        let (session, mut incoming) = Session::server(tcp);

        let tags = Tags::new(watch::Sender::new(HashMap::new()));
        let acceptor = tokio::spawn(async move {
            let mut served = tokio::task::JoinSet::new();
            while let Some(stream) = incoming.accept().await {
                served.spawn(serve(stream, tags.clone()));
            }
            while let Some(r) = served.join_next().await {
                r.unwrap();
            }
        });

        let mut failures = Vec::new();
        let mut passed = Vec::new();
        while let Some(line) = peer.line().await {
            eprintln!("go client: {line}");
            match line.strip_prefix("PASS ") {
                Some(check) => passed.push(check.split_whitespace().next().unwrap_or_default().to_string()),
                None => failures.push(line),
            }
        }
        let status = peer.child.wait().await.unwrap();
        assert!(failures.is_empty() && status.success(), "Go client failed ({status}): {failures:#?}");
        // Every check the Go client runs must have said PASS: a client that
        // stopped early, saying nothing, would otherwise pass too.
        assert_eq!(passed, GO_CLIENT_CHECKS, "the Go client's checks (tests/interop/spdy_peer/main.go, in order)");

        // The client ended with GOAWAY and closed the connection: accept()
        // ends and the session with it.
        timeout(HANG_GUARD, acceptor).await.expect("accept loop did not end").unwrap();
        timeout(HANG_GUARD, session.closed()).await.expect("session did not end").unwrap();
        assert!(session.is_closed());
        eprintln!("go_client_against_rust_server: {:?}", started.elapsed());
    })
    .await
    .expect("test timed out");
}

/// berth as the client (as berth's own tests use it) against a Go server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_against_go_server() {
    timeout(TEST_TIMEOUT, async {
        let started = Instant::now();
        let (_peer, addr) = Peer::server().await;
        let (session, _incoming) = Session::client(TcpStream::connect(addr).await.unwrap());

        // PING answered by spdystream.
        timeout(HANG_GUARD, session.ping()).await.expect("no PING reply").unwrap();

        // Headers, both ways: the Go server lists what it decoded, and its
        // SYN_REPLY carries a header back.
        let stream = open(
            &session,
            &[
                ("op", "headers"),
                ("streamType", "stdout"),
                ("port", "8080"),
                ("x-multi", "one"),
                ("x-multi", "two"),
                ("x-empty", ""),
                ("x-utf8", "grüße"),
            ],
        )
        .await;
        assert_eq!(stream.reply_headers().and_then(|h| h.get("x-reply-op")), Some("headers"));
        let (mut rd, _wr) = stream.split();
        let got = String::from_utf8(read_all(&mut rd).await).unwrap();
        assert_eq!(got, "op=headers\nport=8080\nstreamtype=stdout\nx-empty=\nx-multi=one\nx-multi=two\nx-utf8=grüße\n");

        // Several concurrent streams; each header block also advances the
        // shared zlib contexts.
        let mut echoes = tokio::task::JoinSet::new();
        for i in 0..8u64 {
            let session = session.clone();
            echoes.spawn(async move { echo(&session, pattern(i, 0, 300 * 1024 + i as usize)).await });
        }
        while let Some(r) = echoes.join_next().await {
            r.unwrap();
        }

        // Large payloads, each way and both at once.
        echo(&session, pattern(3, 0, 9 << 20)).await;

        let (mut rd, mut wr) = open(&session, &[("op", "sink"), ("seed", "9")]).await.split();
        write_source(&mut wr, 9, 16 << 20, 200 * 1024).await.unwrap();
        wr.shutdown().await.unwrap();
        assert_eq!(String::from_utf8(read_all(&mut rd).await).unwrap(), format!("ok {}", 16 << 20));

        // The Go server writes 100 000-byte and 4 MiB frames.
        for chunk in ["100000", "4194304"] {
            let size = (16 << 20).to_string();
            let (mut rd, _wr) =
                open(&session, &[("op", "source"), ("seed", "5"), ("size", &size), ("chunk", chunk)]).await.split();
            let answer = timeout(TEST_TIMEOUT, verify_sink(&mut rd, 5)).await.unwrap();
            assert_eq!(answer, format!("ok {}", 16 << 20), "chunk {chunk}");
        }

        // RST_STREAM from the Go side.
        let (mut rd, _wr) = open(&session, &[("op", "reset")]).await.split();
        let mut got = [0u8; 3];
        rd.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"bye");
        let err = timeout(HANG_GUARD, rd.read_u8()).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert!(matches!(inner, Some(Error::Reset { status: RstStatus::CANCEL, .. })), "{err:?}");

        // RST_STREAM to the Go side, told apart from FIN.
        let reset = open(&session, &[("op", "expect-reset"), ("tag", "rs-reset")]).await;
        let (_rd, mut wr) = reset.split();
        wr.write_all(b"some data").await.unwrap();
        wr.flush().await.unwrap();
        wr.reset(RstStatus::CANCEL);
        let (_rd, mut wr) = open(&session, &[("op", "expect-reset"), ("tag", "rs-fin")]).await.split();
        wr.shutdown().await.unwrap();
        for (tag, want) in [("rs-reset", "reset"), ("rs-fin", "fin")] {
            let (mut rd, mut wr) = open(&session, &[("op", "query"), ("tag", tag)]).await.split();
            wr.shutdown().await.unwrap();
            assert_eq!(String::from_utf8(read_all(&mut rd).await).unwrap(), want, "{tag}");
        }

        // An op the server does not know: it resets the stream.
        let (mut rd, _wr) = open(&session, &[("op", "nonsense")]).await.split();
        let err = timeout(HANG_GUARD, rd.read_u8()).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

        timeout(HANG_GUARD, session.ping()).await.expect("no PING reply").unwrap();

        // GOAWAY and a prompt end.
        timeout(HANG_GUARD, session.close()).await.expect("close hung").unwrap();
        assert!(matches!(session.open(Headers::new(), false).await, Err(Error::SessionClosed)));
        eprintln!("rust_client_against_go_server: {:?}", started.elapsed());
    })
    .await
    .expect("test timed out");
}

/// A Go client killed mid-stream: every Rust task waiting on the session
/// ends promptly, readers and a writer blocked on a full connection alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_vanishing_ends_rust_streams() {
    timeout(TEST_TIMEOUT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut peer = Peer::spawn(&["client-hold", &addr]).await;
        let (tcp, _) = listener.accept().await.unwrap();
        // The same socket, for asking the kernel how full the connection is.
        let probe = tcp.as_fd().try_clone_to_owned().unwrap();
        let (session, mut incoming) = Session::server(tcp);

        let stream = timeout(HANG_GUARD, incoming.accept()).await.unwrap().expect("no stream");
        assert_eq!(stream.headers().get("op"), Some("hold"));
        let (mut rd, mut wr) = stream.split();
        let mut ready = [0u8; 5];
        rd.read_exact(&mut ready).await.unwrap();
        assert_eq!(&ready, b"ready");

        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => return Some(e.kind()),
                }
            }
        });
        // The Go client never reads: this writer soon blocks on backpressure.
        let (waiting_tx, waiting) = watch::channel(false);
        let writer = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            loop {
                let mut write = std::pin::pin!(wr.write_all(&chunk));
                // Whether the writer is stuck in a write right now.
                let written = std::future::poll_fn(|cx| {
                    let poll = write.as_mut().poll(cx);
                    waiting_tx.send_replace(poll.is_pending());
                    poll
                });
                match written.await {
                    Ok(()) => total += chunk.len(),
                    Err(e) => return (total, e.kind()),
                }
            }
        });
        peer.expect_line("HOLDING").await;
        // Held: the peer's receive window has closed, so nothing more can go
        // out, and the writer waits in a write.
        let deadline = Instant::now() + HANG_GUARD;
        while !(receive_window_closed(&probe) && *waiting.borrow()) {
            assert!(Instant::now() < deadline, "the writer was never held by backpressure");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(probe);
        assert!(!writer.is_finished(), "writer should be held by backpressure");

        let killed = Instant::now();
        peer.child.kill().await.unwrap();
        let read_end = timeout(HANG_GUARD, reader).await.expect("reader hung after the peer vanished").unwrap();
        assert!(read_end.is_some(), "the stream was never finished, so its end must be an error");
        let (written, _) = timeout(HANG_GUARD, writer).await.expect("writer hung after the peer vanished").unwrap();
        // Bounded buffering: the writer got nowhere near unbounded.
        assert!(written < 64 << 20, "{written} bytes accepted by a peer that never read");
        timeout(HANG_GUARD, session.closed()).await.expect("session did not end").ok();
        assert!(timeout(HANG_GUARD, incoming.accept()).await.unwrap().is_none());
        eprintln!("peer vanished; everything ended within {:?} (wrote {written} bytes first)", killed.elapsed());
    })
    .await
    .expect("test timed out");
}

/// The Go server killed mid-stream ends the Rust client's streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_server_vanishing_ends_rust_streams() {
    timeout(TEST_TIMEOUT, async {
        let (mut peer, addr) = Peer::server().await;
        let (session, _incoming) = Session::client(TcpStream::connect(addr).await.unwrap());
        let (mut rd, mut wr) = open(&session, &[("op", "hold")]).await.split();
        wr.write_all(b"x").await.unwrap();
        peer.expect_line("HOLDING").await;
        peer.child.kill().await.unwrap();
        let mut buf = [0u8; 16];
        let end = timeout(HANG_GUARD, rd.read(&mut buf)).await.expect("read hung after the peer vanished");
        assert!(end.is_err(), "{end:?}");
        timeout(HANG_GUARD, session.closed()).await.expect("session did not end").ok();
        assert!(wr.write_all(b"y").await.is_err());
    })
    .await
    .expect("test timed out");
}
