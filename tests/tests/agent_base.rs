//! The real agent in a real guest: boots the `base` image under QEMU and exercises every request,
//! bad input on the channel, and the guest dying mid-stream.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use den_agent_proto::frame::{Frame, FrameCodec, Kind, CHAN_STDERR, CHAN_STDIO, MAX_PAYLOAD};
use den_agent_proto::msg::{Control, ExecRequest, ForwardTarget, Hello, Request, TtySize};
use den_agent_proto::{AgentClient, ClientError, Event};
use den_tests::{images, Guest, GuestOptions};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Framed;

fn argv(a: &[&str]) -> ExecRequest {
    ExecRequest { argv: a.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

async fn sh(c: &AgentClient, script: &str) -> den_agent_proto::ExecOutput {
    c.exec_output(&["/bin/sh", "-c", script], Bytes::new(), den_tests::EXEC).await.expect("exec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_guest_agent_end_to_end() {
    let store = images::shared_store();
    let image = images::build_builtin(&store, "base");
    let opts = GuestOptions {
        isolated_nic: true,
        extra_cmdline: "den.hostname=base-test den.ip=10.0.2.15/24 den.gw=10.0.2.2".into(),
        ..Default::default()
    };
    let (mut guest, c) = Guest::boot(&store, &image, opts).await;
    eprintln!("base guest answered after {:.1}s ({} retries)", guest.boot_secs, guest.retries);

    // info
    let info = c.info().await.expect("info");
    assert_eq!(info.kernel, image.kernel_release);
    assert!(info.pid1, "the agent's init is PID 1 in a microVM");
    assert!(info.mem_total_kib > 256 * 1024, "{info:?}");
    assert!(info.addresses.get("lo").is_some_and(|a| a.iter().any(|x| x == "127.0.0.1/8")), "{info:?}");
    assert_eq!(info.hostname, "base-test");
    // network settings from the kernel command line
    assert!(info.addresses.values().flatten().any(|a| a == "10.0.2.15/24"), "{info:?}");
    let routes = c.exec_output(&["ip", "route"], Bytes::new(), den_tests::EXEC).await.unwrap();
    assert!(String::from_utf8_lossy(&routes.stdout).contains("default via 10.0.2.2"), "{routes:?}");

    // exec: output, exit codes, stderr
    let out = c.exec_output(&["uname", "-r"], Bytes::new(), den_tests::EXEC).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), image.kernel_release);
    assert_eq!(out.code, Some(0));
    assert_eq!(c.exec_output(&["false"], Bytes::new(), den_tests::EXEC).await.unwrap().code, Some(1));
    let out = sh(&c, "echo oops >&2; exit 7").await;
    assert_eq!((out.code, out.stderr.as_slice(), out.stdout.len()), (Some(7), &b"oops\n"[..], 0));
    let out = sh(&c, "kill -TERM $$").await;
    assert_eq!((out.code, out.signal), (None, Some(libc::SIGTERM)));
    match c.exec_output(&["/no/such/program"], Bytes::new(), den_tests::EXEC).await {
        Err(ClientError::Remote(e)) => assert_eq!(e.code, "not_found", "{e:?}"),
        other => panic!("expected not_found, got {other:?}"),
    }

    // set time
    c.set_time(std::time::SystemTime::now()).await.unwrap();
    let guest_now: u64 = String::from_utf8_lossy(&sh(&c, "date +%s").await.stdout).trim().parse().unwrap();
    let host_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(guest_now.abs_diff(host_now) <= 5, "guest clock {guest_now} vs host {host_now}");

    // 10 MiB cat
    let data: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let t = Instant::now();
    let out = c.exec_output(&["cat"], Bytes::from(data.clone()), den_tests::EXEC).await.unwrap();
    eprintln!("10 MiB through exec cat: {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(out.code, Some(0));
    assert_eq!(hex::encode(Sha256::digest(&out.stdout)), hex::encode(Sha256::digest(&data)));

    // tty
    let mut req = argv(&["/bin/sh", "-c", "stty size; read x; stty size"]);
    req.tty = Some(TtySize { cols: 80, rows: 24 });
    let mut tty = c.exec(req).await.unwrap();
    let mut seen = String::new();
    let mut resized = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), tty.rx.recv()).await.expect("tty output") {
            Event::Data { bytes, .. } => {
                seen.push_str(&String::from_utf8_lossy(&bytes));
                if !resized && seen.contains("24 80") {
                    resized = true;
                    tty.resize(TtySize { cols: 100, rows: 40 }).unwrap();
                    tty.stdin(Bytes::from_static(b"\n")).await.unwrap();
                }
            }
            Event::Control(Control::Exit { code, .. }) => {
                assert_eq!(code, Some(0));
                break;
            }
            Event::Eof { .. } => {}
            other => panic!("unexpected {other:?} (output so far {seen:?})"),
        }
    }
    assert!(seen.contains("40 100"), "resize not seen: {seen:?}");

    // concurrent
    let runs = (0..8).map(|i| {
        let c = c.clone();
        async move {
            c.exec_output(&["/bin/sh", "-c", "sleep 1; echo job $0", &i.to_string()], Bytes::new(), den_tests::EXEC)
                .await
        }
    });
    let outs = futures_util::future::join_all(runs).await;
    for (i, o) in outs.into_iter().enumerate() {
        let o = o.unwrap();
        assert_eq!((o.code, String::from_utf8_lossy(&o.stdout).to_string()), (Some(0), format!("job {i}\n")));
    }

    // files
    let blob: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    c.put_file("/root/blob.bin", 0o600, Bytes::from(blob.clone())).await.unwrap();
    assert_eq!(c.get_file("/root/blob.bin", den_tests::EXEC).await.unwrap(), blob);
    assert_eq!(String::from_utf8_lossy(&sh(&c, "stat -c %a /root/blob.bin").await.stdout).trim(), "600");
    match c.get_file("/nope", den_tests::EXEC).await {
        Err(ClientError::Remote(e)) => assert_eq!(e.code, "not_found"),
        other => panic!("expected not_found, got {other:?}"),
    }
    let keys = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDen test@den".to_string()];
    c.set_authorized_keys("root", &keys).await.unwrap();
    assert_eq!(
        c.get_file("/root/.ssh/authorized_keys", den_tests::EXEC).await.unwrap(),
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDen test@den\n"
    );

    // forward
    let server = "perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>q{127.0.0.1:7777},Listen=>1,ReuseAddr=>1) or die; \
                  print qq{ready\\n}; $|=1; $c=$s->accept; print $c uc($_) while <$c>;'";
    let mut srv = c.exec(argv(&["/bin/sh", "-c", server])).await.unwrap();
    loop {
        match srv.rx.recv().await {
            Event::Data { bytes, .. } if bytes.starts_with(b"ready") => break,
            Event::Data { chan: CHAN_STDERR, bytes } => panic!("server: {}", String::from_utf8_lossy(&bytes)),
            Event::Closed(e) => panic!("server ended: {e:?}"),
            _ => {}
        }
    }
    let mut fwd = c.forward_io(ForwardTarget::Tcp { host: "127.0.0.1".into(), port: 7777 }).await.unwrap();
    fwd.write_all(b"hello through the agent\n").await.unwrap();
    fwd.shutdown().await.unwrap();
    let mut back = Vec::new();
    fwd.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"HELLO THROUGH THE AGENT\n");
    match c.forward(ForwardTarget::Tcp { host: "127.0.0.1".into(), port: 1 }).await {
        Err(ClientError::Remote(e)) => assert_eq!(e.code, "connection_refused"),
        other => panic!("expected connection_refused, got {:?}", other.map(|s| s.id())),
    }

    // Malformed and oversized frames fail only their own stream.
    c.close();
    drop(c);
    bad_frames_keep_other_streams_alive(&guest).await;

    // The agent serves a new host session after the raw one went away.
    let c = AgentClient::connect_unix(&guest.agent_sock, Duration::from_secs(30)).await.expect("reconnect");
    assert_eq!(c.info().await.unwrap().kernel, image.kernel_release);

    // The guest dies mid-stream: the host side fails the stream and the session, promptly.
    let mut cat = c.exec(argv(&["cat"])).await.unwrap();
    cat.stdin(Bytes::from_static(b"before the crash\n")).await.unwrap();
    match cat.rx.recv().await {
        Event::Data { bytes, .. } => assert_eq!(&bytes[..], b"before the crash\n"),
        other => panic!("unexpected {other:?}"),
    }
    guest.kill();
    let t = Instant::now();
    match tokio::time::timeout(Duration::from_secs(10), cat.rx.recv())
        .await
        .expect("stream must end when the guest dies")
    {
        Event::Closed(Some(e)) => assert_eq!(e.code, "channel_lost"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(c.info().await, Err(ClientError::Mux(_))));
    eprintln!("guest death noticed after {:.3}s", t.elapsed().as_secs_f64());
}

