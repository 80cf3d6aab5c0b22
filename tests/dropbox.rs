//! The drop-box end to end: real `sxf serve` processes on 127.0.0.1 with
//! ephemeral ports, real `sxf send` / `sxf fetch`, and raw hostile clients.

#[path = "common/mod.rs"]
mod common;
mod dropbox_common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
#[cfg(target_os = "linux")]
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dropbox_common::*;
use sxf::dropbox::client::{self, Client, ClientOptions};
use sxf::dropbox::protocol::{self, ErrorCode, MessageId, Reply, Request};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn read(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// An honest client can still do a full round trip.
fn assert_still_serving(server: &Server, dir: &std::path::Path, tag: &str) {
    let msg = seal(
        dir,
        &format!("{tag}.sxf"),
        &["dave"],
        &format!("still serving {tag}"),
        0,
    );
    let id = server.send_ok(&msg);
    let out = dir.join(format!("{tag}-in"));
    let o = server.fetch("dave", &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(read(&out.join(format!("{id}.sxf"))), read(&msg));
}

// ---------------------------------------------------------------- round trips

#[test]
fn fetch_open_of_photos_or_files_alone_writes_no_message_file() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "files.sxf", &["bob"], "", 20_000);
    let id = server.send_ok(&msg);
    let out = dir.path().join("in");
    let from = key("alice.pub");
    let o = server.fetch("bob", &out, &["--open", "--from", from.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let opened = out.join(&id);
    assert!(opened.join("files.sxf.bin").is_file());
    assert!(!opened.join("message.txt").exists(), "an empty message.txt");
    assert!(
        !text(&o.stderr).contains("message.txt"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn send_fetch_and_serve_print_sizes_in_the_progress_bars_units() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "sizes", 20_000);
    let sent = server.send(&msg);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let id = text(&sent.stdout).trim().to_owned();
    assert!(
        text(&sent.stderr).contains(" KiB) to "),
        "{}",
        text(&sent.stderr)
    );
    let o = server.fetch("bob", &dir.path().join("in"), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(" KiB)"), "{}", text(&o.stderr));
    assert!(server.wait_for_log("downloaded", Duration::from_secs(5)));
    let log = server.log();
    for needle in [format!("stored {id} ("), format!("downloaded {id} (")] {
        let line = log.iter().find(|l| l.contains(&needle)).expect("logged");
        assert!(line.contains(" KiB)"), "{line}");
    }
    let limits = log.iter().find(|l| l.contains(" limits: ")).unwrap();
    assert!(limits.contains(" MiB per message"), "{limits}");
    assert!(!log.iter().any(|l| l.contains(" bytes")), "{log:?}");
}

#[test]
fn alice_to_bob_round_trip_is_byte_exact_and_second_fetch_gets_nothing() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "meet at noon", 20_000);
    let id = server.send_ok(&msg);
    assert!(server.wait_for_log(&format!("stored {id}"), Duration::from_secs(5)));

    let out = dir.path().join("in");
    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let saved = out.join(format!("{id}.sxf"));
    assert_eq!(text(&o.stdout).trim(), saved.display().to_string());
    assert_eq!(read(&saved), read(&msg), "byte-exact");
    assert!(
        server.mailbox_files("bob").is_empty(),
        "deleted after saving"
    );

    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success());
    assert!(
        text(&o.stderr).contains("no messages waiting"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(saved_archives(&out), vec![saved]);

    // The saved archive opens as any other.
    let o = run(&[
        "open",
        out.join(format!("{id}.sxf")).to_str().unwrap(),
        "--key",
        key("bob.key").to_str().unwrap(),
        "--from",
        key("alice.pub").to_str().unwrap(),
        "-o",
        dir.path().join("opened").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "meet at noon");
}

#[test]
fn several_recipients_each_get_their_own_copy() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(
        dir.path(),
        "m.sxf",
        &["bob", "carol", "dave"],
        "to all three",
        0,
    );
    let o = server.send(&msg);
    assert!(o.status.success());
    assert!(
        text(&o.stderr).contains("3 recipient"),
        "{}",
        text(&o.stderr)
    );
    let id = text(&o.stdout).trim().to_owned();

    for who in ["bob", "carol", "dave"] {
        let out = dir.path().join(format!("in-{who}"));
        let o = server.fetch(
            who,
            &out,
            &["--open", "--from", key("alice.pub").to_str().unwrap()],
        );
        assert!(o.status.success(), "{who}: {}", text(&o.stderr));
        assert_eq!(read(&out.join(format!("{id}.sxf"))), read(&msg), "{who}");
        assert_eq!(text(&o.stdout).trim(), "to all three", "{who}");
        assert_eq!(
            std::fs::read_to_string(out.join(&id).join("message.txt")).unwrap(),
            "to all three"
        );
        assert!(server.mailbox_files(who).is_empty());
    }
    // Not a recipient: nothing for alice or mallory.
    for who in ["alice", "mallory"] {
        let out = dir.path().join(format!("in-{who}"));
        let o = server.fetch(who, &out, &[]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(saved_archives(&out).is_empty());
    }
}

// Reads the watcher's CPU time from Linux's /proc.
#[cfg(target_os = "linux")]
#[test]
fn watch_receives_a_message_sent_after_it_started_without_polling() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &["--max-wait", "2s"]);
    let out = dir.path().join("bob-in");
    let mut watcher = sxf()
        .args([
            "fetch",
            "--watch",
            "--open",
            "--server",
            &server.addr,
            "--key",
        ])
        .arg(key("bob.key"))
        .arg("--from")
        .arg(key("alice.pub"))
        .arg("--out-dir")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = watcher.stdout.take().unwrap();
    let stderr = watcher.stderr.take().unwrap();
    let watcher = Kill(watcher);
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(l);
        }
    });
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = err_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the watcher says it is waiting");
        if l.contains("waiting for messages") {
            break;
        }
    }
    // Waiting spans at least one full long-poll round (max-wait 2s) and must
    // cost next to no CPU: it is a held request, not a sleep loop.
    let cpu_before = cpu_seconds(watcher.0.id());
    std::thread::sleep(Duration::from_millis(2500));
    let cpu_idle = cpu_seconds(watcher.0.id()) - cpu_before;
    assert!(
        cpu_idle < 0.2,
        "the watcher burned {cpu_idle}s of CPU while idle"
    );

    let msg = seal(
        dir.path(),
        "late.sxf",
        &["bob"],
        "sent after the watcher started",
        0,
    );
    let sent_at = Instant::now();
    let id = server.send_ok(&msg);
    let line = out_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("the watcher prints the opened message");
    assert_eq!(line, "sent after the watcher started");
    assert!(
        sent_at.elapsed() < Duration::from_secs(5),
        "delivered promptly"
    );
    assert_eq!(read(&out.join(format!("{id}.sxf"))), read(&msg));
    assert!(server.mailbox_files("bob").is_empty());
    // stdout and stderr are read by two threads: the "verified" line may still be
    // on its way when the message has arrived, so wait for it rather than peek.
    let mut stderr_lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stderr_lines
        .iter()
        .any(|l: &String| l.starts_with("verified: from "))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match err_rx.recv_timeout(left) {
            Ok(line) => stderr_lines.push(line),
            Err(_) => panic!("no verified line on stderr: {stderr_lines:?}"),
        }
    }
    // Several WAITs answered empty or ready, none more often than the long-poll allows.
    assert!(server.wait_for_count("downloaded", 1, Duration::from_secs(5)));
    assert_eq!(server.count_log("downloaded"), 1);
}

#[test]
fn fetch_open_rejects_the_wrong_sender_with_exit_1_and_keeps_the_archive() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal_from(dir.path(), "m.sxf", "mallory", &["bob"], "trust me", 0);
    let id = server.send_ok(&msg);
    let out = dir.path().join("in");
    let o = server.fetch(
        "bob",
        &out,
        &["--open", "--from", key("alice.pub").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("not authentic"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        read(&out.join(format!("{id}.sxf"))),
        read(&msg),
        "kept locally"
    );
    assert!(!out.join(&id).exists(), "nothing opened");
}

#[test]
fn fetch_open_any_sender_opens_with_a_loud_warning() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal_from(dir.path(), "m.sxf", "mallory", &["bob"], "from whoever", 0);
    let id = server.send_ok(&msg);
    let out = dir.path().join("in");
    let alice = key("alice.pub");
    let alice = alice.to_str().unwrap();
    // Usage errors, caught before anything is fetched: --open needs exactly one
    // of --from and --any-sender, and --any-sender means nothing without --open.
    for (extra, says) in [
        (&["--open"][..], "--any-sender"),
        (
            &["--open", "--any-sender", "--from", alice][..],
            "cannot be used with",
        ),
        (&["--any-sender"][..], "--open"),
        // Refused with --watch: anyone could trigger automatic decryptions.
        (
            &["--watch", "--open", "--any-sender"][..],
            "--watch cannot be used with --any-sender",
        ),
    ] {
        let o = server.fetch("bob", &out, extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(says),
            "{extra:?}: {}",
            text(&o.stderr)
        );
    }
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);
    assert!(saved_archives(&out).is_empty());

    let o = server.fetch("bob", &out, &["--open", "--any-sender"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "from whoever");
    let e = text(&o.stderr);
    let mallory = fingerprint("mallory").to_string();
    assert!(e.contains("WARNING: --any-sender"), "{e}");
    assert!(
        e.contains(&format!("WARNING: sender key fingerprint: {mallory}")),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "signature valid, sender NOT verified: sealed by {mallory}"
        )),
        "{e}"
    );
    assert_eq!(read(&out.join(format!("{id}.sxf"))), read(&msg));
    assert_eq!(
        std::fs::read_to_string(out.join(&id).join("message.txt")).unwrap(),
        "from whoever"
    );
    assert!(server.mailbox_files("bob").is_empty());
}

// ------------------------------------------------------------ hostile clients

