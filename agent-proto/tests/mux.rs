//! The multiplexer over an in-memory pipe: flow control, isolation of streams, hostile peers.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use den_agent_proto::frame::{Frame, FrameCodec, Kind, CHAN_STDIO, MAX_PAYLOAD};
use den_agent_proto::msg::{Control, ForwardTarget, Hello, Request};
use den_agent_proto::mux::{Event, Role, Session, WINDOW};
use den_agent_proto::AgentClient;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_util::codec::Framed;

/// A fake agent: every `forward` stream echoes its bytes back.
fn echo_agent(io: tokio::io::DuplexStream) {
    let (_session, mut incoming) = Session::start(io, Role::Agent, "fake-agent");
    tokio::spawn(async move {
        let _keep = _session;
        while let Some(inc) = incoming.recv().await {
            tokio::spawn(async move {
                let (tx, mut rx) = inc.stream.split();
                tx.control(&Control::Started { pid: None }).unwrap();
                loop {
                    match rx.recv().await {
                        Event::Data { bytes, .. } => {
                            if tx.data(CHAN_STDIO, bytes).await.is_err() {
                                return;
                            }
                        }
                        Event::Eof { .. } => {
                            let _ = tx.eof(CHAN_STDIO);
                        }
                        Event::Closed(_) => return,
                        Event::Control(_) => {}
                    }
                }
            });
        }
    });
}

fn tcp() -> ForwardTarget {
    ForwardTarget::Tcp { host: "127.0.0.1".into(), port: 1 }
}

