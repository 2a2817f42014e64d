//! Clients of berth's streaming server, as kubectl and crictl are: berth's own
//! SPDY module over a hand-made HTTP upgrade, and tokio-tungstenite for
//! WebSocket.

use std::time::Duration;

use berth::streaming::spdy::{self, Headers, RecvStream, RstStatus, SendStream, Session};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const WAIT: Duration = Duration::from_secs(60);

/// `http://host:port/path` split into its address and path.
pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").or(url.strip_prefix("https://"));
    let rest = rest.unwrap_or_else(|| panic!("not an http(s) URL: {url}"));
    let (address, path) = rest.split_once('/').expect("a path");
    (address.to_string(), format!("/{path}"))
}

/// The answer to an upgrade request: status, headers (lower-case names), and
/// the connection, positioned after the headers.
pub struct Upgraded<S = TcpStream> {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub stream: BufReader<S>,
}

impl<S> Upgraded<S> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends `POST <path>` asking for SPDY/3.1 with `protocols` and reads the answer.
pub async fn spdy_upgrade(url: &str, protocols: &[&str]) -> Upgraded {
    let (address, _) = split_url(url);
    let stream = TcpStream::connect(&address).await.expect("connect to the streaming server");
    // As Go's net package does by default, like kubectl and crictl.
    stream.set_nodelay(true).unwrap();
    spdy_upgrade_over(stream, url, protocols).await
}

/// As [`spdy_upgrade`], over a connection already made (TLS, for one).
pub async fn spdy_upgrade_over<S>(mut stream: S, url: &str, protocols: &[&str]) -> Upgraded<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (address, path) = split_url(url);
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
    for protocol in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    // A server that drops the connection (a TLS server spoken to in plain text)
    // leaves the status at 0.
    let _ = reader.read_line(&mut status_line).await;
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut body = String::new();
    if status != 101 && status != 0 {
        let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok());
        let mut bytes = vec![0u8; length.unwrap_or(0)];
        reader.read_exact(&mut bytes).await.unwrap();
        body = String::from_utf8_lossy(&bytes).into_owned();
    }
    Upgraded { status, headers, body, stream: reader }
}

/// An exec or attach client over SPDY, with the streams kubectl opens.
pub struct SpdyCommand {
    pub session: Session,
    pub protocol: String,
    pub stdin: Option<SendStream>,
    pub stdout: Option<RecvStream>,
    pub stderr: Option<RecvStream>,
    pub resize: Option<SendStream>,
    pub error: RecvStream,
    /// How the server ends its side of stdin, once it has: client-go ends its
    /// own stdin on a FIN, so a server must not send one before the session
    /// is over.
    server_stdin_end: Option<tokio::task::JoinHandle<StdinEnd>>,
}