#[test]
fn garbage_bytes_get_an_error_and_the_server_keeps_serving() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let mut raw = server.raw();
    raw.write(b"\x00\x01\x02 this is not a frame at all \xff\xfe");
    let m = expect_error(raw.reply(), ErrorCode::BadFrame);
    assert!(m.contains("not an sxf drop-box frame"), "{m}");
    assert!(raw.is_closed());
    // Garbage before the HELLO is even read.
    let mut s = Raw::tls(&server.addr);
    s.write_all(&[0xAB; 4096]).unwrap();
    let _hello = read_reply(&mut s).unwrap();
    let r = read_reply(&mut s).unwrap();
    expect_error(r, ErrorCode::BadFrame);
    // A good magic with a bad version, and an unknown frame type.
    let mut raw = server.raw();
    raw.write(b"SXFD\x09\x01\0\0\0\0");
    expect_error(raw.reply(), ErrorCode::UnsupportedVersion);
    let mut raw = server.raw();
    raw.write(b"SXFD\x02\x77\0\0\0\0");
    expect_error(raw.reply(), ErrorCode::BadFrame);
    // A reply type sent as a request.
    let mut raw = server.raw();
    protocol::write_frame(&mut raw.stream, protocol::kind::STORED, &[0; 18]).unwrap();
    expect_error(raw.reply(), ErrorCode::BadFrame);
    assert_still_serving(&server, dir.path(), "after-garbage");
}

#[test]
fn an_http_request_is_refused_with_a_clear_error() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let mut raw = server.raw();
    raw.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let m = expect_error(raw.reply(), ErrorCode::BadFrame);
    assert!(m.contains("not an HTTP server"), "{m}");
    assert!(raw.is_closed());
    let mut raw = server.raw();
    raw.write(b"POST /upload HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n");
    expect_error(raw.reply(), ErrorCode::BadFrame);
    assert_still_serving(&server, dir.path(), "after-http");
}

#[test]
fn an_oversized_length_prefix_is_refused_before_allocation() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    for (frame_type, len) in [
        (protocol::kind::UPLOAD, u32::MAX),
        (protocol::kind::AUTH, protocol::MAX_CONTROL_BODY + 1),
        (protocol::kind::DATA, protocol::MAX_DATA_BODY + 1),
        (protocol::kind::LIST, 0x4000_0000),
    ] {
        let mut raw = server.raw();
        let mut header = b"SXFD\x02".to_vec();
        header.push(frame_type);
        header.extend_from_slice(&len.to_be_bytes());
        raw.write(&header);
        let m = expect_error(raw.reply(), ErrorCode::FrameTooLarge);
        assert!(m.contains(&len.to_string()), "{m}");
        assert!(raw.is_closed());
    }
    // An upload announcing more than the server accepts is refused before any data.
    let mut raw = server.raw();
    let r = raw.request(&Request::Upload(u64::MAX));
    expect_error(r, ErrorCode::TooLarge);
    assert_still_serving(&server, dir.path(), "after-oversized");
}

#[test]
fn fifty_stalled_clients_are_cut_off_and_block_no_one() {
    let dir = tempdir();
    // All fifty come from 127.0.0.1, so the per-address cap is raised for them.
    let server = Server::start(
        &dir.path().join("store"),
        &["--idle-timeout", "3s", "--max-connections-per-ip", "64"],
    );
    let started = Instant::now();
    let mut stalled: Vec<_> = (0..50)
        .map(|_| {
            let mut s = Raw::tls(&server.addr);
            s.write_all(b"S").unwrap();
            s
        })
        .collect();
    // While all fifty hang on to their connections, an honest round trip works.
    assert_still_serving(&server, dir.path(), "during-stall");
    let honest_took = started.elapsed();
    assert!(
        honest_took < Duration::from_secs(3),
        "honest client waited {honest_took:?}"
    );
    // Each staller gets HELLO, then IDLE_TIMEOUT, then the connection closes.
    for s in &mut stalled {
        assert!(matches!(read_reply(s), Some(Reply::Hello(_))));
        match read_reply(s) {
            Some(Reply::Error { code, .. }) => assert_eq!(code, ErrorCode::IdleTimeout),
            other => panic!("expected idle-timeout, got {other:?}"),
        }
        assert!(read_reply(s).is_none());
    }
    let cut_after = started.elapsed();
    assert!(cut_after < Duration::from_secs(8), "{cut_after:?}");
    assert!(server.wait_for_count("idle-timeout", 50, Duration::from_secs(5)));
}

#[test]
fn a_client_sending_one_byte_at_a_time_hits_the_total_deadline() {
    let dir = tempdir();
    let server = Server::start(
        &dir.path().join("store"),
        &["--idle-timeout", "1s", "--total-timeout", "2s"],
    );
    let mut raw = server.raw();
    let started = Instant::now();
    // A valid LIST frame, one byte every 300 ms, forever.
    let frame: Vec<u8> = {
        let mut v = Vec::new();
        protocol::write_request(&mut v, &Request::List).unwrap();
        v
    };
    let mut cut = false;
    for b in frame.iter().cycle().take(40) {
        if raw.stream.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let _ = cut;
    // Whatever was answered before, the last word is DEADLINE and then a close.
    let last = raw.replies_after_cut().pop();
    let m = expect_error(last.expect("an error frame"), ErrorCode::Deadline);
    assert!(m.contains("time limit"), "{m}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn an_unauthenticated_connection_is_cut_at_its_shorter_deadline() {
    let dir = tempdir();
    let server = Server::start(
        &dir.path().join("store"),
        &["--idle-timeout", "1s", "--unauthenticated-timeout", "2s"],
    );
    let mut raw = server.raw();
    let started = Instant::now();
    // One CHALLENGE per idle period keeps the idle deadline away for ever; only
    // the total deadline (10 minutes) used to end such a connection.
    let mut answered = 0;
    let last = loop {
        if protocol::write_request(&mut raw.stream, &Request::Challenge).is_err() {
            break read_reply(&mut raw.stream);
        }
        match read_reply(&mut raw.stream) {
            Some(Reply::Challenge(_)) => answered += 1,
            other => break other,
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still open after {answered} challenges"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let took = started.elapsed();
    let m = expect_error(last.expect("an error frame"), ErrorCode::Deadline);
    assert!(m.contains("unauthenticated") && m.contains("2s"), "{m}");
    assert!(
        read_reply(&mut raw.stream).is_none(),
        "then the connection closes"
    );
    assert!(answered >= 3, "{answered}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        server.wait_for_log("refused [12 deadline]: ", Duration::from_secs(5)),
        "{:?}",
        server.log()
    );
    let line = server
        .log()
        .into_iter()
        .find(|l| l.contains("refused [12 deadline]: "))
        .unwrap();
    assert!(line.contains("unauthenticated"), "{line}");

    // Once authenticated, a connection has the whole total deadline: it goes on
    // well past the unauthenticated one.
    let mut a = server.raw();
    let auth = auth_for(&mut a, "bob");
    assert_eq!(a.request(&Request::Auth(auth)), Reply::Ok);
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(3) {
        match a.request(&Request::List) {
            Reply::List { .. } => {}
            other => panic!("an authenticated connection was cut: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn an_upload_in_progress_is_not_cut_by_the_unauthenticated_deadline() {
    let dir = tempdir();
    let server = Server::start(
        &dir.path().join("store"),
        &["--idle-timeout", "2s", "--unauthenticated-timeout", "1s"],
    );
    let msg = seal(dir.path(), "m.sxf", &["bob"], "slowly", 20_000);
    let bytes = read(&msg);
    let mut raw = server.raw();
    let started = Instant::now();
    // Senders upload without authenticating: a slow upload outlives the 1 s.
    assert_eq!(raw.request(&Request::Upload(bytes.len() as u64)), Reply::Ok);
    for chunk in bytes.chunks(bytes.len().div_ceil(5)) {
        std::thread::sleep(Duration::from_millis(400));
        protocol::write_request(&mut raw.stream, &Request::Data(chunk.to_vec())).unwrap();
    }
    match raw.reply() {
        Reply::Stored { recipients: 1, .. } => {}
        other => panic!("expected STORED, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(server.mailbox_files("bob").len(), 1);
    // Time inside the upload did not count: the connection still has most of
    // its unauthenticated second, then is cut by it (not by the 2 s idle).
    assert!(matches!(
        raw.request(&Request::Challenge),
        Reply::Challenge(_)
    ));
    let m = expect_error(raw.reply(), ErrorCode::Deadline);
    assert!(m.contains("unauthenticated"), "{m}");
    assert!(raw.is_closed());
    // And `sxf send` is unaffected.
    let other = seal(dir.path(), "n.sxf", &["bob"], "quickly", 0);
    server.send_ok(&other);
}

#[test]
fn list_get_delete_and_wait_need_authentication() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "private", 0);
    let id = MessageId::parse(&server.send_ok(&msg)).unwrap();
    let mut raw = server.raw();
    for r in [
        Request::List,
        Request::Get(id),
        Request::Delete(id),
        Request::Wait(1),
    ] {
        let m = expect_error(raw.request(&r), ErrorCode::AuthRequired);
        assert!(m.contains("authenticate"), "{m}");
    }
    // A failed AUTH leaves the connection unauthenticated.
    let c = raw.request(&Request::Challenge);
    assert!(matches!(c, Reply::Challenge(_)));
    expect_error(raw.request(&Request::List), ErrorCode::AuthRequired);
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);
}

/// A valid AUTH for `who` on `raw`'s connection.
fn auth_for(raw: &mut Raw, who: &str) -> protocol::AuthRequest {
    let nonce = match raw.request(&Request::Challenge) {
        Reply::Challenge(n) => n,
        other => panic!("{other:?}"),
    };
    let binding = raw.binding(&nonce);
    client::sign_statement(&private_key(who), raw.cert_id(), nonce, binding).unwrap()
}

#[test]
fn the_wrong_key_cannot_open_a_mailbox() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "for bob only", 0);
    let id = server.send_ok(&msg);
    let bob = fingerprint("bob");

    // Alice signs a statement naming bob's mailbox, with her own key.
    let mut raw = server.raw();
    let mut a = auth_for(&mut raw, "alice");
    a.statement.mailbox = *bob.as_bytes();
    let sig = sxf::crypto::sign(
        &mut rand::rngs::SysRng,
        private_key("alice").key(),
        &a.statement.to_bytes(),
    )
    .unwrap();
    a.signature = sig;
    let m = expect_error(raw.request(&Request::Auth(a)), ErrorCode::AuthFailed);
    assert!(m.contains("not the key of mailbox"), "{m}");
    expect_error(raw.request(&Request::List), ErrorCode::AuthRequired);

    // Bob's public key with alice's signature.
    let mut raw = server.raw();
    let mut a = auth_for(&mut raw, "alice");
    a.statement.mailbox = *bob.as_bytes();
    a.spki = sxf::keys::load_public_key(&key("bob.pub"))
        .unwrap()
        .spki_der()
        .to_vec();
    let m = expect_error(raw.request(&Request::Auth(a)), ErrorCode::AuthFailed);
    assert!(m.contains("signature does not verify"), "{m}");

    // A key sxf refuses (1024 bits) is refused as a key.
    let mut raw = server.raw();
    let mut a = auth_for(&mut raw, "bob");
    a.spki = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    expect_error(raw.request(&Request::Auth(a)), ErrorCode::AuthFailed);

    // Three failures close the connection.
    let mut raw = server.raw();
    for _ in 0..3 {
        let mut a = auth_for(&mut raw, "bob");
        a.signature[0] ^= 1;
        expect_error(raw.request(&Request::Auth(a)), ErrorCode::AuthFailed);
    }
    assert!(raw.is_closed());

    // Through the CLI: alice fetches her own (empty) mailbox, never bob's.
    let out = dir.path().join("alice-in");
    let o = server.fetch("alice", &out, &[]);
    assert!(o.status.success());
    assert!(saved_archives(&out).is_empty());
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);
    // Mallory's PKCS#1 key authenticates for her own mailbox.
    let o = server.fetch("mallory", &dir.path().join("m-in"), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn a_statement_for_another_server_fails() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    // Another server id.
    let mut raw = server.raw();
    let mut a = auth_for(&mut raw, "bob");
    a.statement.server_id[0] ^= 0xff;
    a.signature = sxf::crypto::sign(
        &mut rand::rngs::SysRng,
        private_key("bob").key(),
        &a.statement.to_bytes(),
    )
    .unwrap();
    let m = expect_error(raw.request(&Request::Auth(a)), ErrorCode::WrongServer);
    assert!(m.contains("server id"), "{m}");
    // A client that pins another server id refuses the server: exit 1.
    let o = server.fetch(
        "bob",
        &dir.path().join("in"),
        &["--server-id", &"00".repeat(32)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("not the expected"),
        "{}",
        text(&o.stderr)
    );
    // Pinning the right id works.
    let id = hex::encode(raw.hello.server_id);
    let o = server.fetch("bob", &dir.path().join("in"), &["--server-id", &id]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// A TCP port forwarder, as `ssh -L PORT:ADDR` makes: every connection to
/// the returned address is spliced, byte for byte, to `to`.
fn tunnel_to(to: &str) -> String {
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let to = to.to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&to) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            };
            pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
            pipe(server, client);
        }
    });
    addr
}

#[test]
fn send_and_fetch_work_through_a_tunnel_to_another_port() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    // The client reaches the server at the tunnel's local port, which the
    // server never hears of: no --public-addr, and no address in the
    // statement to match it.
    let tunnel = tunnel_to(&server.addr);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "through the tunnel", 0);
    let o = sxf()
        .arg("send")
        .arg(&msg)
        .args(["--server", &tunnel])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_owned();
    let out = dir.path().join("in");
    let o = sxf()
        .args(["fetch", "--server", &tunnel, "--key"])
        .arg(key("bob.key"))
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(read(&out.join(format!("{id}.sxf"))), read(&msg));
}