#[tokio::test]
async fn large_transfer_through_a_small_pipe_is_intact() {
    let (a, b) = tokio::io::duplex(4096);
    echo_agent(b);
    let c = AgentClient::over(a, Duration::from_secs(5)).await.unwrap();
    assert_eq!(c.peer().software, "fake-agent");
    let stream = c.forward(tcp()).await.unwrap();
    let (tx, mut rx) = stream.split();
    let data: Bytes = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    let send = {
        let data = data.clone();
        tokio::spawn(async move {
            tx.data(CHAN_STDIO, data).await.unwrap();
            tx.eof(CHAN_STDIO).unwrap();
            tx
        })
    };
    let mut got = BytesMut::new();
    loop {
        match rx.recv().await {
            Event::Data { bytes, .. } => got.extend_from_slice(&bytes),
            Event::Eof { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got.freeze(), data);
    drop(send.await.unwrap());
}

#[tokio::test]
async fn a_stalled_stream_does_not_block_others() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    echo_agent(b);
    let c = AgentClient::over(a, Duration::from_secs(5)).await.unwrap();
    // Stream 1: send far more than a window and never read the echo.
    let stalled = c.forward(tcp()).await.unwrap();
    let filler = tokio::spawn({
        let tx = stalled.tx.clone();
        async move { tx.data(CHAN_STDIO, Bytes::from(vec![1u8; 4 * WINDOW])).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!filler.is_finished(), "the sender must be held back by the window");
    // Stream 2 still round-trips.
    let mut other = c.forward(tcp()).await.unwrap();
    other.tx.data(CHAN_STDIO, Bytes::from_static(b"ping")).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), other.rx.recv()).await.unwrap() {
        Event::Data { bytes, .. } => assert_eq!(&bytes[..], b"ping"),
        e => panic!("{e:?}"),
    }
    drop(stalled);
    filler.abort();
}

#[tokio::test]
async fn a_peer_overrunning_the_window_loses_only_that_stream() {
    let (a, b) = tokio::io::duplex(1 << 20);
    echo_agent(b);
    // Play a hostile host by hand.
    let mut io = Framed::new(a, FrameCodec::default());
    io.send(Frame::json(0, Kind::Hello, &Hello::ours("raw"))).await.unwrap();
    let open = |id| Frame::json(id, Kind::Open, &Request::Forward { target: tcp() });
    io.send(open(1)).await.unwrap();
    io.send(open(3)).await.unwrap();
    // Flood stream 1 with more than a window, never returning credit for the echo.
    for _ in 0..(WINDOW / MAX_PAYLOAD + 2) {
        io.send(Frame::new(1, Kind::Data, CHAN_STDIO, vec![0u8; MAX_PAYLOAD])).await.unwrap();
    }
    io.send(Frame::new(3, Kind::Data, CHAN_STDIO, &b"ok"[..])).await.unwrap();
    let mut closed_1 = false;
    let mut echoed_3 = false;
    while !(closed_1 && echoed_3) {
        let f = tokio::time::timeout(Duration::from_secs(5), io.next()).await.unwrap().unwrap().unwrap().unwrap();
        match (f.stream, f.kind) {
            (1, Kind::Close) => {
                let e: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
                assert_eq!(e["code"], "protocol", "{e}");
                closed_1 = true;
            }
            (3, Kind::Data) => {
                assert_eq!(&f.payload[..], b"ok");
                echoed_3 = true;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn losing_the_channel_fails_every_stream_at_once() {
    let (a, b) = tokio::io::duplex(4096);
    echo_agent(b);
    let c = AgentClient::over(a, Duration::from_secs(5)).await.unwrap();
    let mut s = c.forward(tcp()).await.unwrap();
    c.close();
    match tokio::time::timeout(Duration::from_secs(5), s.rx.recv()).await.unwrap() {
        Event::Closed(Some(e)) => assert_eq!(e.code, "channel_lost"),
        e => panic!("{e:?}"),
    }
    assert!(c.info().await.is_err());
}

#[tokio::test]
async fn a_silent_peer_times_out_the_handshake() {
    let (a, _b) = tokio::io::duplex(4096);
    let err = AgentClient::over(a, Duration::from_millis(300)).await.err().expect("no agent, no client");
    assert!(err.to_string().contains("did not answer"), "{err}");
}

/// Reads from the far end of a pipe until it closes; panics when it stays open for `limit`.
async fn closes_within(mut far: tokio::io::DuplexStream, limit: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let drained = async { while far.read(&mut buf).await.is_ok_and(|n| n > 0) {} };
    assert!(tokio::time::timeout(limit, drained).await.is_ok(), "the host still holds the channel");
}

// A caller's own timeout around the connect (a health check's) drops the handshake midway: the
// channel must still be released, or QEMU's agent socket (one client at a time) stays taken.
#[tokio::test]
async fn a_handshake_given_up_by_its_caller_releases_the_channel() {
    let (a, b) = tokio::io::duplex(4096);
    let given_up =
        tokio::time::timeout(Duration::from_millis(200), AgentClient::over(a, Duration::from_secs(30))).await;
    assert!(given_up.is_err(), "a silent peer cannot complete the handshake");
    closes_within(b, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_client_made_to_close_when_dropped_releases_the_channel_with_its_last_clone() {
    let (a, b) = tokio::io::duplex(64 << 10);
    // A raw agent: answers the hello, then reads until the host closes the channel.
    let mut raw = Framed::new(b, FrameCodec::default());
    raw.send(Frame::json(0, Kind::Hello, &Hello::ours("raw-agent"))).await.unwrap();
    let (ended_tx, mut ended) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        while let Some(Ok(_)) = raw.next().await {}
        let _ = ended_tx.send(());
    });
    let c = AgentClient::over(a, Duration::from_secs(5)).await.unwrap().closing_when_dropped();
    let c2 = c.clone();
    drop(c);
    let wait = Duration::from_millis(300);
    assert!(tokio::time::timeout(wait, &mut ended).await.is_err(), "a clone left keeps the session");
    drop(c2);
    assert!(tokio::time::timeout(Duration::from_secs(5), ended).await.is_ok(), "the host still holds the channel");
}

#[tokio::test]
async fn vsock_connect_handshake_then_protocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::env::temp_dir().join(format!("den-vsock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let uds = dir.join("v.sock");
    let listener = tokio::net::UnixListener::bind(&uds).unwrap();
    // A fake VMM: answers CONNECT for port 1024, refuses other ports by closing.
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).await.is_ok() && b[0] != b'\n' {
                line.push(b[0]);
            }
            if line == b"CONNECT 1024" {
                s.write_all(b"OK 1073741824\n").await.unwrap();
                let (a, b) = tokio::io::duplex(4096);
                echo_agent(b);
                tokio::spawn(async move {
                    let mut a = a;
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut a).await;
                });
            }
        }
    });
    let c = AgentClient::connect_vsock(&uds, 1024, Duration::from_secs(5)).await.unwrap();
    assert_eq!(c.peer().software, "fake-agent");
    let err = AgentClient::connect_vsock(&uds, 9, Duration::from_secs(5)).await.err().expect("refused port");
    assert!(err.to_string().contains("port 9"), "{err}");
    // The handshake alone, over any stream: it returns the host-side port.
    let mut s = tokio::net::UnixStream::connect(&uds).await.unwrap();
    let port = den_agent_proto::vsock_connect(&mut s, 1024, Duration::from_secs(5)).await.unwrap();
    assert_eq!(port, 1 << 30);
    let c = AgentClient::over(s, Duration::from_secs(5)).await.unwrap();
    assert_eq!(c.peer().software, "fake-agent");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A host session over `a`, with a raw agent on the other end that has answered the hello.
async fn host_with_raw_agent(
    a: tokio::io::DuplexStream,
    b: tokio::io::DuplexStream,
) -> (Session, Framed<tokio::io::DuplexStream, FrameCodec>) {
    let (host, _incoming) = Session::start(a, Role::Host, "host");
    let mut raw = Framed::new(b, FrameCodec::default());
    raw.send(Frame::json(0, Kind::Hello, &Hello::ours("raw-agent"))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), host.handshake()).await.unwrap().unwrap();
    (host, raw)
}

#[tokio::test]
async fn a_guest_flooding_control_messages_loses_only_that_stream() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (host, mut raw) = host_with_raw_agent(a, b).await;
    let mut flooded = host.open(&Request::Forward { target: tcp() }).unwrap();
    let mut other = host.open(&Request::Forward { target: tcp() }).unwrap();
    // Nobody reads `flooded` while the guest sends it control messages and empty data frames.
    for _ in 0..2000 {
        raw.send(Frame::json(flooded.id(), Kind::Control, &Control::Started { pid: Some(1) })).await.unwrap();
        raw.send(Frame::new(flooded.id(), Kind::Data, CHAN_STDIO, Bytes::new())).await.unwrap();
    }
    raw.send(Frame::new(other.id(), Kind::Data, CHAN_STDIO, &b"ok"[..])).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), other.rx.recv()).await.unwrap() {
        Event::Data { bytes, .. } => assert_eq!(&bytes[..], b"ok"),
        e => panic!("{e:?}"),
    }
    let mut signals = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), flooded.rx.recv()).await.unwrap() {
            Event::Control(_) => signals += 1,
            Event::Closed(Some(e)) => {
                assert!(e.message.contains("wait unread"), "{e:?}");
                break;
            }
            e => panic!("{e:?}"),
        }
    }
    assert!(signals <= den_agent_proto::mux::MAX_QUEUED_SIGNALS, "{signals} queued");
    assert_eq!(host.open_streams(), 1, "the other stream lives on");
}

