//! One session channel through the gateway, once it has started: to the guest's sshd (a
//! channel on the upstream connection, with the client's PTY, environment and agent-forwarding
//! requests replayed) or, for guests without sshd, to an agent exec (with a PTY when asked).
//! Client input goes through a bounded queue (the connection stops reading when a channel's
//! backend falls behind), output is written as the client's window allows, and the exit status
//! or signal comes back. Interactive sessions are recorded.

use super::record::Recorder;
use super::upstream::Upstream;
use bytes::Bytes;
use den_agent_proto::frame::{CHAN_STDERR, CHAN_STDIO};
use den_agent_proto::msg::Control;
use den_agent_proto::mux::{Event, StreamSender};
use den_agent_proto::{AgentClient, ExecRequest, TtySize};
use den_vms::Den;
use russh::server::Msg;
use russh::{client, ChannelId, ChannelMsg, ChannelWriteHalf, Pty, Sig};
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

/// Client input held per channel before the connection stops reading.
const INPUT_BUDGET: usize = 8 << 20;

/// A terminal the client asked for.
#[derive(Debug, Clone)]
pub(crate) struct PtyReq {
    /// `TERM`.
    pub term: String,
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
    /// Terminal modes, passed on to the guest's sshd.
    pub modes: Vec<(Pty, u32)>,
}

/// What the client set up before starting the session.
#[derive(Debug, Default)]
pub(crate) struct Setup {
    /// A PTY, if asked.
    pub pty: Option<PtyReq>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// `ssh -A`.
    pub agent_forward: bool,
}

/// What the session runs.
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// The login shell.
    Shell,
    /// A command line.
    Exec(String),
    /// A subsystem (`sftp`).
    Subsystem(String),
}

impl Start {
    /// The kind for the session log.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Start::Shell => "shell",
            Start::Exec(_) => "exec",
            Start::Subsystem(_) => "subsystem",
        }
    }

    /// The command or subsystem name.
    pub(crate) fn command(&self) -> &str {
        match self {
            Start::Shell => "",
            Start::Exec(c) | Start::Subsystem(c) => c,
        }
    }
}

/// Where the session runs.
pub(crate) enum Via<'a> {
    /// The guest's sshd.
    Upstream(&'a Upstream),
    /// Agent exec, as this guest account.
    Agent(&'a AgentClient, &'a str),
}

/// What the output pump needs besides the channel.
pub(crate) struct Ctx {
    /// The service (to end the session record).
    pub den: Arc<Den>,
    /// The client connection.
    pub client: russh::server::Handle,
    /// The client's channel.
    pub channel: ChannelId,
    /// The session record.
    pub session_id: String,
    /// The recording, for interactive sessions.
    pub recorder: Option<Arc<Recorder>>,
}

/// Where the client's input and controls go.
#[derive(Clone)]
enum Backend {
    Upstream(Arc<ChannelWriteHalf<client::Msg>>),
    Agent(StreamSender),
}

impl Backend {
    async fn data(&self, bytes: Bytes) -> bool {
        match self {
            Backend::Upstream(w) => w.data_bytes(bytes).await.is_ok(),
            Backend::Agent(tx) => tx.data(CHAN_STDIO, bytes).await.is_ok(),
        }
    }

    async fn eof(&self) {
        match self {
            Backend::Upstream(w) => drop(w.eof().await),
            Backend::Agent(tx) => drop(tx.eof(CHAN_STDIO)),
        }
    }

    async fn resize(&self, cols: u32, rows: u32) {
        match self {
            Backend::Upstream(w) => drop(w.window_change(cols, rows, 0, 0).await),
            Backend::Agent(tx) => drop(tx.control(&Control::Resize(tty_size(cols, rows)))),
        }
    }

    async fn signal(&self, sig: Sig) {
        match self {
            Backend::Upstream(w) => drop(w.signal(sig).await),
            Backend::Agent(tx) => {
                if let Some(n) = signal_number(&sig) {
                    drop(tx.control(&Control::Signal { signal: n }))
                }
            }
        }
    }

