//! The stream multiplexer: many concurrent streams over one byte channel, with per-stream
//! credit-based flow control so that one slow stream never stalls the others.
//!
//! Both the agent and the host run a [`Session`]; the host opens streams, the agent accepts them.
//! Everything the peer sends is checked: bad frames, bad JSON and window overruns fail only the
//! stream they name, and the session keeps serving the others.

use crate::frame::{BadFrame, Frame, FrameCodec, Kind, MAX_PAYLOAD};
use crate::msg::{Control, ErrorReply, Hello, Request, PROTOCOL_NAME, PROTOCOL_VERSION};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Bytes a sender may have in flight on one stream before the receiver returns credit.
pub const WINDOW: usize = 256 * 1024;

/// Which end of the channel this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The host: sends the first hello, opens streams with odd ids.
    Host,
    /// The guest agent: answers hellos, accepts streams.
    Agent,
}

/// Errors of the multiplexer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MuxError {
    /// The channel to the peer is gone (guest died, socket closed).
    #[error("agent channel closed: {0}")]
    ChannelClosed(String),
    /// The stream was closed (by either side) before the operation completed.
    #[error("stream {0} is closed")]
    StreamClosed(u32),
    /// The peer speaks something else or an incompatible version.
    #[error("agent handshake failed: {0}")]
    Handshake(String),
}

/// What a stream's reader receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Bytes on a channel.
    Data {
        /// Channel number.
        chan: u8,
        /// The bytes.
        bytes: Bytes,
    },
    /// The peer half-closed a channel.
    Eof {
        /// Channel number.
        chan: u8,
    },
    /// A control message.
    Control(Control),
    /// The stream ended; `Some` carries the reason when it ended in error.
    Closed(Option<ErrorReply>),
}

/// Most control messages and half-closes of one stream that may wait unread: past it the peer
/// is sending them faster than they can mean anything, and the stream is failed. (Data is
/// bounded by the window, and empty data frames are dropped.)
pub const MAX_QUEUED_SIGNALS: usize = 256;
/// Most frames waiting to be written before a frame the peer provoked (a refusal, a close)
/// ends the session instead: a peer that sends bad frames and never reads cannot make the
/// queue grow without bound.
pub const MAX_BACKLOG: usize = 4096;
/// Malformed frames a session takes before it is closed (each is logged up to a few).
pub const MAX_BAD_FRAMES: usize = 64;

struct Slot {
    events: mpsc::UnboundedSender<Event>,
    credit: Arc<Semaphore>,
    unconsumed: Arc<AtomicUsize>,
    signals: Arc<AtomicUsize>,
}

/// The reader-side handles of a registered stream: its events, send credit, unconsumed bytes,
/// unread signals.
type SlotHandles = (mpsc::UnboundedReceiver<Event>, Arc<Semaphore>, Arc<AtomicUsize>, Arc<AtomicUsize>);

struct Shared {
    role: Role,
    out: mpsc::UnboundedSender<Frame>,
    /// Frames queued in `out` and not written yet.
    backlog: AtomicUsize,
    /// Malformed frames seen.
    bad: AtomicUsize,
    streams: Mutex<HashMap<u32, Slot>>,
    next_id: AtomicU32,
    closed: watch::Sender<Option<String>>,
    peer: watch::Sender<Option<Hello>>,
    software: String,
}

impl Shared {
    fn send(&self, f: Frame) -> Result<(), MuxError> {
        self.backlog.fetch_add(1, Ordering::AcqRel);
        self.out.send(f).map_err(|_| self.closed_error())
    }

    /// Sends a frame the peer provoked (a refusal, a close), unless the peer has stopped
    /// reading: then the session ends instead of queueing more.
    fn send_reply(&self, f: Frame) {
        if self.backlog.load(Ordering::Acquire) > MAX_BACKLOG {
            close_session(self, format!("the peer does not read: more than {MAX_BACKLOG} frames wait for it"));
            return;
        }
        let _ = self.send(f);
    }

