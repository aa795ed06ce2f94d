//! Host-side client of the guest agent, used by `dend`, the SSH gateway and the Docker bridge.

use crate::frame::{CHAN_STDERR, CHAN_STDIO};
use crate::msg::{Control, ErrorReply, ExecRequest, ForwardTarget, Hello, Info, Request, TtySize};
use crate::mux::{Event, MuxError, Role, Session, Stream, StreamReceiver, StreamSender};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Errors a host component sees when talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not reach the agent socket.
    #[error("cannot connect to the agent socket {path}: {source}")]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The agent did not answer the handshake in time.
    #[error("the agent did not answer within {0:?} (is the guest booted and den-agent running?)")]
    Timeout(Duration),
    /// Multiplexer failure: channel lost, stream closed, handshake refused.
    #[error(transparent)]
    Mux(#[from] MuxError),
    /// The agent refused or failed the request.
    #[error("agent error `{}`: {}", .0.code, .0.message)]
    Remote(ErrorReply),
    /// The agent answered something this client did not expect.
    #[error("unexpected answer from the agent: {0}")]
    Unexpected(String),
    /// The guest sent more than the caller takes.
    #[error("{what} sent more than {max} bytes, the limit; the rest was not read")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit.
        max: usize,
    },
    /// The guest did not finish in time.
    #[error("{what} did not finish within {after:?}")]
    Deadline {
        /// What was waited for.
        what: String,
        /// The limit.
        after: Duration,
    },
}

/// How much of a guest's answer the host takes, and for how long it waits: every read of
/// guest output through this client names both, so none can grow or hang without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most bytes taken (stdout and stderr together, or the file).
    pub max_bytes: usize,
    /// Longest wait for the whole answer.
    pub deadline: Duration,
}

impl Bounds {
    /// Bounds of `max_bytes` and `deadline`.
    pub const fn new(max_bytes: usize, deadline: Duration) -> Bounds {
        Bounds { max_bytes, deadline }
    }
}

/// How long the agent may take to say it started a request (exec, forward, file transfer).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected agent.
#[derive(Clone)]
pub struct AgentClient {
    session: Session,
    peer: Hello,
    /// Set by [`AgentClient::closing_when_dropped`]: the last clone's drop closes the session.
    _owner: Option<Arc<Closer>>,
}

/// Closes a session when dropped, unless [`Closer::keep`] took it back. A session's tasks
/// outlive its handles, and a Unix socket into QEMU serves one client at a time: a session
/// nobody can reach any more would hold the VM's agent channel until the VM ends.
struct Closer {
    session: Option<Session>,
    why: &'static str,
}

impl Closer {
    fn new(session: &Session, why: &'static str) -> Closer {
        Closer { session: Some(session.clone()), why }
    }

    /// Disarms the closer.
    fn keep(mut self) {
        self.session = None;
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            s.close(self.why);
        }
    }
}

/// Collected result of [`AgentClient::exec_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything the process wrote to stdout (and stderr, with a TTY).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Exit code when it exited.
    pub code: Option<i32>,
    /// Signal number when it was killed.
    pub signal: Option<i32>,
}

