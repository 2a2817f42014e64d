//! Kubernetes' remote-command protocol over WebSocket (`v4.channel.k8s.io`,
//! `v5.channel.k8s.io`): each binary message starts with its channel. Shared
//! by berth's streaming server and the client's `exec` / `attach`.

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// The session's end: a `metav1.Status` JSON.
pub const ERROR: u8 = 3;
/// A terminal size, `{"Width":W,"Height":H}`.
pub const RESIZE: u8 = 4;
/// v5: the client's `[255, channel]` closes that channel's input.
pub const CLOSE: u8 = 255;