#[test]
fn a_replayed_challenge_response_is_refused() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let mut first = server.raw();
    let auth = auth_for(&mut first, "bob");
    assert_eq!(first.request(&Request::Auth(auth.clone())), Reply::Ok);
    assert!(matches!(first.request(&Request::List), Reply::List { .. }));
    // Again on the same connection: the challenge was single-use.
    let m = expect_error(
        first.request(&Request::Auth(auth.clone())),
        ErrorCode::ChallengeInvalid,
    );
    assert!(m.contains("single-use"), "{m}");
    expect_error(first.request(&Request::List), ErrorCode::AuthRequired);
    // On a new connection with a fresh challenge outstanding.
    let mut second = server.raw();
    assert!(matches!(
        second.request(&Request::Challenge),
        Reply::Challenge(_)
    ));
    let m = expect_error(
        second.request(&Request::Auth(auth.clone())),
        ErrorCode::ChallengeInvalid,
    );
    assert!(m.contains("replayed"), "{m}");
    // On a new connection with no challenge at all.
    let mut third = server.raw();
    expect_error(
        third.request(&Request::Auth(auth)),
        ErrorCode::ChallengeInvalid,
    );
    expect_error(third.request(&Request::List), ErrorCode::AuthRequired);
}

#[test]
fn a_stale_challenge_is_refused() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &["--challenge-ttl", "500ms"]);
    let mut raw = server.raw();
    let auth = auth_for(&mut raw, "bob");
    std::thread::sleep(Duration::from_millis(800));
    let m = expect_error(
        raw.request(&Request::Auth(auth)),
        ErrorCode::ChallengeInvalid,
    );
    assert!(m.contains("expired"), "{m}");
    let auth = auth_for(&mut raw, "bob");
    assert_eq!(raw.request(&Request::Auth(auth)), Reply::Ok);
}

#[test]
fn mailbox_and_message_ids_like_dotdot_never_reach_the_filesystem() {
    let dir = tempdir();
    let store = dir.path().join("store");
    let server = Server::start(&store, &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "x", 0);
    let id = server.send_ok(&msg);
    // A mailbox field of "../x" (padded to its fixed 32 bytes).
    let mut raw = server.raw();
    let mut a = auth_for(&mut raw, "bob");
    let mut evil = [0u8; 32];
    evil[..4].copy_from_slice(b"../x");
    a.statement.mailbox = evil;
    a.signature = sxf::crypto::sign(
        &mut rand::rngs::SysRng,
        private_key("bob").key(),
        &a.statement.to_bytes(),
    )
    .unwrap();
    expect_error(raw.request(&Request::Auth(a)), ErrorCode::AuthFailed);
    // A GET / DELETE whose id is "../x" or a long path: a malformed body, closed.
    for (t, body) in [
        (protocol::kind::GET, &b"../x"[..]),
        (protocol::kind::DELETE, &b"../../../../../../etc/passwd"[..]),
    ] {
        let mut raw = server.raw();
        let auth = auth_for(&mut raw, "bob");
        assert_eq!(raw.request(&Request::Auth(auth)), Reply::Ok);
        protocol::write_frame(&mut raw.stream, t, body).unwrap();
        expect_error(raw.reply(), ErrorCode::BadFrame);
        assert!(raw.is_closed());
    }
    // An id that parses but names nothing.
    let mut raw = server.raw();
    let auth = auth_for(&mut raw, "bob");
    assert_eq!(raw.request(&Request::Auth(auth)), Reply::Ok);
    let mut weird = [b'.'; 16];
    weird[2] = b'/';
    expect_error(
        raw.request(&Request::Get(MessageId(weird))),
        ErrorCode::NotFound,
    );
    expect_error(
        raw.request(&Request::Delete(MessageId(weird))),
        ErrorCode::NotFound,
    );
    // Nothing new appeared anywhere in or beside the store.
    let mut top: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [
            "commit",
            "digests",
            "filing",
            "lock",
            "mailboxes",
            "tls-cert.der",
            "tls-key.der",
            "tmp"
        ]
    );
    assert!(!dir.path().join("x").exists());
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);
}

#[test]
fn a_non_sxf_or_tampered_upload_is_refused() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "just some text, not an archive\n").unwrap();
    let o = server.send(&junk);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(
        e.contains("not-sxf") && e.contains("not an sxf archive"),
        "{e}"
    );

    let good = seal(dir.path(), "good.sxf", &["bob"], "original", 5000);
    let bytes = read(&good);
    // One flipped byte inside the payload: the digest check fails.
    let mut t = bytes.clone();
    t[bytes.len() / 3] ^= 0x01;
    let tampered = dir.path().join("tampered.sxf");
    std::fs::write(&tampered, t).unwrap();
    let o = server.send(&tampered);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("not-sxf"), "{}", text(&o.stderr));
    // Truncated.
    let cut = dir.path().join("cut.sxf");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let o = server.send(&cut);
    assert_eq!(o.status.code(), Some(2));
    // Nothing was filed, nothing is left in tmp.
    assert!(server.mailbox_files("bob").is_empty());
    assert!(server.tmp_files().is_empty());
    assert_still_serving(&server, dir.path(), "after-junk");
}

#[test]
fn an_over_quota_upload_is_refused_whole() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &["--mailbox-quota", "6k"]);
    let m1 = seal(dir.path(), "1.sxf", &["bob"], "one", 0);
    let len = read(&m1).len();
    assert!(len > 2000 && len < 3000, "archive size {len}");
    server.send_ok(&m1);
    server.send_ok(&seal(dir.path(), "2.sxf", &["bob"], "two", 0));
    let o = server.send(&seal(dir.path(), "3.sxf", &["bob"], "three", 0));
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(e.contains("over-quota") && e.contains("quota"), "{e}");
    assert!(
        e.contains(&fingerprint("bob").to_string()),
        "names the mailbox: {e}"
    );
    // A message to bob and dave is refused for both: all or nothing.
    let o = server.send(&seal(dir.path(), "4.sxf", &["dave", "bob"], "four", 0));
    assert_eq!(o.status.code(), Some(2));
    assert!(server.mailbox_files("dave").is_empty());
    assert_eq!(server.mailbox_files("bob").len(), 2);
    // Fetching frees the quota.
    assert!(
        server
            .fetch("bob", &dir.path().join("in"), &[])
            .status
            .success()
    );
    server.send_ok(&seal(dir.path(), "5.sxf", &["bob"], "five", 0));
}