    async fn close(&self) {
        match self {
            Backend::Upstream(w) => drop(w.close().await),
            Backend::Agent(tx) => tx.close(None),
        }
    }
}

enum Input {
    Data(Bytes, OwnedSemaphorePermit),
    Eof,
}

/// A running session channel; its tasks end when it is dropped.
pub(crate) struct Live {
    backend: Backend,
    input: mpsc::UnboundedSender<Input>,
    budget: Arc<Semaphore>,
    recorder: Option<Arc<Recorder>>,
    tasks: Vec<AbortHandle>,
    /// The session record, ended on drop when the client went away first.
    record: (Arc<Den>, String),
}

impl Live {
    /// Client input; waits while the channel's queue is full. Input is not recorded (it holds
    /// what people type at password prompts); the output shows the commands as typed.
    pub(crate) async fn input(&self, bytes: &[u8]) {
        let n = bytes.len().clamp(1, INPUT_BUDGET) as u32;
        let Ok(permit) = self.budget.clone().acquire_many_owned(n).await else { return };
        let _ = self.input.send(Input::Data(Bytes::copy_from_slice(bytes), permit));
    }

    /// The client sent EOF.
    pub(crate) fn eof(&self) {
        let _ = self.input.send(Input::Eof);
    }

    /// The client's terminal changed size.
    pub(crate) async fn resize(&self, cols: u32, rows: u32) {
        if let Some(r) = &self.recorder {
            r.resize(cols, rows);
        }
        self.backend.resize(cols, rows).await;
    }

    /// The client sent a signal.
    pub(crate) async fn signal(&self, sig: Sig) {
        self.backend.signal(sig).await;
    }

    /// The client closed the channel.
    pub(crate) async fn close(self) {
        self.backend.close().await;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let (den, id) = &self.record;
        if let Err(e) = den.store.end_ssh_session(id, None) {
            tracing::warn!(%e, "ending an SSH session record");
        }
    }
}

/// Starts the session; `Err` is the line to show the client.
pub(crate) async fn start(
    ctx: Ctx,
    out: ChannelWriteHalf<Msg>,
    setup: Setup,
    what: Start,
    via: Via<'_>,
) -> Result<Live, String> {
    let recorder = ctx.recorder.clone();
    let record = (ctx.den.clone(), ctx.session_id.clone());
    let (backend, pump) = match via {
        Via::Upstream(up) => {
            let (backend, early, read) = start_upstream(up, &setup, &what).await?;
            (backend, tokio::spawn(pump_upstream(ctx, out, early, read)))
        }
        Via::Agent(agent, guest_user) => {
            let (backend, rx) = start_agent(agent, guest_user, &setup, &what).await?;
            (backend, tokio::spawn(pump_agent(ctx, out, rx)))
        }
    };
    let (input, rx) = mpsc::unbounded_channel();
    let feeder = tokio::spawn(feed(backend.clone(), rx));
    Ok(Live {
        backend,
        input,
        budget: Arc::new(Semaphore::new(INPUT_BUDGET)),
        recorder,
        tasks: vec![pump.abort_handle(), feeder.abort_handle()],
        record,
    })
}

/// Passes client input to the backend in order.
async fn feed(backend: Backend, mut rx: mpsc::UnboundedReceiver<Input>) {
    while let Some(i) = rx.recv().await {
        match i {
            Input::Data(bytes, _permit) => {
                if !backend.data(bytes).await {
                    return;
                }
            }
            Input::Eof => backend.eof().await,
        }
    }
}

