//! What `sxf serve`, `send` and `fetch` share: flag parsers, log lines and how a
//! drop-box error becomes an exit code. The protocol, the store and the client
//! are in the library (`sxf::dropbox`).
//!
//! Exit codes follow the rest of sxf: 1 when the peer or an archive fails an
//! authenticity check (a server that is not the pinned `--server-id`; an archive
//! that `--open` rejects), 2 for everything else, including a server's refusal.

use std::time::{Duration, SystemTime};

use sxf::dropbox::client::ClientOptions;
use sxf::dropbox::{self as dbx};

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (try 30s, 10m, 500ms)"))?;
    if d.is_zero() {
        return Err("a duration of zero is not allowed".into());
    }
    Ok(d)
}

pub(crate) fn parse_server_id(text: &str) -> Result<[u8; 32], String> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut id)
        .map_err(|_| "a server id is 64 hex digits".to_string())?;
    Ok(id)
}

/// One log line: time, then the event.
pub(crate) fn log_line(msg: impl std::fmt::Display) {
    eprintln!(
        "{} {msg}",
        humantime::format_rfc3339_seconds(SystemTime::now())
    );
}

/// A drop-box error for anyhow: a server that fails its identity check is a
/// rejection (exit 1), everything else keeps its own type (exit 2).
pub(crate) fn peer_error(e: dbx::Error) -> anyhow::Error {
    match e {
        e @ dbx::Error::ServerMismatch { .. } => sxf::Error::NotAuthentic(e.to_string()).into(),
        other => other.into(),
    }
}

pub(crate) fn client_options(server_id: Option<[u8; 32]>) -> ClientOptions {
    ClientOptions {
        server_id,
        ..ClientOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_and_durations_parse() {
        assert_eq!(parse_server_id(&"ab".repeat(32)), Ok([0xab; 32]));
        assert!(parse_server_id("abc").is_err());
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
    }
}