    fn closed_error(&self) -> MuxError {
        let why = self.closed.borrow().clone().unwrap_or_else(|| "session ended".into());
        MuxError::ChannelClosed(why)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        // A poisoned map only means another task panicked mid-update; the map itself is consistent.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends one stream locally and tells the peer why.
    fn fail_stream(&self, id: u32, err: ErrorReply) {
        if let Some(slot) = self.slots().remove(&id) {
            slot.credit.close();
            let _ = slot.events.send(Event::Closed(Some(err.clone())));
        }
        self.send_reply(Frame::json(id, Kind::Close, &err));
    }

    fn fail_all(&self, err: ErrorReply) {
        for (_, slot) in self.slots().drain() {
            slot.credit.close();
            let _ = slot.events.send(Event::Closed(Some(err.clone())));
        }
    }

    /// Registers a stream. Fails once the session is closed: the closed flag is checked under
    /// the same lock `fail_all` takes after setting it, so no stream can miss its end.
    fn new_slot(&self, id: u32) -> Result<SlotHandles, MuxError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(WINDOW));
        let unconsumed = Arc::new(AtomicUsize::new(0));
        let signals = Arc::new(AtomicUsize::new(0));
        let slot =
            Slot { events: tx, credit: credit.clone(), unconsumed: unconsumed.clone(), signals: signals.clone() };
        let mut slots = self.slots();
        if self.closed.borrow().is_some() {
            drop(slots);
            return Err(self.closed_error());
        }
        slots.insert(id, slot);
        Ok((rx, credit, unconsumed, signals))
    }

    /// Queues a control message or half-close of stream `id`, failing the stream when too
    /// many wait unread.
    fn signal(&self, id: u32, ev: Event) {
        let slots = self.slots();
        let Some(slot) = slots.get(&id) else { return };
        if slot.signals.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_SIGNALS {
            drop(slots);
            let msg = format!("stream {id}: more than {MAX_QUEUED_SIGNALS} control messages wait unread");
            self.fail_stream(id, ErrorReply::new("protocol", msg));
            return;
        }
        let _ = slot.events.send(ev);
    }
}

/// A stream the peer opened, with what it asked for.
pub struct Incoming {
    /// The request of the `Open` frame.
    pub request: Request,
    /// The stream to answer on.
    pub stream: Stream,
}

/// A handle on a running session; cheap to clone.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl Session {
    /// Starts a session over `io`. Returns the handle and the receiver of streams the peer opens.
    /// The host must then call [`Session::handshake`]; the agent answers hellos by itself.
    pub fn start<T>(io: T, role: Role, software: &str) -> (Session, mpsc::UnboundedReceiver<Incoming>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            role,
            out: out_tx,
            backlog: AtomicUsize::new(0),
            bad: AtomicUsize::new(0),
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(if role == Role::Host { 1 } else { 2 }),
            closed: watch::channel(None).0,
            peer: watch::channel(None).0,
            software: software.into(),
        });
        tokio::spawn(write_loop(FramedWrite::new(wr, FrameCodec::default()), out_rx, shared.clone()));
        tokio::spawn(read_loop(FramedRead::new(rd, FrameCodec::default()), in_tx, shared.clone()));
        (Session { shared }, in_rx)
    }

    /// Host side: sends our hello and waits for the agent's. Fails on another protocol or version.
    pub async fn handshake(&self) -> Result<Hello, MuxError> {
        let mut peer = self.shared.peer.subscribe();
        let mut closed = self.shared.closed.subscribe();
        // The hello is repeated until answered: bytes sent before the guest opened its end of a
        // virtio-serial port may never reach the agent.
        let mut resend = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            if let Some(h) = peer.borrow_and_update().clone() {
                return check_hello(h);
            }
            if let Some(why) = closed.borrow_and_update().clone() {
                return Err(MuxError::ChannelClosed(why));
            }
            tokio::select! {
                _ = resend.tick() => self.shared.send(Frame::json(0, Kind::Hello, &Hello::ours(&self.shared.software)))?,
                r = peer.changed() => if r.is_err() { return Err(self.shared.closed_error()) },
                r = closed.changed() => if r.is_err() { return Err(self.shared.closed_error()) },
            }
        }
    }

    /// Opens a new stream with `request`.
    pub fn open(&self, request: &Request) -> Result<Stream, MuxError> {
        let id = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
        let handles = self.shared.new_slot(id)?;
        let stream = Stream::new(self.shared.clone(), id, handles);
        self.shared.send(Frame::json(id, Kind::Open, request))?;
        Ok(stream)
    }

    /// Resolves when the channel is gone, with the reason.
    pub async fn closed(&self) -> String {
        let mut rx = self.shared.closed.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return "session ended".into();
            }
        }
    }

    /// Ends the session now: every stream fails, and the channel is released.
    pub fn close(&self, why: &str) {
        close_session(&self.shared, why.to_string());
    }

    /// Number of open streams (for metrics and tests).
    pub fn open_streams(&self) -> usize {
        self.shared.slots().len()
    }
}