async fn expect_frame(io: &mut Framed<tokio::net::UnixStream, FrameCodec>, stream: u32, kind: Kind) -> Frame {
    loop {
        let f = tokio::time::timeout(Duration::from_secs(30), io.next())
            .await
            .expect("agent answers")
            .expect("channel open")
            .expect("readable")
            .expect("well-formed frame");
        // Credits, and frames of streams of the earlier session still in flight, are not ours.
        if f.kind == Kind::Credit || f.stream > 7 {
            continue;
        }
        assert_eq!((f.stream, f.kind), (stream, kind), "frame {f:?}");
        return f;
    }
}

async fn bad_frames_keep_other_streams_alive(guest: &Guest) {
    let sock = tokio::net::UnixStream::connect(&guest.agent_sock).await.unwrap();
    let mut io = Framed::new(sock, FrameCodec::default());
    io.send(Frame::json(0, Kind::Hello, &Hello::ours("den-test raw"))).await.unwrap();
    expect_frame(&mut io, 0, Kind::Hello).await;

    io.send(Frame::json(1, Kind::Open, &Request::Exec(argv(&["cat"])))).await.unwrap();
    let started: Control = serde_json::from_slice(&expect_frame(&mut io, 1, Kind::Control).await.payload).unwrap();
    assert!(matches!(started, Control::Started { .. }), "{started:?}");

    // Oversized: a header announcing more than the limit, followed by that many bytes.
    let mut raw = BytesMut::new();
    raw.extend_from_slice(&((MAX_PAYLOAD + 1) as u32).to_be_bytes());
    raw.extend_from_slice(&3u32.to_be_bytes());
    raw.extend_from_slice(&[Kind::Data as u8, 0, 0, 0]);
    raw.extend_from_slice(&vec![0x5a; MAX_PAYLOAD + 1]);
    io.get_mut().write_all(&raw).await.unwrap();
    let close: serde_json::Value =
        serde_json::from_slice(&expect_frame(&mut io, 3, Kind::Close).await.payload).unwrap();
    assert_eq!(close["code"], "protocol", "{close}");

    // A request the agent does not know, and an unknown frame kind.
    io.send(Frame::new(5, Kind::Open, 0, &br#"{"op":"format_disk"}"#[..])).await.unwrap();
    let err: Control = serde_json::from_slice(&expect_frame(&mut io, 5, Kind::Control).await.payload).unwrap();
    assert!(
        matches!(&err, Control::Error(e) if e.code == "bad_request" && e.message.contains("format_disk")),
        "{err:?}"
    );
    expect_frame(&mut io, 5, Kind::Close).await;
    let mut unknown = BytesMut::new();
    unknown.extend_from_slice(&1u32.to_be_bytes());
    unknown.extend_from_slice(&7u32.to_be_bytes());
    unknown.extend_from_slice(&[99, 0, 0, 0, b'x']);
    io.get_mut().write_all(&unknown).await.unwrap();
    expect_frame(&mut io, 7, Kind::Close).await;

    // The first stream still works.
    io.send(Frame::new(1, Kind::Data, CHAN_STDIO, &b"still alive\n"[..])).await.unwrap();
    io.send(Frame::new(1, Kind::Eof, CHAN_STDIO, Bytes::new())).await.unwrap();
    let mut out = Vec::new();
    let exit = loop {
        let f = tokio::time::timeout(Duration::from_secs(30), io.next()).await.unwrap().unwrap().unwrap().unwrap();
        match (f.stream, f.kind) {
            (1, Kind::Data) => out.extend_from_slice(&f.payload),
            (1, Kind::Control) => break serde_json::from_slice::<Control>(&f.payload).unwrap(),
            (1, Kind::Eof) | (_, Kind::Credit) => {}
            (s, _) if s > 7 => {}
            _ => panic!("unexpected {f:?}"),
        }
    };
    assert_eq!(out, b"still alive\n");
    assert_eq!(exit, Control::Exit { code: Some(0), signal: None });
}