#[tokio::test]
async fn a_guest_that_never_reads_cannot_grow_the_hosts_queue() {
    // A small pipe the raw agent never reads from: every refusal the host sends waits.
    let (a, b) = tokio::io::duplex(4096);
    let (host, raw) = host_with_raw_agent(a, b).await;
    let (_rd, mut wr) = {
        let parts = raw.into_parts();
        tokio::io::split(parts.io)
    };
    let flood = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut codec = FrameCodec::default();
        // Opens with ids the agent may not use: each is refused with a Close frame.
        for i in 0..20_000u32 {
            let mut buf = BytesMut::new();
            let f = Frame::json(2 * i + 1, Kind::Open, &Request::Forward { target: tcp() });
            tokio_util::codec::Encoder::encode(&mut codec, f, &mut buf).unwrap();
            if wr.write_all(&buf).await.is_err() {
                return i;
            }
        }
        20_000
    });
    let why = tokio::time::timeout(Duration::from_secs(10), host.closed()).await.expect("the host closed the session");
    assert!(why.contains("does not read"), "{why}");
    flood.abort();
}

#[tokio::test]
async fn the_host_accepts_no_streams_from_the_guest() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (host, mut raw) = host_with_raw_agent(a, b).await;
    for i in 0..1000u32 {
        raw.send(Frame::json(2 * i + 2, Kind::Open, &Request::Forward { target: tcp() })).await.unwrap();
    }
    let mut closes = 0;
    while closes < 1000 {
        let f = tokio::time::timeout(Duration::from_secs(5), raw.next()).await.unwrap().unwrap().unwrap().unwrap();
        if f.kind == Kind::Close {
            closes += 1;
        }
    }
    assert_eq!(host.open_streams(), 0, "nothing was kept for the guest's opens");
}

/// An agent played by hand: answers the hello, then `Started` and `chunks` of data on the first
/// stream the host opens, and nothing more.
async fn scripted_agent(io: tokio::io::DuplexStream, chunks: usize) {
    let mut raw = Framed::new(io, FrameCodec::default());
    let mut stream = None;
    while let Some(Ok(Ok(f))) = raw.next().await {
        match f.kind {
            Kind::Hello => raw.send(Frame::json(0, Kind::Hello, &Hello::ours("scripted"))).await.unwrap(),
            Kind::Open if stream.is_none() => {
                stream = Some(f.stream);
                raw.send(Frame::json(f.stream, Kind::Control, &Control::Started { pid: Some(1) })).await.unwrap();
                for _ in 0..chunks {
                    raw.send(Frame::new(f.stream, Kind::Data, CHAN_STDIO, vec![b'x'; MAX_PAYLOAD])).await.unwrap();
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn guest_output_past_its_bounds_is_refused() {
    use den_agent_proto::{Bounds, ClientError};
    // More bytes than taken: refused at once, not read to the end.
    let (a, b) = tokio::io::duplex(1 << 20);
    tokio::spawn(scripted_agent(b, 2));
    let c = AgentClient::over(a, Duration::from_secs(5)).await.unwrap();
    let small = Bounds::new(100 << 10, Duration::from_secs(5));
    match c.get_file("/big", small).await {
        Err(ClientError::TooLarge { max, .. }) => assert_eq!(max, 100 << 10),
        other => panic!("{other:?}"),
    }
    // An exec whose output never ends within the deadline.
    let (a, b) = tokio::io::duplex(1 << 20);
    tokio::spawn(scripted_agent(b, 1));
    let c = AgentClient::over(a, Duration::from_secs(5)).await.unwrap();
    let quick = Bounds::new(1 << 20, Duration::from_millis(300));
    match c.exec_output(&["yes"], Bytes::new(), quick).await {
        Err(ClientError::Deadline { after, .. }) => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
}