#[test]
fn too_large_and_disk_reserve_refusals_are_clear() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &["--max-message-size", "1k"]);
    let m = seal(dir.path(), "m.sxf", &["bob"], "x", 0);
    let o = server.send(&m);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(
        e.contains("too-large") && e.contains("at most 1000 bytes"),
        "{e}"
    );
    drop(server);

    let server = Server::start(&dir.path().join("store2"), &["--min-free-space", "1000TiB"]);
    let o = server.send(&m);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(
        e.contains("disk-full") && e.contains("low on disk space"),
        "{e}"
    );
}

#[test]
fn a_busy_server_says_so() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &["--max-connections", "2"]);
    let a = server.raw();
    let b = server.raw();
    let m = seal(dir.path(), "m.sxf", &["bob"], "x", 0);
    let o = server.send(&m);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(e.contains("busy"), "{e}");
    let mut s = Raw::bare(&server.addr);
    expect_error(read_reply(&mut s).unwrap(), ErrorCode::Busy);
    drop((a, b));
    // Once the slots free up, sending works again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = server.send(&m);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&o.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_address_cannot_take_more_than_its_share_of_connections() {
    let dir = tempdir();
    // The defaults: 16 connections per address, well under the 256 in all.
    let server = Server::start(&dir.path().join("store"), &[]);
    let mut held: Vec<Raw> = (0..16).map(|_| server.raw()).collect();
    // The 17th from the same address gets `busy`, with its reason, and is closed.
    let mut extra = Raw::bare(&server.addr);
    let m = expect_error(read_reply(&mut extra).expect("an answer"), ErrorCode::Busy);
    assert!(
        m.contains("127.0.0.1") && m.contains("16") && m.contains("per address"),
        "{m}"
    );
    assert!(
        read_reply(&mut extra).is_none(),
        "a refused connection is closed"
    );
    assert!(
        server.wait_for_log(
            "refused [10 busy]: too many connections from 127.0.0.1",
            Duration::from_secs(5)
        ),
        "{:?}",
        server.log()
    );
    // `sxf send` from that address is refused the same way, exit 2.
    let msg = seal(dir.path(), "m.sxf", &["bob"], "x", 0);
    let o = server.send(&msg);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("per address"),
        "{}",
        text(&o.stderr)
    );
    // The connections it already holds are served as before.
    assert!(matches!(
        held[0].request(&Request::Challenge),
        Reply::Challenge(_)
    ));
    // One of them closes: its slot is free again for that address.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = server.send(&msg);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&o.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
    // All close: every slot comes back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all: Vec<_> = (0..16).map(|_| Raw::try_tls(&server.addr)).collect();
        let mut served = 0;
        for s in all {
            if let Ok(mut s) = s
                && matches!(read_reply(&mut s), Some(Reply::Hello(_)))
            {
                served += 1;
            }
        }
        if served == 16 {
            break;
        }
        assert!(Instant::now() < deadline, "only {served} of 16 served");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// IPv4 addresses are counted one by one, IPv6 ones by /64 network, and an
/// IPv4 client reaching a dual-stack listener (`::ffff:a.b.c.d`) as IPv4.
#[cfg(target_os = "linux")]
#[test]
fn the_per_address_cap_counts_ipv4_mapped_clients_as_their_ipv4_address() {
    let dir = tempdir();
    let server = Server::start_on(
        &dir.path().join("store"),
        "[::]:0",
        &["--max-connections-per-ip", "2"],
    );
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let v4 = format!("127.0.0.1:{port}");
    let v6 = format!("[::1]:{port}");
    let held: Vec<Raw> = (0..2).map(|_| Raw::connect(&v4)).collect();
    let mut extra = Raw::bare(&v4);
    let m = expect_error(read_reply(&mut extra).expect("an answer"), ErrorCode::Busy);
    assert!(m.contains("from 127.0.0.1 ") && !m.contains("ffff"), "{m}");
    // Another address (here ::1, in its own /64) has slots of its own.
    let other: Vec<Raw> = (0..2).map(|_| Raw::connect(&v6)).collect();
    let mut extra6 = Raw::bare(&v6);
    let m = expect_error(read_reply(&mut extra6).expect("an answer"), ErrorCode::Busy);
    assert!(m.contains("from ::/64 "), "{m}");
    drop((held, other));
}

// --------------------------------------------------------------------- faults

/// Starts an upload of `archive` on a raw connection and sends only `part` bytes.
fn partial_upload(server: &Server, archive: &std::path::Path, part: usize) -> Raw {
    let bytes = read(archive);
    let mut raw = server.raw();
    assert_eq!(raw.request(&Request::Upload(bytes.len() as u64)), Reply::Ok);
    for chunk in bytes[..part].chunks(protocol::MAX_DATA_BODY as usize) {
        protocol::write_request(&mut raw.stream, &Request::Data(chunk.to_vec())).unwrap();
    }
    raw
}

#[test]
fn a_client_disconnecting_mid_upload_stores_nothing() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let big = seal(dir.path(), "big.sxf", &["bob"], "big", 300_000);
    let len = read(&big).len();
    let raw = partial_upload(&server, &big, len / 2);
    drop(raw);
    assert!(
        server.wait_for_log("nothing stored", Duration::from_secs(10)),
        "{:?}",
        server.log()
    );
    assert!(server.tmp_files().is_empty(), "{:?}", server.tmp_files());
    assert!(server.mailbox_files("bob").is_empty());
    let out = dir.path().join("in");
    assert!(server.fetch("bob", &out, &[]).status.success());
    assert!(saved_archives(&out).is_empty());
}

#[test]
fn sigkill_mid_upload_then_restart_keeps_every_acknowledged_message() {
    let dir = tempdir();
    let mut server = Server::start(&dir.path().join("store"), &[]);
    let m1 = seal(dir.path(), "1.sxf", &["bob"], "first", 1000);
    let m2 = seal(dir.path(), "2.sxf", &["bob", "dave"], "second", 2000);
    let id1 = server.send_ok(&m1);
    let id2 = server.send_ok(&m2);
    let big = seal(dir.path(), "big.sxf", &["bob"], "big", 400_000);
    let raw = partial_upload(&server, &big, 300_000);
    // Wait until the server has part of it on disk, then crash it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(server.store.join("tmp"))
        .unwrap()
        .any(|e| e.unwrap().metadata().unwrap().len() > 0)
    {
        assert!(
            Instant::now() < deadline,
            "the partial upload never reached the disk"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    drop(raw);
    assert_eq!(server.tmp_files().len(), 1, "the crash left a temp file");

    let server = server.restart();
    assert!(
        server.log().iter().any(|l| l.contains("swept 1 temp file")),
        "{:?}",
        server.log()
    );
    assert!(server.tmp_files().is_empty());
    let out = dir.path().join("in");
    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let saved = saved_archives(&out);
    assert_eq!(
        saved.len(),
        2,
        "exactly the two acknowledged messages: {saved:?}"
    );
    assert_eq!(read(&out.join(format!("{id1}.sxf"))), read(&m1));
    assert_eq!(read(&out.join(format!("{id2}.sxf"))), read(&m2));
    assert_eq!(server.mailbox_files("dave"), vec![format!("{id2}.sxf")]);
}

// Stops the server with kill -TERM.
#[cfg(unix)]
#[test]
fn restart_finishes_committed_filings_and_drops_uncommitted_ones() {
    // The state a crash between the commit rename and the final renames leaves,
    // and the state a crash before the commit leaves, made by hand.
    let dir = tempdir();
    let store = dir.path().join("store");
    let mut server = Server::start(&store, &[]);
    let m = seal(dir.path(), "m.sxf", &["bob", "dave"], "committed", 0);
    server
        .terminate(Duration::from_secs(10))
        .expect("clean stop");
    let hexfp = |who: &str| fingerprint(who).to_string()["sha256:".len()..].to_owned();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(read(&m)))
    };
    let len = read(&m).len();
    let committed = MessageId::generate().unwrap();
    let uncommitted = MessageId::generate().unwrap();
    // A store written before intent records: a pending link with none.
    let legacy = MessageId::generate().unwrap();
    let intent = format!("{digest}\n{}\n{}\n", hexfp("bob"), hexfp("dave"));
    for id in [committed, uncommitted] {
        std::fs::write(store.join("filing").join(id.to_string()), &intent).unwrap();
        for who in ["bob", "dave"] {
            let d = store.join("mailboxes").join(hexfp(who));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(&m, d.join(format!(".{id}.pending"))).unwrap();
            std::fs::write(
                d.join(format!(".{id}.sha256")),
                format!("{id} {len} {digest}\n"),
            )
            .unwrap();
        }
    }
    let bob_box = store.join("mailboxes").join(hexfp("bob"));
    std::fs::copy(&m, bob_box.join(format!(".{legacy}.pending"))).unwrap();
    std::fs::copy(&m, store.join("commit").join(format!("{committed}.sxf"))).unwrap();
    // The uncommitted filing had made its digest pointer.
    std::fs::write(
        store.join("digests").join(&digest),
        format!("{uncommitted} {len} {digest}\n"),
    )
    .unwrap();

    let server = Server::start(&store, &[]);
    let l = server.log().join("\n");
    assert!(
        l.contains("finished 1 interrupted filing(s), undid 1 uncommitted"),
        "{l}"
    );
    assert!(
        server.wait_for_log("cleared 1 crash leftover(s)", Duration::from_secs(10)),
        "{:?}",
        server.log()
    );
    for who in ["bob", "dave"] {
        assert_eq!(
            server.mailbox_all_files(who),
            vec![format!(".{committed}.sha256"), format!("{committed}.sxf")],
            "{who}"
        );
    }
    assert_eq!(std::fs::read_dir(store.join("commit")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(store.join("filing")).unwrap().count(), 0);
    assert!(!store.join("digests").join(&digest).exists());
    let out = dir.path().join("in");
    assert!(server.fetch("dave", &out, &[]).status.success());
    assert_eq!(read(&out.join(format!("{committed}.sxf"))), read(&m));
}

#[test]
fn an_interrupted_fetch_loses_nothing_and_never_duplicates() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let m = seal(dir.path(), "m.sxf", &["bob"], "keep me", 50_000);
    let id = MessageId::parse(&server.send_ok(&m)).unwrap();

    // Downloaded but cut before the DELETE: the message stays.
    let mut c = Client::connect(&server.addr, &ClientOptions::default()).unwrap();
    c.authenticate(&private_key("bob")).unwrap();
    let (entries, more) = c.list().unwrap();
    assert!(!more);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, id);
    let mut got = Vec::new();
    c.download(id, &mut got).unwrap();
    assert_eq!(got, read(&m));
    drop(c);
    // Cut in the middle of the download, too.
    let mut raw = server.raw();
    let auth = auth_for(&mut raw, "bob");
    assert_eq!(raw.request(&Request::Auth(auth)), Reply::Ok);
    assert_eq!(
        raw.request(&Request::Get(id)),
        Reply::Get(read(&m).len() as u64)
    );
    assert!(matches!(raw.reply(), Reply::Data(_)));
    drop(raw);
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);

    // A fetch that saved the file but died before its DELETE: the next fetch
    // deletes it on the server without saving a second copy.
    // Both downloads above were complete on the server's side (a 50 kB message
    // fits in the socket buffers), whatever the clients did with them.
    assert!(
        server.wait_for_count("downloaded", 2, Duration::from_secs(10)),
        "{:?}",
        server.log()
    );
    let downloads = server.count_log("downloaded");
    let out = dir.path().join("in");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(format!("{id}.sxf")), &got).unwrap();
    std::fs::write(out.join(".sxf-fetch-leftover.part"), b"partial").unwrap();
    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains("earlier, interrupted fetch"), "{e}");
    assert!(e.contains("removed 1 partial download"), "{e}");
    // The saved archive, and the lock every fetch leaves in its directory.
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_os_str() != client::FETCH_LOCK_NAME)
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(server.mailbox_files("bob").is_empty());
    assert!(server.wait_for_log(&format!("deleted {id}"), Duration::from_secs(5)));
    assert_eq!(
        server.count_log("downloaded"),
        downloads,
        "the last fetch did not download again"
    );
}

