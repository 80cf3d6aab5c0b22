//! What `sxf serve`, `send` and `fetch` share: flag parsers and how a
//! drop-box error becomes an exit code. The protocol, the store and the client
//! are in the library (`sxf::dropbox`).
//!
//! Exit codes follow the rest of sxf: 1 when the peer or an archive fails an
//! authenticity check (a server that is not the pinned `--server-id`; an archive
//! that `--open` rejects), 2 for everything else, including a server's refusal.

use std::time::Duration;

use sxf::contacts::ConfigDir;
use sxf::dropbox::client::{Client, ClientOptions};
use sxf::dropbox::{self as dbx};

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (try 30s, 10m, 500ms)"))?;
    if d.is_zero() {
        return Err("a duration of zero is not allowed".into());
    }
    Ok(d)
}

/// `--server`: an address with its port. A name alone (`localhost`) is refused
/// here, before any connection, with the example the drop-box docs use.
pub(crate) fn parse_server_addr(text: &str) -> Result<String, String> {
    let example = "give the port too, like localhost:7878";
    let port = match text.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && (!host.contains(':') || host.starts_with('[') && host.ends_with(']')) =>
        {
            port
        }
        // A bare IPv6 address needs brackets: [::1]:7878.
        Some((host, _)) if host.contains(':') => {
            return Err(format!(
                "{text:?} has no port: {example} (an IPv6 address in brackets: [::1]:7878)"
            ));
        }
        _ => return Err(format!("{text:?} has no port: {example}")),
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(text.to_owned()),
        _ => Err(format!(
            "{port:?} is not a port number (1-65535): {example}"
        )),
    }
}

pub(crate) fn parse_server_id(text: &str) -> Result<[u8; 32], String> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut id)
        .map_err(|_| "a server id is 64 hex digits".to_string())?;
    Ok(id)
}

/// A drop-box error for anyhow: a server that fails its identity check is a
/// rejection (exit 1), everything else keeps its own type (exit 2).
pub(crate) fn peer_error(e: dbx::Error) -> anyhow::Error {
    match e {
        e @ (dbx::Error::ServerMismatch { .. } | dbx::Error::KnownServerChanged { .. }) => {
            sxf::Error::NotAuthentic(e.to_string()).into()
        }
        other => other.into(),
    }
}

pub(crate) fn client_options(server_id: Option<[u8; 32]>) -> ClientOptions {
    ClientOptions {
        server_id,
        ..ClientOptions::default()
    }
}

/// Connects to a drop-box server, pinning its id: `--server-id` when given
/// (`options.server_id`), else the id the known-servers file of the config
/// directory recorded for `server`, else none, and then, after the handshake,
/// the server's id is recorded there (trust on first use) and said so on
/// standard error. A recorded server that shows another id is refused.
pub(crate) fn connect(server: &str, options: &ClientOptions) -> Result<Client, dbx::Error> {
    if options.server_id.is_some() {
        return Client::connect(server, options);
    }
    let known_err = |e: sxf::contacts::ContactsError| dbx::Error::Io {
        context: "the known servers file".into(),
        source: std::io::Error::other(e.to_string()),
    };
    let dir = ConfigDir::from_env().map_err(known_err)?;
    let file = dir.known_servers_path().display().to_string();
    let recorded = dir.known_server(server).map_err(known_err)?;
    let changed = |expected: [u8; 32], found: String| dbx::Error::KnownServerChanged {
        addr: server.to_owned(),
        expected: hex::encode(expected),
        found,
        file: file.clone(),
    };
    let pinned = ClientOptions {
        server_id: recorded,
        ..options.clone()
    };
    let client = match (Client::connect(server, &pinned), recorded) {
        (Err(dbx::Error::ServerMismatch { found, .. }), Some(expected)) => {
            return Err(changed(expected, found));
        }
        (r, _) => r?,
    };
    if recorded.is_none() {
        let id = client.server_id();
        match dir.remember_server(server, id).map_err(known_err)? {
            Some(other) if other != id => return Err(changed(other, hex::encode(id))),
            Some(_) => {}
            None => eprintln!(
                "first contact with {server}: its server id is {}; recorded in {file}, \
                 and a server there with any other id will be refused",
                hex::encode(id)
            ),
        }
    }
    Ok(client)
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

    #[test]
    fn a_server_address_without_a_port_asks_for_one() {
        for ok in [
            "localhost:7878",
            "127.0.0.1:7878",
            "[::1]:7878",
            "example.org:1",
        ] {
            assert_eq!(parse_server_addr(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "localhost",
            "127.0.0.1",
            "localhost:",
            ":7878",
            "localhost:0",
            "localhost:70000",
            "localhost:http",
            "::1",
            "[::1]",
            "",
        ] {
            let e = parse_server_addr(bad).unwrap_err();
            assert!(e.contains("like localhost:7878"), "{bad:?}: {e}");
        }
    }
}
