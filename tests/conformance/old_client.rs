//! An old gRPC client: kubelet and crictl up to about 1.26 (grpc-go before
//! 1.5x) send the socket's path as the HTTP/2 `:authority`, other stacks send
//! it percent-encoded or send none. No grpc-go of that era is served to this
//! machine, so the test speaks HTTP/2 frames itself, encoding its headers the
//! way grpc-go's HPACK encoder does: `:authority` as a literal added to the
//! dynamic table, then referred to by index in the next request.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use berth::cri::v1::{VersionRequest, VersionResponse};
use prost::Message;

use crate::support::berth::Berth;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
/// The first entry a client adds to its dynamic table has index 62.
const FIRST_DYNAMIC_INDEX: u8 = 62;

/// How a request carries its `:authority`.
enum Authority<'a> {
    /// A literal with incremental indexing (static name index 1), as grpc-go sends it.
    Literal(&'a [u8]),
    /// An index into the dynamic table, as grpc-go sends a repeated value.
    Indexed(u8),
    Absent,
}

struct Http2Client {
    stream: UnixStream,
    decoder: loona_hpack::Decoder<'static>,
    next_stream: u32,
}

impl Http2Client {
    fn connect(berth: &Berth) -> Http2Client {
        let mut stream = UnixStream::connect(&berth.paths.socket).expect("connect to berth");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
        stream.write_all(PREFACE).expect("preface");
        write_frame(&mut stream, SETTINGS, 0, 0, &[]);
        Http2Client { stream, decoder: loona_hpack::Decoder::new(), next_stream: 1 }
    }

    /// One unary Version call; returns its grpc-status and the decoded reply.
    fn version(&mut self, authority: Authority<'_>) -> (String, Option<VersionResponse>) {
        let stream_id = self.next_stream;
        self.next_stream += 2;
        // :method POST (static 3), :scheme http (static 6), then literals
        // without indexing for the path and gRPC's headers.
        let mut block = vec![0x83, 0x86];
        literal_without_indexing(&mut block, 4, b"/runtime.v1.RuntimeService/Version");
        match authority {
            Authority::Literal(value) => {
                block.push(0x40 | 1);
                string(&mut block, value);
            }
            Authority::Indexed(index) => block.push(0x80 | index),
            Authority::Absent => {}
        }
        literal_without_indexing(&mut block, 31, b"application/grpc"); // content-type
        block.push(0x00);
        string(&mut block, b"te");
        string(&mut block, b"trailers");
        write_frame(&mut self.stream, HEADERS, END_HEADERS, stream_id, &block);

        let request = VersionRequest { version: "0.1.0".into() }.encode_to_vec();
        let mut message = vec![0u8];
        message.extend_from_slice(&(request.len() as u32).to_be_bytes());
        message.extend_from_slice(&request);
        write_frame(&mut self.stream, DATA, END_STREAM, stream_id, &message);
        self.read_reply(stream_id)
    }

    fn read_reply(&mut self, stream_id: u32) -> (String, Option<VersionResponse>) {
        let mut body = Vec::new();
        let mut status = None;
        loop {
            let (kind, flags, stream, payload) = read_frame(&mut self.stream);
            match kind {
                SETTINGS if flags & ACK == 0 => write_frame(&mut self.stream, SETTINGS, ACK, 0, &[]),
                GOAWAY => panic!("berth sent GOAWAY: {payload:?}"),
                RST_STREAM if stream == stream_id => {
                    panic!("berth reset the stream with code {:?}", &payload[..4.min(payload.len())])
                }
                // Every header block is decoded, whichever stream, to keep the table in step.
                HEADERS => {
                    let fields = self.decoder.decode(&payload).expect("berth's header block decodes");
                    for (name, value) in fields {
                        if stream == stream_id && name == b"grpc-status" {
                            status = Some(String::from_utf8_lossy(&value).into_owned());
                        }
                    }
                }
                DATA if stream == stream_id => body.extend_from_slice(&payload),
                _ => {}
            }
            if stream == stream_id && flags & END_STREAM != 0 {
                break;
            }
        }
        let reply = (body.len() >= 5).then(|| VersionResponse::decode(&body[5..]).expect("a VersionResponse"));
        (status.unwrap_or_default(), reply)
    }
}

fn string(out: &mut Vec<u8>, value: &[u8]) {
    assert!(value.len() < 127, "short strings only");
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// A literal without indexing whose name is a static table entry (4-bit prefix).
fn literal_without_indexing(out: &mut Vec<u8>, name_index: u8, value: &[u8]) {
    if name_index < 15 {
        out.push(name_index);
    } else {
        assert!(name_index - 15 < 128, "static table indexes only");
        out.extend_from_slice(&[15, name_index - 15]);
    }
    string(out, value);
}

fn write_frame(stream: &mut UnixStream, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream_id.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame).expect("write a frame");
}

fn read_frame(stream: &mut UnixStream) -> (u8, u8, u32, Vec<u8>) {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).expect("a frame header from berth");
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).expect("a frame payload from berth");
    (header[3], header[4], stream_id, payload)
}

#[tokio::test(flavor = "multi_thread")]
async fn any_authority_an_old_client_sends_is_served() {
    let berth = Berth::start().await;
    let socket_path = berth.paths.socket.display().to_string();
    let percent_encoded = socket_path.replace('/', "%2F");
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut client = Http2Client::connect(&berth);
        let calls = [
            ("the socket path", Authority::Literal(socket_path.as_bytes())),
            ("the socket path again, by table index", Authority::Indexed(FIRST_DYNAMIC_INDEX)),
            ("the percent-encoded path", Authority::Literal(percent_encoded.as_bytes())),
            ("an empty authority", Authority::Literal(b"")),
            ("no authority", Authority::Absent),
            ("localhost", Authority::Literal(b"localhost")),
            // `localhost` is now at 62, the path entries behind it: berth must
            // follow the client's table through entries it dropped and kept.
            ("localhost again, by table index", Authority::Indexed(FIRST_DYNAMIC_INDEX)),
        ];
        let outcomes: Vec<_> = calls.into_iter().map(|(what, authority)| (what, client.version(authority))).collect();
        drop(berth);
        outcomes
    })
    .await
    .expect("client thread");
    for (what, (status, reply)) in outcomes {
        assert_eq!(status, "0", "{what}: grpc-status");
        let reply = reply.unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(reply.runtime_name, "berth", "{what}");
        assert_eq!(reply.runtime_api_version, "v1", "{what}");
    }
}