/// Finding 6: a `fetch --open` killed or stopped with Ctrl-C while it
/// decrypted, after its DELETE, left `<id>.sxf` saved but never opened, and
/// every later run said nothing was waiting. The state it leaves is made here
/// with a plain fetch: the archive saved, gone from the server, no `<id>/`.
#[test]
fn fetch_open_opens_an_archive_saved_but_not_opened_by_an_interrupted_run() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let alice = key("alice.pub");
    let open_from = ["--open", "--from", alice.to_str().unwrap()];
    let out = dir.path().join("in");
    // One message fetched and opened at the time: never opened again.
    let done = seal(dir.path(), "done.sxf", &["bob"], "opened at the time", 0);
    let done_id = server.send_ok(&done);
    let o = server.fetch("bob", &out, &open_from);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.join(&done_id).join("message.txt").is_file());

    let m = seal(dir.path(), "m.sxf", &["bob"], "saved before the cut", 0);
    let id = server.send_ok(&m);
    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(server.mailbox_files("bob").is_empty());
    let saved = out.join(format!("{id}.sxf"));
    assert_eq!(read(&saved), read(&m));
    // Only fetch's own names (32 lowercase hex digits, .sxf) are opened; these
    // hold the same archive and are left alone.
    let mut decoys = vec![
        "notes".to_owned(),
        format!("{}g", &id[..31]),
        format!("{id}0"),
    ];
    if cfg!(target_os = "linux") {
        decoys.push(id.to_uppercase()); // case-sensitive names only
    }
    for d in &decoys {
        std::fs::copy(&saved, out.join(format!("{d}.sxf"))).unwrap();
    }

    // Nothing waits on the server: the archive saved earlier is opened, with
    // the report of a new one.
    let o = server.fetch("bob", &out, &open_from);
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert_eq!(text(&o.stdout).trim(), "saved before the cut", "{e}");
    assert!(
        e.contains(&format!(
            "{} was saved by an earlier fetch and not opened; opening it",
            saved.display()
        )),
        "{e}"
    );
    assert!(e.contains("verified: from "), "{e}");
    assert!(e.contains("no messages waiting"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join(&id).join("message.txt")).unwrap(),
        "saved before the cut"
    );
    assert_eq!(read(&saved), read(&m), "the archive is kept");
    for d in &decoys {
        assert!(!out.join(d).exists(), "{d} was opened");
        assert!(out.join(format!("{d}.sxf")).is_file());
    }

    // Opened once: the next run has nothing to open.
    let o = server.fetch("bob", &out, &open_from);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "");
    assert!(
        !text(&o.stderr).contains("not opened"),
        "{}",
        text(&o.stderr)
    );
}

/// Finding 6: a process killed while it decrypted leaves its private staging
/// directory, holding plaintext, beside the output.
#[test]
fn fetch_open_removes_stale_staging_directories_at_start() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let out = dir.path().join("in");
    std::fs::create_dir_all(&out).unwrap();
    let stale = |name: &str| {
        let p = out.join(name);
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("message.txt"), b"partial plaintext").unwrap();
        p
    };
    let staged = [stale(".sxf-open-Ab12Cd"), stale(".sxf-open-x9Y8z7")];
    // Not what sxf makes: kept.
    let kept = [
        stale(".sxf-open-my notes"),
        stale("sxf-open-Ab12Cd"),
        stale(".sxf-open-"),
    ];
    std::fs::write(out.join(".sxf-open-f1le00"), b"a file, not a directory").unwrap();
    // A link named like a staging directory is never followed.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("keep.txt"), b"keep").unwrap();
    let link = out.join(".sxf-open-L1nk00");
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(&elsewhere, &link).is_ok();
    // Creating a link needs a privilege on Windows: tested where it is granted.
    #[cfg(windows)]
    let linked = std::os::windows::fs::symlink_dir(&elsewhere, &link).is_ok();

    let alice = key("alice.pub");
    let o = server.fetch("bob", &out, &["--open", "--from", alice.to_str().unwrap()]);
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("removed 2 staging director(ies) left by an interrupted open"),
        "{e}"
    );
    for p in &staged {
        assert!(std::fs::symlink_metadata(p).is_err(), "{}", p.display());
    }
    for p in &kept {
        assert!(p.join("message.txt").is_file(), "{}", p.display());
    }
    assert!(out.join(".sxf-open-f1le00").is_file());
    assert_eq!(read(&elsewhere.join("keep.txt")), b"keep");
    // The link itself is left alone on Unix. (Under wine a directory link
    // reads back as a directory and is removed as one, link only: what it
    // points to is untouched, as checked above.)
    #[cfg(unix)]
    if linked {
        let meta = std::fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_symlink(), "the link is left alone");
    }
    #[cfg(windows)]
    let _ = linked;

    // A fetch without --open cleans up the same way.
    let again = stale(".sxf-open-Qq11Ww");
    let o = server.fetch("bob", &out, &[]);
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("removed 1 staging director(ies)"), "{e}");
    assert!(!again.exists());
}

/// Finding 6: an archive saved earlier that this run's sender check rejects is
/// reported as a new one would be (exit 1, kept), and only once per run, even
/// when `--watch` reconnects.
#[test]
fn fetch_open_rejects_a_saved_archive_as_a_new_one_and_only_once_per_run() {
    let dir = tempdir();
    // Short sessions: the watcher below reconnects within seconds.
    let server = Server::start(
        &dir.path().join("store"),
        &["--max-wait", "1s", "--total-timeout", "2s"],
    );
    let out = dir.path().join("in");
    std::fs::create_dir_all(&out).unwrap();
    let id = MessageId::generate().unwrap().to_string();
    let m = seal_from(dir.path(), "m.sxf", "mallory", &["bob"], "trust me", 0);
    let saved = out.join(format!("{id}.sxf"));
    std::fs::copy(&m, &saved).unwrap();
    let alice = key("alice.pub");

    let o = server.fetch("bob", &out, &["--open", "--from", alice.to_str().unwrap()]);
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("not authentic"), "{e}");
    assert!(e.contains("could not be opened; it is kept"), "{e}");
    assert_eq!(read(&saved), read(&m));
    assert!(!out.join(&id).exists());

    let mut watcher = sxf()
        .args(["fetch", "--watch", "--open", "--server", &server.addr])
        .arg("--key")
        .arg(key("bob.key"))
        .arg("--from")
        .arg(&alice)
        .arg("--out-dir")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = watcher.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines
        .iter()
        .filter(|l| l.contains("waiting for messages"))
        .count()
        < 2
    {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let sessions = lines
        .iter()
        .filter(|l| l.contains("waiting for messages"))
        .count();
    assert_eq!(sessions, 2, "{lines:?}");
    let rejections = lines.iter().filter(|l| l.contains("not authentic")).count();
    assert_eq!(rejections, 1, "{lines:?}");
    assert!(!out.join(&id).exists());

    // This run's sender check decides: --any-sender opens it, with its warning.
    let o = server.fetch("bob", &out, &["--open", "--any-sender"]);
    let e = text(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("WARNING: --any-sender"), "{e}");
    assert_eq!(text(&o.stdout).trim(), "trust me");
}

// Stops the server with kill -TERM.
#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempdir();
    let mut server = Server::start(&dir.path().join("store"), &[]);
    let id = server.send_ok(&seal(dir.path(), "m.sxf", &["bob"], "x", 0));
    // An idle connection and a long-polling one are both told, and let go.
    let mut idle = server.raw();
    let mut waiting = server.raw();
    let auth = auth_for(&mut waiting, "dave");
    assert_eq!(waiting.request(&Request::Auth(auth)), Reply::Ok);
    protocol::write_request(&mut waiting.stream, &Request::Wait(30)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let status = server.terminate(Duration::from_secs(10)).expect("stops");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    expect_error(idle.reply(), ErrorCode::ShuttingDown);
    expect_error(waiting.reply(), ErrorCode::ShuttingDown);
    let log = server.log();
    assert!(
        log.iter()
            .any(|l| l.ends_with("received a signal to stop (SIGTERM or SIGINT)")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.ends_with(" stopped")), "{log:?}");
    // And the restarted server still has the message.
    let server = Server::start(&dir.path().join("store"), &[]);
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);
}