fn check_hello(h: Hello) -> Result<Hello, MuxError> {
    if h.proto != PROTOCOL_NAME {
        return Err(MuxError::Handshake(format!("peer speaks `{}`, not `{PROTOCOL_NAME}`", h.proto)));
    }
    if h.version != PROTOCOL_VERSION {
        return Err(MuxError::Handshake(format!(
            "peer `{}` speaks protocol version {}, this side {PROTOCOL_VERSION}; update the older side",
            h.software, h.version
        )));
    }
    Ok(h)
}

async fn write_loop<W: AsyncWrite>(
    sink: FramedWrite<W, FrameCodec>,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    shared: Arc<Shared>,
) {
    let mut sink = std::pin::pin!(sink);
    let mut closed = shared.closed.subscribe();
    loop {
        // Stop writing as soon as the channel is gone, so the transport is released at once.
        let f = tokio::select! {
            f = rx.recv() => match f { Some(f) => f, None => return },
            _ = closed.wait_for(|c| c.is_some()) => return,
        };
        let mut res = sink.feed(f).await;
        shared.backlog.fetch_sub(1, Ordering::AcqRel);
        while res.is_ok() {
            match rx.try_recv() {
                Ok(f) => {
                    res = sink.feed(f).await;
                    shared.backlog.fetch_sub(1, Ordering::AcqRel);
                }
                Err(_) => break,
            }
        }
        if let Err(e) = res.and(sink.flush().await) {
            close_session(&shared, format!("write failed: {e}"));
            return;
        }
    }
}

fn close_session(shared: &Shared, why: String) {
    shared.closed.send_if_modified(|c| {
        if c.is_none() {
            *c = Some(why.clone());
            true
        } else {
            false
        }
    });
    shared.fail_all(ErrorReply::new("channel_lost", format!("agent channel closed: {why}")));
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut src: FramedRead<R, FrameCodec>,
    incoming: mpsc::UnboundedSender<Incoming>,
    shared: Arc<Shared>,
) {
    let mut closed = shared.closed.subscribe();
    let why = loop {
        let next = tokio::select! {
            n = src.next() => n,
            _ = closed.wait_for(|c| c.is_some()) => return,
        };
        match next {
            None => break "peer closed the channel".to_string(),
            Some(Err(e)) => break format!("read failed: {e}"),
            Some(Ok(Err(bad))) => on_bad_frame(&shared, bad),
            Some(Ok(Ok(frame))) => on_frame(&shared, &incoming, frame),
        }
    };
    close_session(&shared, why);
}

fn on_bad_frame(shared: &Shared, bad: BadFrame) {
    let seen = shared.bad.fetch_add(1, Ordering::AcqRel) + 1;
    if seen <= 8 {
        tracing::warn!(error = %bad, "refused frame");
    }
    if seen > MAX_BAD_FRAMES {
        close_session(shared, format!("the peer sent more than {MAX_BAD_FRAMES} malformed frames"));
        return;
    }
    shared.fail_stream(bad.stream(), ErrorReply::new("protocol", bad.to_string()));
}

fn on_frame(shared: &Arc<Shared>, incoming: &mpsc::UnboundedSender<Incoming>, f: Frame) {
    let id = f.stream;
    match f.kind {
        Kind::Hello => on_hello(shared, &f.payload),
        Kind::Open => on_open(shared, incoming, id, &f.payload),
        // An empty data frame carries nothing; queueing it would be unbounded.
        Kind::Data if f.payload.is_empty() => {}
        Kind::Data => {
            let slots = shared.slots();
            let Some(slot) = slots.get(&id) else { return };
            let now = slot.unconsumed.fetch_add(f.payload.len(), Ordering::AcqRel) + f.payload.len();
            if now > WINDOW {
                drop(slots);
                let msg = format!("stream {id}: peer sent {now} bytes beyond the {WINDOW}-byte window");
                shared.fail_stream(id, ErrorReply::new("protocol", msg));
                return;
            }
            let _ = slot.events.send(Event::Data { chan: f.chan, bytes: f.payload });
        }
        Kind::Eof => shared.signal(id, Event::Eof { chan: f.chan }),
        Kind::Control => match serde_json::from_slice::<Control>(&f.payload) {
            Ok(c) => shared.signal(id, Event::Control(c)),
            Err(e) => shared.fail_stream(id, ErrorReply::new("protocol", format!("bad control message: {e}"))),
        },
        Kind::Credit => on_credit(shared, id, &f.payload),
        Kind::Close => {
            let reason = serde_json::from_slice::<ErrorReply>(&f.payload).ok();
            if let Some(slot) = shared.slots().remove(&id) {
                slot.credit.close();
                let _ = slot.events.send(Event::Closed(reason));
            }
        }
    }
}