/// Opens the upstream channel and replays the client's requests; returns what arrived before
/// the final reply.
async fn start_upstream(
    up: &Upstream,
    setup: &Setup,
    what: &Start,
) -> Result<(Backend, Vec<ChannelMsg>, russh::ChannelReadHalf), String> {
    let (mut read, write) = up.session().await.map_err(|e| format!("den: {e}"))?.split();
    let mut early = Vec::new();
    let fail = |e: russh::Error| format!("den: guest sshd: {e}");
    if let Some(p) = &setup.pty {
        write.request_pty(true, &p.term, p.cols, p.rows, 0, 0, &p.modes).await.map_err(fail)?;
        if !reply(&mut read, &mut early).await {
            return Err("den: the guest's sshd refused a terminal".into());
        }
    }
    for (k, v) in &setup.env {
        write.set_env(false, k.as_str(), v.as_str()).await.map_err(fail)?;
    }
    if setup.agent_forward {
        write.agent_forward(false).await.map_err(fail)?;
    }
    match what {
        Start::Shell => write.request_shell(true).await,
        Start::Exec(c) => write.exec(true, c.as_bytes()).await,
        Start::Subsystem(s) => write.request_subsystem(true, s.as_str()).await,
    }
    .map_err(fail)?;
    if !reply(&mut read, &mut early).await {
        return Err(format!("den: the guest's sshd refused to start the {}", what.kind()));
    }
    Ok((Backend::Upstream(Arc::new(write)), early, read))
}

/// Most messages a guest's sshd may send before it answers a request, and how long it may
/// take to answer: what comes early is kept in memory until then.
const MAX_EARLY: usize = 256;
const REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits for a request's reply, keeping other messages for later (within [`MAX_EARLY`] and
/// [`REPLY_WAIT`]; past them the request counts as refused).
async fn reply(read: &mut russh::ChannelReadHalf, early: &mut Vec<ChannelMsg>) -> bool {
    let wait = async {
        loop {
            match read.wait().await {
                Some(ChannelMsg::Success) => return true,
                Some(ChannelMsg::Failure) | None => return false,
                Some(ChannelMsg::Close) => {
                    early.push(ChannelMsg::Close);
                    return false;
                }
                Some(_) if early.len() >= MAX_EARLY => return false,
                Some(m) => early.push(m),
            }
        }
    };
    tokio::time::timeout(REPLY_WAIT, wait).await.unwrap_or(false)
}

/// Copies the upstream channel's output, status and end to the client.
async fn pump_upstream(ctx: Ctx, out: ChannelWriteHalf<Msg>, early: Vec<ChannelMsg>, mut read: russh::ChannelReadHalf) {
    let mut early = early.into_iter();
    loop {
        let msg = match early.next() {
            Some(m) => m,
            None => match read.wait().await {
                Some(m) => m,
                None => break,
            },
        };
        let sent = match msg {
            ChannelMsg::Data { data } => send(&ctx, &out, None, data).await,
            ChannelMsg::ExtendedData { data, ext } => send(&ctx, &out, Some(ext), data).await,
            ChannelMsg::Eof => out.eof().await.is_ok(),
            ChannelMsg::ExitStatus { exit_status } => exited(&ctx, exit_status).await,
            ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag } => {
                ctx.ended(Some(128));
                let c = &ctx.client;
                c.exit_signal_request(ctx.channel, signal_name, core_dumped, error_message, lang_tag).await.is_ok()
            }
            ChannelMsg::Close => false,
            _ => true,
        };
        if !sent {
            break;
        }
    }
    finish(&ctx, &out).await;
}

/// Starts an agent exec for the session.
async fn start_agent(
    agent: &AgentClient,
    guest_user: &str,
    setup: &Setup,
    what: &Start,
) -> Result<(Backend, den_agent_proto::mux::StreamReceiver), String> {
    let argv: Vec<String> = match what {
        Start::Shell => vec!["/bin/sh".into(), "-c".into(), LOGIN_SHELL.into()],
        Start::Exec(c) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
        Start::Subsystem(s) if s == "sftp" => vec!["/bin/sh".into(), "-c".into(), SFTP_SERVER.into()],
        Start::Subsystem(s) => return Err(format!("den: subsystem `{s}` is not available in this VM")),
    };
    let mut env: std::collections::BTreeMap<String, String> = setup.env.iter().cloned().collect();
    if let Some(p) = &setup.pty {
        env.insert("TERM".into(), p.term.clone());
    }
    let req = ExecRequest {
        argv,
        env,
        cwd: None,
        user: Some(guest_user.to_string()),
        tty: setup.pty.as_ref().map(|p| tty_size(p.cols, p.rows)),
    };
    let session = agent.exec(req).await.map_err(|e| format!("den: {e}"))?;
    Ok((Backend::Agent(session.tx), session.rx))
}