#[test]
fn a_second_server_on_the_same_store_is_refused() {
    let dir = tempdir();
    let _server = Server::start(&dir.path().join("store"), &[]);
    let o = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        dir.path().join("store").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("in use by another server"),
        "{}",
        text(&o.stderr)
    );
}

// ---------------------------------------------------------------- idempotence

/// Uploads `archive` whole on a raw connection and hangs up without reading the
/// answer: what a sender sees when the STORED reply is lost.
fn upload_and_hang_up(server: &Server, archive: &std::path::Path) {
    let bytes = read(archive);
    let mut raw = server.raw();
    assert_eq!(raw.request(&Request::Upload(bytes.len() as u64)), Reply::Ok);
    for chunk in bytes.chunks(protocol::MAX_DATA_BODY as usize) {
        protocol::write_request(&mut raw.stream, &Request::Data(chunk.to_vec())).unwrap();
    }
    drop(raw);
}

#[test]
fn resending_an_archive_whose_answer_was_lost_files_it_once() {
    let dir = tempdir();
    let store = dir.path().join("store");
    let mut server = Server::start(&store, &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "only once", 3000);
    upload_and_hang_up(&server, &msg);
    assert!(
        server.wait_for_log(" stored ", Duration::from_secs(10)),
        "{:?}",
        server.log()
    );
    let filed = server.mailbox_files("bob");
    assert_eq!(filed.len(), 1, "{filed:?}");
    let id = filed[0].strip_suffix(".sxf").unwrap().to_owned();

    // The sender was never told, and sends again: the same id, not a second copy.
    assert_eq!(server.send_ok(&msg), id);
    assert!(server.wait_for_log(&format!("sent {id} again"), Duration::from_secs(5)));
    assert_eq!(
        server.mailbox_all_files("bob"),
        vec![format!(".{id}.sha256"), format!("{id}.sxf")]
    );
    // Identical uploads at the same moment agree on one id as well.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| server.send_ok(&msg))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids, vec![id.clone(); 3]);
    assert_eq!(server.count_log(" stored "), 1);

    // After a restart the server knows it from its digest record ...
    server = server.restart();
    assert!(
        server.wait_for_log("hashed 0 message(s)", Duration::from_secs(10)),
        "{:?}",
        server.log()
    );
    assert_eq!(server.send_ok(&msg), id);
    // ... and, with the record gone, from the archive itself.
    server.kill();
    std::fs::remove_file(server.mailbox_dir("bob").join(format!(".{id}.sha256"))).unwrap();
    server = Server::start(&store, &[]);
    assert!(
        server.wait_for_log("hashed 1 message(s)", Duration::from_secs(10)),
        "{:?}",
        server.log()
    );
    assert_eq!(server.send_ok(&msg), id);
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);

    // Bob gets it once; the digest record goes with the message.
    let out = dir.path().join("in");
    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(saved_archives(&out), vec![out.join(format!("{id}.sxf"))]);
    assert_eq!(read(&out.join(format!("{id}.sxf"))), read(&msg));
    assert!(server.mailbox_all_files("bob").is_empty());
    assert_eq!(
        std::fs::read_dir(store.join("digests")).unwrap().count(),
        0,
        "the digest pointer goes with the message"
    );
    // Once nothing waits, the same bytes are a new message.
    let again = server.send_ok(&msg);
    assert_ne!(again, id);
    assert_eq!(server.mailbox_files("bob"), vec![format!("{again}.sxf")]);
}

#[test]
fn an_archive_resent_after_some_recipients_fetched_it_is_filed_anew() {
    // The rule: a re-send is the same message only while it waits for every
    // recipient; otherwise it is filed again for all of them.
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob", "dave"], "to both", 0);
    let first = server.send_ok(&msg);
    assert!(
        server
            .fetch("bob", &dir.path().join("bob-in"), &[])
            .status
            .success()
    );
    let second = server.send_ok(&msg);
    assert_ne!(second, first);
    assert_eq!(server.mailbox_files("bob"), vec![format!("{second}.sxf")]);
    assert_eq!(
        server.mailbox_files("dave"),
        vec![format!("{first}.sxf"), format!("{second}.sxf")]
    );
    // While it waits for both, a third send is the second again.
    assert_eq!(server.send_ok(&msg), second);
}

// ------------------------------------------------------------ free-disk reserve

#[test]
fn two_uploads_at_once_cannot_both_spend_the_free_disk_reserve() {
    let dir = tempdir();
    let first = seal(dir.path(), "first.sxf", &["bob"], "first", 0);
    let second = seal(dir.path(), "second.sxf", &["bob"], "second", 0);
    let third = seal(dir.path(), "third.sxf", &["bob"], "third", 0);
    let (bytes1, bytes2) = (read(&first), read(&second));
    let (len1, len2) = (bytes1.len() as u64, bytes2.len() as u64);
    // Room above the reserve for either upload, not for both.
    let reserve = 1_000_000u64;
    let free = reserve + len1 + len2 - 2;
    let server = Server::start(
        &dir.path().join("store"),
        &[
            "--min-free-space",
            &reserve.to_string(),
            "--assume-free-space",
            &free.to_string(),
        ],
    );
    assert!(server.wait_for_log("TESTING: --assume-free-space", Duration::from_secs(5)));

    // Both are accepted (each announced size fits) and held open: the first
    // halfway, the second one byte short. What they received is held.
    let half = bytes1.len() / 2;
    let mut one = server.raw();
    assert_eq!(one.request(&Request::Upload(len1)), Reply::Ok);
    protocol::write_request(&mut one.stream, &Request::Data(bytes1[..half].to_vec())).unwrap();
    let mut two = server.raw();
    assert_eq!(two.request(&Request::Upload(len2)), Reply::Ok);
    protocol::write_request(
        &mut two.stream,
        &Request::Data(bytes2[..bytes2.len() - 1].to_vec()),
    )
    .unwrap();
    // Meanwhile a third is refused up front: its size does not fit beside them.
    let o = server.send(&third);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains("disk-full"), "{e}");
    let held = half as u64 + len2 - 1;
    assert!(
        e.contains(&format!(
            "{free} bytes free, {held} held for uploads in progress"
        )),
        "{e}"
    );

    // The first's remaining bytes would spend the reserve: refused mid-upload.
    protocol::write_request(&mut one.stream, &Request::Data(bytes1[half..].to_vec())).unwrap();
    let m = expect_error(one.reply(), ErrorCode::DiskFull);
    assert!(m.contains("nothing stored"), "{m}");
    assert!(
        server.wait_for_log("nothing stored", Duration::from_secs(10)),
        "{:?}",
        server.log()
    );
    // The second completes; the refused first's hold ended with it.
    protocol::write_request(
        &mut two.stream,
        &Request::Data(bytes2[bytes2.len() - 1..].to_vec()),
    )
    .unwrap();
    assert!(matches!(two.reply(), Reply::Stored { .. }));
    // Its hold ended with it too (the assumed free space does not shrink with
    // what is stored), so the others fit now.
    server.send_ok(&first);
    server.send_ok(&third);
    assert_eq!(server.mailbox_files("bob").len(), 3);
}

#[test]
fn idle_announced_uploads_do_not_block_a_real_one() {
    let dir = tempdir();
    let archive = seal(dir.path(), "m.sxf", &["bob"], "real", 0);
    let len = read(&archive).len() as u64;
    let reserve = 1_000_000u64;
    let free = reserve + len + len / 2;
    let server = Server::start(
        &dir.path().join("store"),
        &[
            "--min-free-space",
            &reserve.to_string(),
            "--assume-free-space",
            &free.to_string(),
        ],
    );
    assert!(server.wait_for_log("TESTING: --assume-free-space", Duration::from_secs(5)));
    // Connections that announce an upload and send nothing hold nothing.
    let idle: Vec<Raw> = (0..4)
        .map(|_| {
            let mut r = server.raw();
            assert_eq!(r.request(&Request::Upload(len)), Reply::Ok);
            r
        })
        .collect();
    server.send_ok(&archive);
    assert_eq!(server.mailbox_files("bob").len(), 1);
    drop(idle);
}

/// Files `archive` into `store` through the library.
fn deposit(store: &sxf::dropbox::store::Store, archive: &std::path::Path) -> (MessageId, bool) {
    let mut up = store.begin_upload().unwrap();
    up.write_all(&read(archive)).unwrap();
    let d = store.deposit(up).unwrap();
    (d.id, d.duplicate)
}

#[test]
fn a_message_deleted_while_it_is_being_filed_never_becomes_a_phantom() {
    use sxf::dropbox::store::Store;
    let dir = tempdir();
    let archive = seal(dir.path(), "m.sxf", &["bob", "carol"], "phantom", 0);
    let (store, _) = Store::open(&dir.path().join("store"), Default::default()).unwrap();
    let store = std::sync::Arc::new(store);
    let bob = fingerprint("bob");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deleter = {
        let (store, bob, stop) = (store.clone(), bob.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for e in store.list(&bob, 100).unwrap().0 {
                    store.delete(&bob, &e.id).unwrap();
                }
            }
        })
    };
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_secs(3) && rounds < 400 {
        deposit(&store, &archive);
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    deleter.join().unwrap();
    // Drain what the deleter left; memory must then agree the mailbox is empty.
    for e in store.list(&bob, 1000).unwrap().0 {
        store.delete(&bob, &e.id).unwrap();
    }
    assert!(store.list(&bob, 1000).unwrap().0.is_empty());
    assert!(
        !store.wait(&bob, Duration::ZERO),
        "memory still holds a message that is gone, after {rounds} rounds"
    );
    // The archive still waits for carol only, so it is filed anew for bob.
    let carol = fingerprint("carol");
    let (id, duplicate) = deposit(&store, &archive);
    assert!(!duplicate);
    assert!(store.open_message(&bob, &id).unwrap().is_some());
    assert!(store.open_message(&carol, &id).unwrap().is_some());
}