fn on_hello(shared: &Shared, payload: &[u8]) {
    let hello = match serde_json::from_slice::<Hello>(payload)
        .map_err(|e| e.to_string())
        .and_then(|h| check_hello(h).map_err(|e| e.to_string()))
    {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "refused hello");
            return;
        }
    };
    if shared.role == Role::Agent {
        // A hello from the host starts a new host session: streams of an earlier one are gone.
        shared.fail_all(ErrorReply::new("channel_lost", "host started a new session"));
        let _ = shared.send(Frame::json(0, Kind::Hello, &Hello::ours(&shared.software)));
    }
    shared.peer.send_replace(Some(hello));
}

fn on_open(shared: &Arc<Shared>, incoming: &mpsc::UnboundedSender<Incoming>, id: u32, payload: &[u8]) {
    if shared.role == Role::Host {
        // The host serves nothing to the guest: an open is refused without making anything.
        let msg = "the host accepts no streams from the guest";
        shared.send_reply(Frame::json(id, Kind::Close, &ErrorReply::new("protocol", msg)));
        return;
    }
    let peer_parity = if shared.role == Role::Host { 0 } else { 1 };
    if id == 0 || id % 2 != peer_parity || shared.slots().contains_key(&id) {
        let msg = format!("stream id {id} is not one the peer may open");
        shared.send_reply(Frame::json(id, Kind::Close, &ErrorReply::new("protocol", msg)));
        return;
    }
    let request = match serde_json::from_slice::<Request>(payload) {
        Ok(r) => r,
        Err(e) => {
            let err = ErrorReply::new("bad_request", format!("bad request: {e}"));
            shared.send_reply(Frame::json(id, Kind::Control, &Control::Error(err.clone())));
            shared.send_reply(Frame::json(id, Kind::Close, &err));
            return;
        }
    };
    let Ok(handles) = shared.new_slot(id) else { return };
    let stream = Stream::new(shared.clone(), id, handles);
    let _ = incoming.send(Incoming { request, stream });
}

fn on_credit(shared: &Shared, id: u32, payload: &[u8]) {
    let Ok(raw) = <[u8; 4]>::try_from(payload) else {
        shared.fail_stream(id, ErrorReply::new("protocol", "credit frame must carry 4 bytes"));
        return;
    };
    let n = u32::from_be_bytes(raw) as usize;
    let slots = shared.slots();
    let Some(slot) = slots.get(&id) else { return };
    if slot.credit.available_permits() + n > WINDOW {
        drop(slots);
        shared.fail_stream(id, ErrorReply::new("protocol", format!("stream {id}: credit beyond the window")));
        return;
    }
    slot.credit.add_permits(n);
}

/// Copies between a stream (channel 0) and a local byte stream until both directions end,
/// passing half-closes through. Used for port forwards on both sides of the channel, and for
/// execs used as byte streams (their standard error, channel 2, is dropped).
pub async fn splice<T: AsyncRead + AsyncWrite>(stream: Stream, local: T) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = stream.split();
    let (mut rd, mut wr) = tokio::io::split(local);
    let up = async {
        let mut buf = bytes::BytesMut::with_capacity(MAX_PAYLOAD);
        loop {
            buf.reserve(MAX_PAYLOAD);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return tx.eof(crate::frame::CHAN_STDIO),
                Ok(_) => tx.data(crate::frame::CHAN_STDIO, buf.split().freeze()).await?,
            }
        }
    };
    let down = async {
        loop {
            match rx.recv().await {
                Event::Data { chan: crate::frame::CHAN_STDIO, bytes } => {
                    if wr.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Event::Eof { chan: crate::frame::CHAN_STDIO } | Event::Closed(_) => {
                    let _ = wr.shutdown().await;
                    return;
                }
                Event::Data { .. } | Event::Eof { .. } | Event::Control(_) => {}
            }
        }
    };
    let (_, ()) = tokio::join!(up, down);
}

/// Sends `Close` when the last half of a stream is dropped.
struct CloseGuard {
    shared: Arc<Shared>,
    id: u32,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if self.shared.slots().remove(&self.id).is_some() {
            self.shared.send_reply(Frame::new(self.id, Kind::Close, 0, Bytes::new()));
        }
    }
}

/// One stream; [`Stream::split`] gives halves that can be used from two tasks.
pub struct Stream {
    /// Sending half.
    pub tx: StreamSender,
    /// Receiving half.
    pub rx: StreamReceiver,
}

