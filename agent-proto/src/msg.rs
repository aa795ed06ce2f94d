//! JSON messages carried by `Hello`, `Open`, `Control` and `Close` frames.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Protocol version; a peer with a different major version is refused.
pub const PROTOCOL_VERSION: u32 = 1;
/// Marker that starts every hello, so a host can tell an agent from other bytes on the channel.
pub const PROTOCOL_NAME: &str = "den-agent";

/// Exchanged once per session: the host sends it first, the agent answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Always [`PROTOCOL_NAME`].
    pub proto: String,
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// Free-form software name and version of the sender.
    pub software: String,
}

impl Hello {
    /// This side's hello.
    pub fn ours(software: &str) -> Hello {
        Hello { proto: PROTOCOL_NAME.into(), version: PROTOCOL_VERSION, software: software.into() }
    }
}

/// Terminal size of a TTY exec.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TtySize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// Runs a program in the guest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// Extra environment, added to a minimal default (`PATH`, `HOME`, `USER`, `TERM` with a TTY).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the user's home, else `/`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// User name or numeric uid to run as (default root).
    #[serde(default)]
    pub user: Option<String>,
    /// Allocate a pseudo-terminal of this size; stdout and stderr are then one stream.
    #[serde(default)]
    pub tty: Option<TtySize>,
}

/// Where a port forward connects inside the guest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ForwardTarget {
    /// A TCP endpoint, usually `127.0.0.1:<port>`.
    Tcp {
        /// Host name or address inside the guest.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A Unix stream socket.
    Unix {
        /// Socket path inside the guest.
        path: String,
    },
}

/// What an `Open` frame asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Run a program; stdio is streamed, the end is a [`Control::Exit`].
    Exec(ExecRequest),
    /// Splice the stream to a guest endpoint.
    Forward {
        /// Where to connect.
        target: ForwardTarget,
    },
    /// Write a file from the stream's bytes (written to a temporary name, renamed on EOF).
    PutFile {
        /// Absolute path in the guest.
        path: String,
        /// Permission bits.
        #[serde(default = "default_mode")]
        mode: u32,
    },
    /// Stream a file's bytes to the host.
    GetFile {
        /// Absolute path in the guest.
        path: String,
    },
    /// Uptime, memory, load and addresses.
    Info,
    /// Set the guest's wall clock.
    SetTime {
        /// Nanoseconds since the Unix epoch.
        unix_nanos: u64,
    },
    /// Replace `~user/.ssh/authorized_keys`.
    SetAuthorizedKeys {
        /// User name.
        user: String,
        /// One OpenSSH public key per entry.
        keys: Vec<String>,
    },
    /// Power off or reboot the guest cleanly.
    Shutdown {
        /// Reboot instead of powering off.
        #[serde(default)]
        reboot: bool,
    },
}

fn default_mode() -> u32 {
    0o644
}

/// Messages exchanged on an open stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// The request was accepted and the stream is live (exec started, forward connected, ...).
    Started {
        /// Guest pid of an exec.
        #[serde(default)]
        pid: Option<u32>,
    },
    /// Host to guest: new terminal size.
    Resize(TtySize),
    /// Host to guest: deliver a signal to the exec'd process (number, as in `kill -l`).
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// Guest to host: the exec'd process ended.
    Exit {
        /// Exit code when it exited.
        code: Option<i32>,
        /// Signal number when it was killed.
        signal: Option<i32>,
    },
    /// Guest to host: the answer of a one-shot request.
    Result {
        /// Request-specific JSON (e.g. [`Info`]).
        value: serde_json::Value,
    },
    /// The request failed; the stream is closed after this.
    Error(ErrorReply),
}

/// A failure reported to the peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// Stable machine-readable code, e.g. `not_found`, `bad_request`, `protocol`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl ErrorReply {
    /// Builds an error reply.
    pub fn new(code: &str, message: impl Into<String>) -> ErrorReply {
        ErrorReply { code: code.into(), message: message.into() }
    }
}

/// Answer of [`Request::Info`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Info {
    /// Agent software version.
    pub agent_version: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Seconds since boot.
    pub uptime_secs: f64,
    /// Load averages (1, 5, 15 minutes).
    pub load: [f64; 3],
    /// Total memory in KiB.
    pub mem_total_kib: u64,
    /// Available memory in KiB.
    pub mem_available_kib: u64,
    /// Interface name to its addresses (CIDR notation).
    pub addresses: BTreeMap<String, Vec<String>>,
    /// Whether the agent runs as PID 1 (init of a microVM) or as a service.
    pub pid1: bool,
}