#[test]
fn a_message_another_fetcher_took_first_is_skipped_not_fatal() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    for i in 0..3 {
        let m = seal(dir.path(), &format!("m{i}.sxf"), &["bob"], "race", 0);
        server.send_ok(&m);
    }
    let connect = || {
        let mut c = Client::connect(&server.addr, &ClientOptions::default()).unwrap();
        c.authenticate(&private_key("bob")).unwrap();
        c
    };
    let (out_a, out_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&out_a).unwrap();
    std::fs::create_dir_all(&out_b).unwrap();
    let mut a = connect();
    let mut b = connect();
    let mut took = 0;
    let budget = || client::Budget::new(1000, u64::MAX);
    // After A's first message, B takes every other one A has already listed.
    let got_a = client::fetch_all(&mut a, &out_a, &mut budget(), &mut |_| {
        if took == 0 {
            took = client::fetch_all(&mut b, &out_b, &mut budget(), &mut |_| {})
                .unwrap()
                .fetched;
        }
    })
    .unwrap()
    .fetched;
    assert_eq!((got_a, took), (1, 2));
    assert_eq!(
        saved_archives(&out_a).len() + saved_archives(&out_b).len(),
        3
    );
    assert!(server.mailbox_files("bob").is_empty());
}

#[test]
fn watch_escapes_the_servers_error_sentence_before_printing_it() {
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // A hostile server: every connection gets a transient ERROR, in
    // plaintext as a server at its cap sends BUSY, whose sentence carries a
    // terminal escape and a bidi override.
    std::thread::spawn(move || {
        for conn in listener.incoming().take(3) {
            let Ok(mut s) = conn else { return };
            let err = Reply::Error {
                code: ErrorCode::Busy,
                message: "evil\x1b[2J\u{202e}text".into(),
            };
            let (t, b) = err.encode();
            let _ = protocol::write_frame(&mut s, t, &b);
        }
    });
    let dir = tempdir();
    let mut watcher = sxf()
        .args(["fetch", "--watch", "--server", &addr, "--key"])
        .arg(key("bob.key"))
        .arg("--out-dir")
        .arg(dir.path().join("in"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(watcher.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    assert!(line.contains("reconnecting in"), "{line:?}");
    assert!(line.contains("evil"), "{line:?}");
    assert!(
        !line.contains('\x1b') && !line.contains('\u{202e}'),
        "{line:?}"
    );
    assert!(line.contains("\\u{1b}[2J"), "{line:?}");
}

#[cfg(unix)]
#[test]
fn store_directories_are_private_to_the_server_user() {
    use std::os::unix::fs::PermissionsExt;
    use sxf::dropbox::store::Store;
    let dir = tempdir();
    let archive = seal(dir.path(), "m.sxf", &["bob"], "private", 0);
    let root = dir.path().join("new").join("store");
    let (store, _) = Store::open(&root, Default::default()).unwrap();
    deposit(&store, &archive);
    let bob_box = root
        .join("mailboxes")
        .join(hex::encode(fingerprint("bob").as_bytes()));
    for d in [
        root.clone(),
        root.join("tmp"),
        root.join("filing"),
        root.join("commit"),
        root.join("digests"),
        root.join("mailboxes"),
        bob_box,
    ] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
}

#[test]
fn fetch_refuses_a_message_over_its_own_max_size_and_leaves_it_waiting() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "big", 20_000);
    let id = server.send_ok(&msg);
    let out = dir.path().join("in");
    let o = server.fetch("bob", &out, &["--max-size", "10000"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains("over this client's limit of 10000"), "{e}");
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);
    assert!(saved_archives(&out).is_empty());
    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(read(&out.join(format!("{id}.sxf"))), read(&msg));
}

// ---------------------------------------------------------------- armor

/// `send` un-armors: the server stores, and `fetch` gets, the binary archive.
#[test]
fn send_of_an_armored_archive_stores_the_binary_form() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "armored by email", 1_000);
    let mut w = sxf::armor::ArmorWriter::new(Vec::new()).unwrap();
    w.write_all(&read(&msg)).unwrap();
    let armored = dir.path().join("m.sxf.asc");
    std::fs::write(&armored, w.finish().unwrap()).unwrap();
    let id = server.send_ok(&armored);
    let out = dir.path().join("in");
    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        read(&out.join(format!("{id}.sxf"))),
        read(&msg),
        "binary, byte-exact"
    );
}

/// Finding: with the reader of its stderr gone, the server panicked in every
/// thread that logged, so uploads were filed but never acknowledged, AUTH
/// never succeeded and SIGTERM was ignored.
#[cfg(unix)]
#[test]
fn a_log_nobody_reads_never_stops_replies_authentication_or_shutdown() {
    let dir = tempdir();
    let mut server = Server::start_then_close_log(&dir.path().join("store"));
    // Each step below logs a line into the closed pipe.
    server.send_ok(&seal(dir.path(), "m.sxf", &["bob"], "x", 0));
    let out = dir.path().join("in");
    let o = server.fetch("bob", &out, &[]);
    assert!(o.status.success(), "fetch: {}", text(&o.stderr));
    assert_eq!(saved_archives(&out).len(), 1);
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("SIGTERM still stops the server");
    assert!(status.success(), "{status:?}");
}

/// Finding: an unknown manifest key with a newline or ESC went raw into the
/// refusal line, forging log lines and reaching the operator's terminal.
#[test]
fn client_bytes_in_log_lines_are_escaped() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let archive = std::fs::read(seal(dir.path(), "m.sxf", &["bob"], "x", 0)).unwrap();
    let manifest = String::from_utf8(common::entry(&archive, "manifest.toml")).unwrap();
    let hostile = format!(
        "\"x\\n2099-01-01T00:00:00Z 127.0.0.1:1 authenticated as evil\\u001b[2J\\u202e\" = 1\n{manifest}"
    );
    let file = dir.path().join("hostile.sxf");
    std::fs::write(
        &file,
        common::with_entry(&archive, "manifest.toml", hostile.as_bytes()),
    )
    .unwrap();
    let o = server.send(&file);
    assert!(!o.status.success(), "the server refuses it");
    assert!(
        server.wait_for_log(" refused [", Duration::from_secs(10)),
        "{:?}",
        server.log()
    );
    let log = server.log();
    let refusal = log.iter().find(|l| l.contains(" refused [")).unwrap();
    assert!(
        refusal.contains("\\n2099-01-01") && refusal.contains("\\u{1b}[2J"),
        "the key is shown, escaped: {refusal}"
    );
    for line in &log {
        assert!(
            !line.contains('\x1b') && !line.contains('\u{202e}'),
            "{line:?}"
        );
        assert!(!line.starts_with("2099-01-01"), "a forged line: {line:?}");
    }
}

/// Finding: the free-disk reserve ignored inodes. On a 300-inode tmpfs, 145
/// anonymous uploads used every inode while 62.9 of 64 MiB were free.
#[test]
fn the_reserve_keeps_inodes_free_and_counts_new_mailbox_directories() {
    let dir = tempdir();
    let store = dir.path().join("store");
    let with_free_inodes = |n: &str| {
        Server::start(
            &store,
            &["--min-free-inodes", "10", "--assume-free-inodes", n],
        )
    };
    let first = seal(dir.path(), "m.sxf", &["bob"], "x", 0);
    // An upload takes 3 inodes (archive, digest record, commit record): with
    // 12 free and 10 kept, it is refused before a byte is stored.
    let server = with_free_inodes("12");
    let o = server.send(&first);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("low on inodes"),
        "{}",
        text(&o.stderr)
    );
    assert!(!server.mailbox_dir("bob").exists());
    drop(server);
    // 13 hold the upload, but not the new mailbox directory bob's needs.
    let server = with_free_inodes("13");
    let o = server.send(&first);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("1 new mailbox(es)"),
        "{}",
        text(&o.stderr)
    );
    assert!(!server.mailbox_dir("bob").exists());
    drop(server);
    let server = with_free_inodes("14");
    server.send_ok(&first);
    drop(server);
    // Bob's mailbox exists now, so 13 are enough for the next message.
    let server = with_free_inodes("13");
    server.send_ok(&seal(dir.path(), "n.sxf", &["bob"], "y", 0));
    assert_eq!(server.mailbox_files("bob").len(), 2);
}

// ------------------------------------------------------------------------ TLS

/// Starts a server with a store of its own on the address `addr`, which a
/// killed server just left.
fn start_impostor(dir: &std::path::Path, addr: &str) -> Server {
    Server::start_on(&dir.join("impostor-store"), addr, &[])
}