impl AgentClient {
    /// Connects to an agent channel surfaced as a Unix socket and performs the handshake.
    pub async fn connect_unix(path: &Path, timeout: Duration) -> Result<AgentClient, ClientError> {
        let sock = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect { path: path.display().to_string(), source })?;
        AgentClient::over(sock, timeout).await
    }

    /// Connects through a Firecracker-style vsock Unix socket (den-vmm): writes
    /// `CONNECT <port>\n`, expects `OK <host port>\n`, then performs the handshake.
    pub async fn connect_vsock(uds: &Path, port: u32, timeout: Duration) -> Result<AgentClient, ClientError> {
        let connect = |source| ClientError::Connect { path: uds.display().to_string(), source };
        let mut sock = tokio::net::UnixStream::connect(uds).await.map_err(connect)?;
        vsock_connect(&mut sock, port, timeout).await.map_err(|e| match e {
            ClientError::Unexpected(m) => ClientError::Unexpected(format!("{m} via {}", uds.display())),
            ClientError::Connect { source, .. } => connect(source),
            other => other,
        })?;
        AgentClient::over(sock, timeout).await
    }
    /// Runs the protocol over any byte channel.
    pub async fn over<T>(io: T, timeout: Duration) -> Result<AgentClient, ClientError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let software = concat!("den-host ", env!("CARGO_PKG_VERSION"));
        let (session, _incoming) = Session::start(io, Role::Host, software);
        // Released when the handshake fails, and also when the caller stops waiting (drops this
        // future, as a timeout around it does).
        let unfinished = Closer::new(&session, "handshake not finished");
        match tokio::time::timeout(timeout, session.handshake()).await {
            Ok(Ok(peer)) => {
                unfinished.keep();
                Ok(AgentClient { session, peer, _owner: None })
            }
            Ok(Err(e)) => Err(ClientError::Mux(e)),
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// This client, made to close its session once its last clone is dropped (streams opened
    /// through it then end too). For a session nobody caches: without it, the session would
    /// hold the agent channel after its last user.
    pub fn closing_when_dropped(self) -> AgentClient {
        let owner = Arc::new(Closer::new(&self.session, "its last user is gone"));
        AgentClient { _owner: Some(owner), ..self }
    }

    /// The agent's hello (software and version).
    pub fn peer(&self) -> &Hello {
        &self.peer
    }

    /// Closes the channel (the agent then waits for the next host session).
    pub fn close(&self) {
        self.session.close("closed by the host");
    }

    /// The underlying session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    async fn one_shot(&self, req: &Request) -> Result<serde_json::Value, ClientError> {
        let mut stream = self.session.open(req)?;
        loop {
            match stream.rx.recv().await {
                Event::Control(Control::Result { value }) => return Ok(value),
                Event::Control(Control::Error(e)) | Event::Closed(Some(e)) => return Err(ClientError::Remote(e)),
                Event::Closed(None) => return Err(MuxError::StreamClosed(stream.id()).into()),
                other => tracing::debug!(?other, "ignored event before result"),
            }
        }
    }

    /// Uptime, memory, load, addresses.
    pub async fn info(&self) -> Result<Info, ClientError> {
        let v = self.one_shot(&Request::Info).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Unexpected(format!("info: {e}")))
    }

    /// Sets the guest clock.
    pub async fn set_time(&self, t: std::time::SystemTime) -> Result<(), ClientError> {
        let unix_nanos = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        self.one_shot(&Request::SetTime { unix_nanos }).await.map(drop)
    }

    /// Replaces a user's `authorized_keys`.
    pub async fn set_authorized_keys(&self, user: &str, keys: &[String]) -> Result<(), ClientError> {
        let req = Request::SetAuthorizedKeys { user: user.into(), keys: keys.to_vec() };
        self.one_shot(&req).await.map(drop)
    }

    /// Asks the guest to power off (or reboot) cleanly.
    pub async fn shutdown(&self, reboot: bool) -> Result<(), ClientError> {
        self.one_shot(&Request::Shutdown { reboot }).await.map(drop)
    }

    async fn started(&self, req: &Request) -> Result<(Stream, Option<u32>), ClientError> {
        let mut stream = self.session.open(req)?;
        let first = tokio::time::timeout(START_TIMEOUT, stream.rx.recv()).await.map_err(|_| ClientError::Deadline {
            what: "the agent's start of a request".into(),
            after: START_TIMEOUT,
        })?;
        match first {
            Event::Control(Control::Started { pid }) => Ok((stream, pid)),
            Event::Control(Control::Error(e)) | Event::Closed(Some(e)) => Err(ClientError::Remote(e)),
            Event::Closed(None) => Err(MuxError::StreamClosed(stream.id()).into()),
            other => Err(ClientError::Unexpected(format!("{other:?} before start"))),
        }
    }

    /// Starts a process; stream its stdio through the returned session.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecSession, ClientError> {
        let (stream, pid) = self.started(&Request::Exec(req)).await?;
        let (tx, rx) = stream.split();
        Ok(ExecSession { tx, rx, pid })
    }

    /// Runs `argv` to completion, feeding `stdin`, and collects its output within `bounds`
    /// (past them the stream is dropped, which ends the process).
    pub async fn exec_output(&self, argv: &[&str], stdin: Bytes, bounds: Bounds) -> Result<ExecOutput, ClientError> {
        let req = ExecRequest { argv: argv.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let session = self.exec(req).await?;
        session.run(stdin, bounds).await
    }

    /// Opens a stream spliced to a TCP or Unix endpoint inside the guest.
    pub async fn forward(&self, target: ForwardTarget) -> Result<Stream, ClientError> {
        Ok(self.started(&Request::Forward { target }).await?.0)
    }

    /// Like [`AgentClient::forward`], but as a plain byte stream (a tokio duplex pipe).
    pub async fn forward_io(&self, target: ForwardTarget) -> Result<tokio::io::DuplexStream, ClientError> {
        let stream = self.forward(target).await?;
        let (ours, theirs) = tokio::io::duplex(crate::mux::WINDOW);
        tokio::spawn(crate::mux::splice(stream, ours));
        Ok(theirs)
    }

    /// Runs a program whose standard input and output become a plain byte stream (a tokio
    /// duplex pipe), e.g. `sshd -i`; its standard error is dropped.
    pub async fn exec_io(&self, req: ExecRequest) -> Result<tokio::io::DuplexStream, ClientError> {
        let ExecSession { tx, rx, .. } = self.exec(req).await?;
        let (ours, theirs) = tokio::io::duplex(crate::mux::WINDOW);
        tokio::spawn(crate::mux::splice(Stream { tx, rx }, ours));
        Ok(theirs)
    }

    /// Writes a file in the guest (atomically: temporary name, then rename).
    pub async fn put_file(&self, path: &str, mode: u32, contents: Bytes) -> Result<(), ClientError> {
        let (stream, _) = self.started(&Request::PutFile { path: path.into(), mode }).await?;
        let (tx, mut rx) = stream.split();
        tx.data(CHAN_STDIO, contents).await?;
        tx.eof(CHAN_STDIO)?;
        loop {
            match rx.recv().await {
                Event::Control(Control::Result { .. }) => return Ok(()),
                Event::Control(Control::Error(e)) | Event::Closed(Some(e)) => return Err(ClientError::Remote(e)),
                Event::Closed(None) => return Err(MuxError::StreamClosed(rx.id()).into()),
                _ => {}
            }
        }
    }

    /// Reads a whole file from the guest within `bounds` (the stream is dropped as soon as the
    /// file is larger, or the time is up).
    pub async fn get_file(&self, path: &str, bounds: Bounds) -> Result<Vec<u8>, ClientError> {
        let (mut stream, _) = self.started(&Request::GetFile { path: path.into() }).await?;
        let max = bounds.max_bytes;
        let read = async {
            let mut out = Vec::new();
            loop {
                match stream.rx.recv().await {
                    Event::Data { bytes, .. } if out.len().saturating_add(bytes.len()) > max => {
                        return Err(ClientError::TooLarge { what: path.to_string(), max });
                    }
                    Event::Data { bytes, .. } => out.extend_from_slice(&bytes),
                    Event::Control(Control::Result { .. }) => return Ok(out),
                    Event::Control(Control::Error(e)) | Event::Closed(Some(e)) => return Err(ClientError::Remote(e)),
                    Event::Closed(None) => return Err(MuxError::StreamClosed(stream.id()).into()),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(bounds.deadline, read)
            .await
            .map_err(|_| ClientError::Deadline { what: format!("reading {path}"), after: bounds.deadline })?
    }
}

/// Performs the Firecracker vsock handshake over any byte stream that reaches den-vmm's vsock
/// Unix socket (directly, or forwarded): writes `CONNECT <port>\n` and reads the `OK <host
/// port>\n` reply, consuming nothing after it. Returns the host-side port. The VMM closes the
/// stream instead of answering when nothing listens on the guest port.
pub async fn vsock_connect<T>(io: &mut T, port: u32, timeout: Duration) -> Result<u32, ClientError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io_err = |source| ClientError::Connect { path: "vsock stream".into(), source };
    let exchange = async {
        io.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
        io.flush().await?;
        // Byte by byte: the agent protocol starts right after the newline.
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while line.len() < 64 && line.last() != Some(&b'\n') {
            if io.read(&mut b).await? == 0 {
                break;
            }
            line.push(b[0]);
        }
        Ok::<_, std::io::Error>(line)
    };
    let line = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => return Err(ClientError::Timeout(timeout)),
        Ok(Err(e)) => return Err(io_err(e)),
        Ok(Ok(line)) => line,
    };
    let reply = String::from_utf8_lossy(&line);
    reply.strip_prefix("OK ").and_then(|p| p.trim_end().parse().ok()).ok_or_else(|| {
        ClientError::Unexpected(format!(
            "vsock port {port}: the VMM answered {:?} instead of `OK <port>` (is the agent listening?)",
            reply.trim_end()
        ))
    })
}

/// A running exec: write stdin, read output events, resize, signal.
pub struct ExecSession {
    /// Sending half: stdin, resize, signals.
    pub tx: StreamSender,
    /// Receiving half: output and the exit.
    pub rx: StreamReceiver,
    /// Guest pid.
    pub pid: Option<u32>,
}

impl ExecSession {
    /// Sends bytes to stdin.
    pub async fn stdin(&self, bytes: Bytes) -> Result<(), ClientError> {
        Ok(self.tx.data(CHAN_STDIO, bytes).await?)
    }

    /// Closes stdin.
    pub fn close_stdin(&self) -> Result<(), ClientError> {
        Ok(self.tx.eof(CHAN_STDIO)?)
    }

    /// Resizes the TTY.
    pub fn resize(&self, size: TtySize) -> Result<(), ClientError> {
        Ok(self.tx.control(&Control::Resize(size))?)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) -> Result<(), ClientError> {
        Ok(self.tx.control(&Control::Signal { signal })?)
    }

    /// Feeds `stdin` (then closes it) while collecting output until the process exits, within
    /// `bounds`: more output, or a process still running at the deadline, is an error, and the
    /// stream is dropped (which ends the process).
    pub async fn run(self, stdin: Bytes, bounds: Bounds) -> Result<ExecOutput, ClientError> {
        let ExecSession { tx, mut rx, .. } = self;
        let feed = async {
            if !stdin.is_empty() {
                tx.data(CHAN_STDIO, stdin).await?;
            }
            tx.eof(CHAN_STDIO)
        };
        let collect = async {
            let mut out = ExecOutput { stdout: Vec::new(), stderr: Vec::new(), code: None, signal: None };
            let max = bounds.max_bytes;
            loop {
                match rx.recv().await {
                    Event::Data { bytes, .. } if out.stdout.len() + out.stderr.len() + bytes.len() > max => {
                        return Err(ClientError::TooLarge { what: "the process".into(), max });
                    }
                    Event::Data { chan: CHAN_STDERR, bytes } => out.stderr.extend_from_slice(&bytes),
                    Event::Data { bytes, .. } => out.stdout.extend_from_slice(&bytes),
                    Event::Control(Control::Exit { code, signal }) => {
                        out.code = code;
                        out.signal = signal;
                        return Ok(out);
                    }
                    Event::Control(Control::Error(e)) | Event::Closed(Some(e)) => return Err(ClientError::Remote(e)),
                    Event::Closed(None) => return Err(MuxError::StreamClosed(rx.id()).into()),
                    _ => {}
                }
            }
        };
        let both = async { tokio::join!(feed, collect) };
        let (fed, out) = tokio::time::timeout(bounds.deadline, both)
            .await
            .map_err(|_| ClientError::Deadline { what: "the process".into(), after: bounds.deadline })?;
        let out = out?;
        // A process may exit without reading all of stdin; that is not an error of the exec.
        if let Err(e) = fed {
            tracing::debug!(error = %e, "stdin not fully delivered");
        }
        Ok(out)
    }
}