/// Runs the account's login shell from `/etc/passwd` (busybox guests included).
const LOGIN_SHELL: &str =
    r#"s=$(sed -n "s/^$USER:.*:\([^:]*\)$/\1/p" /etc/passwd 2>/dev/null); [ -x "$s" ] || s=/bin/sh; exec "$s" -l"#;

/// Finds the guest's sftp-server.
const SFTP_SERVER: &str = "for p in /usr/lib/openssh/sftp-server /usr/libexec/sftp-server /usr/lib/sftp-server; do \
     [ -x $p ] && exec $p; done; echo 'den: this VM has no sftp-server' >&2; exit 127";

/// Copies the agent exec's output and exit to the client.
async fn pump_agent(ctx: Ctx, out: ChannelWriteHalf<Msg>, mut rx: den_agent_proto::mux::StreamReceiver) {
    loop {
        let sent = match rx.recv().await {
            Event::Data { chan: CHAN_STDERR, bytes } => send(&ctx, &out, Some(1), bytes).await,
            Event::Data { bytes, .. } => send(&ctx, &out, None, bytes).await,
            Event::Control(Control::Exit { code, signal }) => {
                exited(&ctx, code.map(|c| c as u32).unwrap_or_else(|| 128 + signal.unwrap_or(0) as u32)).await;
                break;
            }
            Event::Control(Control::Error(e)) | Event::Closed(Some(e)) => {
                let _ = out.extended_data_bytes(1, Bytes::from(format!("den: {}\r\n", e.message))).await;
                exited(&ctx, 255).await;
                break;
            }
            Event::Closed(None) => false,
            _ => true,
        };
        if !sent {
            break;
        }
    }
    let _ = out.eof().await;
    finish(&ctx, &out).await;
}

/// Writes output to the client (standard output, or extended data `ext`), recording standard
/// output; false when the client's channel is gone.
async fn send(ctx: &Ctx, out: &ChannelWriteHalf<Msg>, ext: Option<u32>, bytes: Bytes) -> bool {
    match ext {
        Some(ext) => out.extended_data_bytes(ext, bytes).await.is_ok(),
        None => {
            if let Some(r) = &ctx.recorder {
                r.output(&bytes);
            }
            out.data_bytes(bytes).await.is_ok()
        }
    }
}

/// Closes the client's channel and ends the session record.
async fn finish(ctx: &Ctx, out: &ChannelWriteHalf<Msg>) {
    ctx.ended(None);
    let _ = out.close().await;
}

/// The session's exit status: recorded first (the client's close drops the session, and this
/// task with it), then sent.
async fn exited(ctx: &Ctx, status: u32) -> bool {
    ctx.ended(Some(i64::from(status)));
    ctx.client.exit_status_request(ctx.channel, status).await.is_ok()
}

impl Ctx {
    /// Ends the session record (the first end counts).
    fn ended(&self, exit: Option<i64>) {
        if let Err(e) = self.den.store.end_ssh_session(&self.session_id, exit) {
            tracing::warn!(%e, "ending an SSH session record");
        }
    }
}

fn tty_size(cols: u32, rows: u32) -> TtySize {
    TtySize { cols: cols.clamp(1, u32::from(u16::MAX)) as u16, rows: rows.clamp(1, u32::from(u16::MAX)) as u16 }
}

/// Linux signal numbers of the SSH signal names.
fn signal_number(sig: &Sig) -> Option<i32> {
    Some(match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_signals_and_sizes() {
        assert_eq!(signal_number(&Sig::INT), Some(2));
        assert_eq!(signal_number(&Sig::Custom("WINCH".into())), None);
        assert_eq!(tty_size(0, 100_000), TtySize { cols: 1, rows: u16::MAX });
        assert_eq!(Start::Exec("ls".into()).kind(), "exec");
    }
}