#[test]
fn a_server_with_another_certificate_is_refused_when_pinned() {
    let dir = tempdir();
    let mut real = Server::start(&dir.path().join("store"), &[]);
    // The id is SHA-256 of the certificate's public key, in HELLO and the log.
    let raw = real.raw();
    let id = raw.cert_id();
    assert_eq!(raw.hello.server_id, id);
    assert!(
        real.wait_for_log(
            &format!("server id {}", hex::encode(id)),
            Duration::from_secs(5)
        ),
        "{:?}",
        real.log()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("store/tls-key.der"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(raw);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "for bob", 0);
    let pin = hex::encode(id);
    let o = sxf()
        .arg("send")
        .arg(&msg)
        .args(["--server", &real.addr, "--server-id", &pin])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Someone else's server takes the address: its certificate is not the pinned one.
    let addr = real.addr.clone();
    real.kill();
    let impostor = start_impostor(dir.path(), &addr);
    let o = sxf()
        .arg("send")
        .arg(&msg)
        .args(["--server", &addr, "--server-id", &pin])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("not authentic") && e.contains("not the expected"),
        "{e}"
    );
    assert!(e.contains(&pin), "{e}");
    let o = impostor.fetch("bob", &dir.path().join("in"), &["--server-id", &pin]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    // Nothing reached it: the handshake failed before any frame.
    assert!(impostor.mailbox_files("bob").is_empty());
    assert!(
        impostor.wait_for_count("TLS handshake failed", 2, Duration::from_secs(5)),
        "{:?}",
        impostor.log()
    );
    assert_eq!(impostor.count_log("authenticated as"), 0);
}

/// What a man in the middle saw.
#[derive(Default)]
struct Intercepted {
    /// TLS sessions clients completed with it.
    sessions: usize,
    /// Requests those clients sent through it, and what the real server
    /// answered each.
    exchanges: Vec<(Request, Reply)>,
}

/// A man-in-the-middle proxy, as an attacker on the network path would run
/// one: it ends each client's TLS session with its own key (HELLO showing its
/// own id, so the client's HELLO check passes), opens its own TLS session to
/// the real server `to`, and passes every request and reply between them.
fn start_mitm(to: &str) -> (String, Arc<Mutex<Intercepted>>) {
    use sxf::dropbox::tls;
    let key = tls::generate_key().unwrap();
    let cert = tls::self_signed_cert(&key).unwrap();
    let identity = tls::Identity::from_der(key.to_vec(), cert).unwrap();
    let config = tls::server_config(&identity).unwrap();
    let own_id = *identity.server_id();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Intercepted::default()));
    let (to, log) = (to.to_owned(), seen.clone());
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { return };
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut handshake_ok = true;
            while conn.is_handshaking() {
                if conn.complete_io(&mut sock).is_err() {
                    handshake_ok = false;
                    break;
                }
            }
            if !handshake_ok {
                continue;
            }
            log.lock().unwrap().sessions += 1;
            let mut client = rustls::StreamOwned::new(conn, sock);
            let mut upstream = Raw::connect(&to);
            let hello = Reply::Hello(protocol::Hello {
                server_id: own_id,
                ..upstream.hello.clone()
            });
            protocol::write_reply(&mut client, &hello).unwrap();
            while let Ok(frame) = protocol::read_frame(&mut client) {
                let request = Request::decode(frame).unwrap();
                let reply = upstream.request(&request);
                log.lock().unwrap().exchanges.push((request, reply.clone()));
                if protocol::write_reply(&mut client, &reply).is_err() {
                    break;
                }
            }
        }
    });
    (addr, seen)
}

#[test]
fn a_man_in_the_middle_is_refused_when_pinned_and_cannot_use_a_first_contact() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let real_id = hex::encode(server.raw().cert_id());
    let msg = seal(dir.path(), "m.sxf", &["bob"], "for bob", 0);
    let id = server.send_ok(&msg);
    let (mitm, seen) = start_mitm(&server.addr);
    let fetch = |extra: &[&str]| {
        sxf()
            .args(["fetch", "--server", &mitm, "--key"])
            .arg(key("bob.key"))
            .arg("--out-dir")
            .arg(dir.path().join("in"))
            .args(extra)
            .output()
            .unwrap()
    };
    // A client that pins the real server refuses the proxy's key during the
    // handshake: no session, no request.
    let o = fetch(&["--server-id", &real_id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("not the expected") && e.contains(&real_id),
        "{e}"
    );
    assert_eq!(seen.lock().unwrap().sessions, 0);
    assert!(seen.lock().unwrap().exchanges.is_empty());
    // A client on first contact trusts the proxy's key, and signs for it. The
    // real server refuses that statement: it names another server, and was
    // made in another TLS session. Nothing is listed, fetched or deleted.
    let o = fetch(&[]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("wrong-server"),
        "{}",
        text(&o.stderr)
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.sessions, 1);
    for (request, reply) in &seen.exchanges {
        assert!(
            matches!(request, Request::Challenge | Request::Auth(_)),
            "{request:?}"
        );
        assert!(!matches!(reply, Reply::Ok), "the relayed AUTH succeeded");
    }
    assert!(
        seen.exchanges
            .iter()
            .any(|(r, _)| matches!(r, Request::Auth(_)))
    );
    assert_eq!(server.mailbox_files("bob"), vec![format!("{id}.sxf")]);
}

#[test]
fn trust_on_first_use_records_the_server_and_refuses_a_changed_one() {
    let dir = tempdir();
    let home = dir.path().join("home");
    let mut real = Server::start(&dir.path().join("store"), &[]);
    let id = hex::encode(real.raw().cert_id());
    let msg = seal(dir.path(), "m.sxf", &["bob"], "for bob", 0);
    let send = |addr: &str| {
        sxf()
            .env("SXF_HOME", &home)
            .arg("send")
            .arg(&msg)
            .args(["--server", addr])
            .output()
            .unwrap()
    };
    // First contact: recorded, and said so.
    let o = send(&real.addr);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("first contact with {}", real.addr)) && e.contains(&id),
        "{e}"
    );
    let file = home.join("known-servers");
    let known = std::fs::read_to_string(&file).unwrap();
    assert!(
        known.lines().any(|l| l == format!("{} {id}", real.addr)),
        "{known}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Second contact: the record is used, nothing new is said.
    let o = send(&real.addr);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("first contact"),
        "{}",
        text(&o.stderr)
    );
    // Another server, with another certificate, at the same address: refused, loudly.
    let addr = real.addr.clone();
    real.kill();
    let impostor = start_impostor(dir.path(), &addr);
    let mut fetch = sxf();
    fetch
        .env("SXF_HOME", &home)
        .args(["fetch", "--server", &addr, "--key"])
        .arg(key("bob.key"))
        .arg("--out-dir")
        .arg(dir.path().join("in"));
    let o = fetch.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains("not authentic") && e.contains("impersonating") && e.contains(&id),
        "{e}"
    );
    assert_eq!(impostor.count_log("authenticated as"), 0);
    let o = send(&addr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(impostor.mailbox_files("bob").is_empty());
    // The record is left as it was.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), known);
    // An edited record is refused the same way against the real server.
    drop(impostor);
    let real = Server::start_on(&dir.path().join("store"), &addr, &[]);
    assert_eq!(hex::encode(real.raw().cert_id()), id);
    let o = send(&addr);
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::write(&file, known.replace(&id, &"ab".repeat(32))).unwrap();
    let o = send(&addr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("impersonating"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn an_auth_statement_relayed_from_another_tls_session_is_refused() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    let msg = seal(dir.path(), "m.sxf", &["bob"], "for bob", 0);
    server.send_ok(&msg);
    // A relay: the victim's session A ends at the relay, the relay's own
    // session B reaches the server. The relay passes B's challenge to the
    // victim, who signs it inside A, and passes the signed AUTH back to B.
    let victim_side = server.raw();
    let mut relay_side = server.raw();
    let nonce = match relay_side.request(&Request::Challenge) {
        Reply::Challenge(n) => n,
        other => panic!("{other:?}"),
    };
    let signed_in_a = client::sign_statement(
        &private_key("bob"),
        victim_side.cert_id(),
        nonce,
        victim_side.binding(&nonce),
    )
    .unwrap();
    let m = expect_error(
        relay_side.request(&Request::Auth(signed_in_a)),
        ErrorCode::WrongSession,
    );
    assert!(m.contains("another TLS session"), "{m}");
    expect_error(relay_side.request(&Request::List), ErrorCode::AuthRequired);
    assert!(
        server.wait_for_log("refused [24 wrong-session]", Duration::from_secs(5)),
        "{:?}",
        server.log()
    );
    // No binding at all is no better.
    let mut a = auth_for(&mut relay_side, "bob");
    a.statement.tls_binding = [0; 32];
    a.signature = sxf::crypto::sign(
        &mut rand::rngs::SysRng,
        private_key("bob").key(),
        &a.statement.to_bytes(),
    )
    .unwrap();
    expect_error(
        relay_side.request(&Request::Auth(a)),
        ErrorCode::WrongSession,
    );
    // Signed inside B itself, it is accepted.
    let a = auth_for(&mut relay_side, "bob");
    assert_eq!(relay_side.request(&Request::Auth(a)), Reply::Ok);
    assert!(matches!(
        relay_side.request(&Request::List),
        Reply::List { ref entries, .. } if entries.len() == 1
    ));
    assert_eq!(server.count_log("authenticated as"), 1);
}

#[test]
fn plaintext_bytes_get_no_frame_and_the_server_keeps_serving() {
    let dir = tempdir();
    let server = Server::start(&dir.path().join("store"), &[]);
    // A version-1 client, or anything else that does not start TLS.
    let mut s = Raw::bare(&server.addr);
    s.write_all(b"SXFD\x01\x03\0\0\0\0").unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut got);
    assert!(!got.starts_with(b"SXFD"), "{got:?}");
    assert!(
        server.wait_for_log("TLS handshake failed", Duration::from_secs(5)),
        "{:?}",
        server.log()
    );
    assert_still_serving(&server, dir.path(), "after-plaintext");
}

/// `nohup sxf serve` must outlive the terminal: a SIGHUP that the shell set to
/// be ignored stays ignored (serve handles only SIGTERM and SIGINT), and the
/// server keeps serving until SIGTERM.
#[cfg(unix)]
#[test]
fn a_server_started_with_sighup_ignored_survives_a_hangup() {
    let dir = tempdir();
    let store = dir.path().join("store");
    let mut child = std::process::Command::new("sh")
        .args(["-c", "trap '' HUP; exec \"$@\"", "sh", SXF, "serve"])
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(&store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.strip_prefix("listening on ").unwrap().to_owned();
    for l in lines.by_ref() {
        if l.unwrap().contains(" limits: ") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the server"
    );
    // Still serving: an upload is filed.
    let msg = seal(dir.path(), "m.sxf", &["bob"], "after the hangup", 0);
    let o = sxf()
        .args(["send"])
        .arg(&msg)
        .args(["--server", &addr])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        lines.any(|l| l.unwrap().contains("received a signal to stop")),
        "the stop was logged"
    );
}
