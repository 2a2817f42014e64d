//! The local terminal during `exec -t` / `attach -t`: raw mode (every key to
//! the container, Ctrl-C included), put back however the command ends, and
//! its size for the container's terminal.

use std::io::IsTerminal;

use rustix::termios::{self, OptionalActions, Termios};

use super::error::ClientError;

/// Raw mode on stdin until dropped: on return, on error, on unwinding.
pub struct RawMode {
    saved: Termios,
}

/// Fails unless stdin is a terminal: checked before asking the runtime for a
/// session that could not be used.
pub fn require() -> Result<(), ClientError> {
    if std::io::stdin().is_terminal() {
        Ok(())
    } else {
        Err(ClientError::Usage("-t needs a terminal on stdin (run it from one, or drop -t)".into()))
    }
}

impl RawMode {
    pub fn enter() -> Result<RawMode, ClientError> {
        require()?;
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).map_err(|e| ClientError::io("reading the terminal's mode", e.into()))?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
            .map_err(|e| ClientError::io("setting the terminal to raw mode", e.into()))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Drain: output still queued for the terminal is written in raw mode,
        // as it was sent.
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Drain, &self.saved);
    }
}

/// The terminal's size as the remote-command protocol's resize message has it.
pub fn size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(std::io::stdin()).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

pub fn resize_message(width: u16, height: u16) -> Vec<u8> {
    serde_json::json!({ "Width": width, "Height": height }).to_string().into_bytes()
}