impl Stream {
    fn new(shared: Arc<Shared>, id: u32, handles: SlotHandles) -> Stream {
        let (events, credit, unconsumed, signals) = handles;
        let guard = Arc::new(CloseGuard { shared: shared.clone(), id });
        Stream {
            tx: StreamSender { shared: shared.clone(), id, credit, _guard: guard.clone() },
            rx: StreamReceiver { shared, id, events, unconsumed, signals, owed: 0, _guard: guard },
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.tx.id
    }

    /// Splits into halves.
    pub fn split(self) -> (StreamSender, StreamReceiver) {
        (self.tx, self.rx)
    }
}

/// Sending half of a stream; cloneable.
#[derive(Clone)]
pub struct StreamSender {
    shared: Arc<Shared>,
    id: u32,
    credit: Arc<Semaphore>,
    _guard: Arc<CloseGuard>,
}

impl StreamSender {
    /// Sends bytes on `chan`, waiting for window credit; splits into frames as needed.
    pub async fn data(&self, chan: u8, mut bytes: Bytes) -> Result<(), MuxError> {
        while !bytes.is_empty() {
            let want = bytes.len().min(MAX_PAYLOAD).min(WINDOW);
            let permit = self.credit.acquire_many(want as u32).await.map_err(|_| self.gone())?;
            permit.forget();
            let chunk = bytes.split_to(want);
            self.send(Frame::new(self.id, Kind::Data, chan, chunk))?;
        }
        Ok(())
    }

    /// Half-closes `chan`.
    pub fn eof(&self, chan: u8) -> Result<(), MuxError> {
        self.send(Frame::new(self.id, Kind::Eof, chan, Bytes::new()))
    }

    /// Sends a control message.
    pub fn control(&self, c: &Control) -> Result<(), MuxError> {
        self.send(Frame::json(self.id, Kind::Control, c))
    }

    /// Sends a frame of this stream, unless the stream has ended (a stale writer must not leak
    /// frames into a later session).
    fn send(&self, f: Frame) -> Result<(), MuxError> {
        if !self.shared.slots().contains_key(&self.id) {
            return Err(self.gone());
        }
        self.shared.send(f)
    }

    /// Closes the stream now, optionally with an error the peer will see.
    pub fn close(&self, err: Option<ErrorReply>) {
        if let Some(slot) = self.shared.slots().remove(&self.id) {
            slot.credit.close();
            let _ = slot.events.send(Event::Closed(None));
        }
        let payload = match err {
            Some(e) => Frame::json(self.id, Kind::Close, &e).payload,
            None => Bytes::new(),
        };
        let _ = self.shared.send(Frame::new(self.id, Kind::Close, 0, payload));
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn gone(&self) -> MuxError {
        if self.shared.closed.borrow().is_some() {
            self.shared.closed_error()
        } else {
            MuxError::StreamClosed(self.id)
        }
    }
}

/// Receiving half of a stream.
pub struct StreamReceiver {
    shared: Arc<Shared>,
    id: u32,
    events: mpsc::UnboundedReceiver<Event>,
    unconsumed: Arc<AtomicUsize>,
    signals: Arc<AtomicUsize>,
    /// Bytes handed out whose credit has not been returned yet (see [`CREDIT_BATCH`]).
    owed: usize,
    _guard: Arc<CloseGuard>,
}

/// Credit goes back to the peer once this much data was handed out, not per frame: a small
/// request and its answer then cost two frames, not four (each a wake-up on the other side).
/// At most `CREDIT_BATCH - 1` bytes of credit are held back, so once the consumer has taken
/// everything the peer can still send `WINDOW - CREDIT_BATCH + 1` bytes, more than a frame.
pub const CREDIT_BATCH: usize = WINDOW / 4;
const _: () = assert!(CREDIT_BATCH + MAX_PAYLOAD <= WINDOW);

impl StreamReceiver {
    /// Next event; returns window credit to the peer for data it hands out, in batches of
    /// [`CREDIT_BATCH`]. After the stream ended it keeps returning `Closed`.
    pub async fn recv(&mut self) -> Event {
        match self.events.recv().await {
            Some(Event::Data { chan, bytes }) => {
                self.unconsumed.fetch_sub(bytes.len(), Ordering::AcqRel);
                self.owed += bytes.len();
                if self.owed >= CREDIT_BATCH {
                    let credit = (self.owed as u32).to_be_bytes();
                    self.owed = 0;
                    let _ = self.shared.send(Frame::new(self.id, Kind::Credit, 0, Bytes::copy_from_slice(&credit)));
                }
                Event::Data { chan, bytes }
            }
            Some(ev @ (Event::Control(_) | Event::Eof { .. })) => {
                self.signals.fetch_sub(1, Ordering::AcqRel);
                ev
            }
            Some(ev) => ev,
            None => Event::Closed(self.shared.closed.borrow().clone().map(|why| ErrorReply::new("channel_lost", why))),
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }
}