/// How the server's side of the stdin stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdinEnd {
    Fin,
    Reset(RstStatus),
    /// Neither: the session went, say.
    Broken(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl SpdyCommand {
    pub async fn connect(url: &str, protocols: &[&str], wanted: Wanted) -> SpdyCommand {
        SpdyCommand::over(spdy_upgrade(url, protocols).await, wanted).await
    }

    /// Opens the streams on a connection already upgraded.
    pub async fn over<S>(upgraded: Upgraded<S>, wanted: Wanted) -> SpdyCommand
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        assert_eq!(upgraded.status, 101, "{:?} {}", upgraded.headers, upgraded.body);
        assert_eq!(upgraded.header("upgrade"), Some("SPDY/3.1"));
        let protocol = upgraded.header("x-stream-protocol-version").unwrap_or_default().to_string();
        let (session, _incoming) = Session::client(upgraded.stream.into_inner());
        let open = |kind: &'static str| {
            let session = session.clone();
            async move {
                let headers = Headers::new().with("streamType", kind);
                tokio::time::timeout(WAIT, session.open(headers, false)).await.expect("stream reply").unwrap()
            }
        };
        // kubectl's order: error, then the others.
        let (error, _) = open("error").await.split();
        let mut server_stdin_end = None;
        let stdin = if wanted.stdin {
            let (mut from_server, to_server) = open("stdin").await.split();
            server_stdin_end = Some(tokio::spawn(async move {
                let mut ignored = Vec::new();
                match from_server.read_to_end(&mut ignored).await {
                    Ok(_) => StdinEnd::Fin,
                    Err(e) => match e.get_ref().and_then(|inner| inner.downcast_ref::<spdy::Error>()) {
                        Some(spdy::Error::Reset { status, .. }) => StdinEnd::Reset(*status),
                        _ => StdinEnd::Broken(e.to_string()),
                    },
                }
            }));
            Some(to_server)
        } else {
            None
        };
        let stdout = if wanted.stdout { Some(open("stdout").await.split().0) } else { None };
        let stderr = if wanted.stderr { Some(open("stderr").await.split().0) } else { None };
        let resize = if wanted.tty && protocol != "channel.k8s.io" && protocol != "v2.channel.k8s.io" {
            Some(open("resize").await.split().1)
        } else {
            None
        };
        SpdyCommand { session, protocol, stdin, stdout, stderr, resize, error, server_stdin_end }
    }

    /// Waits until the server has ended its side of stdin (a command opened
    /// with stdin only), and says how.
    pub async fn server_stdin_end(&mut self) -> StdinEnd {
        let end = self.server_stdin_end.take().expect("a stdin stream, once");
        tokio::time::timeout(WAIT, end).await.expect("the server never ended stdin").expect("the stdin reader")
    }

    /// Reads stdout, stderr and the error stream to their ends.
    pub async fn outputs(&mut self) -> (Vec<u8>, Vec<u8>, String) {
        let read = |stream: Option<RecvStream>| async move {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes).await;
            }
            bytes
        };
        let (stdout, stderr, error) = tokio::time::timeout(WAIT, async {
            let mut error = Vec::new();
            let error_read = self.error.read_to_end(&mut error);
            let (stdout, stderr, _) = tokio::join!(read(self.stdout.take()), read(self.stderr.take()), error_read);
            (stdout, stderr, error)
        })
        .await
        .expect("the session ended");
        (stdout, stderr, String::from_utf8_lossy(&error).into_owned())
    }
}

/// Connects a WebSocket to `url` offering `protocols`; the server's choice too.
pub async fn websocket(url: &str, protocols: &[&str]) -> (WebSocketStream<TcpStream>, Option<String>) {
    let (address, _) = split_url(url);
    let mut request = url.replace("http://", "ws://").into_client_request().unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.join(", ").parse().unwrap());
    }
    let stream = TcpStream::connect(&address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (socket, response) = tokio_tungstenite::client_async(request, stream).await.expect("WebSocket handshake");
    let chosen = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    (socket, chosen)
}

/// Reads messages until the server closes; each as (channel, payload), base64 decoded.
pub async fn ws_read_all(socket: &mut WebSocketStream<TcpStream>, base64: bool) -> Vec<(u8, Vec<u8>)> {
    let mut messages = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = socket.next().await {
            match message {
                Message::Binary(bytes) if !bytes.is_empty() => messages.push((bytes[0], bytes[1..].to_vec())),
                Message::Text(text) if base64 && !text.is_empty() => {
                    use base64::Engine;
                    let channel = text.as_bytes()[0] - b'0';
                    let payload = base64::engine::general_purpose::STANDARD.decode(&text.as_bytes()[1..]).unwrap();
                    messages.push((channel, payload));
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    })
    .await
    .expect("the server closed the WebSocket");
    messages
}

/// The bytes of `channel` in `messages`, in order.
pub fn channel(messages: &[(u8, Vec<u8>)], channel: u8) -> Vec<u8> {
    messages.iter().filter(|(c, _)| *c == channel).flat_map(|(_, payload)| payload.clone()).collect()
}

pub async fn ws_send(socket: &mut WebSocketStream<TcpStream>, channel: u8, payload: &[u8]) {
    let mut framed = vec![channel];
    framed.extend_from_slice(payload);
    socket.send(Message::binary(framed)).await.unwrap();
}

/// A process's resident memory, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// PIDs of the host's processes whose arguments are exactly `args`.
pub fn processes_with_args(args: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = args.iter().flat_map(|arg| arg.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| cmdline == wanted))
        .collect()
}
