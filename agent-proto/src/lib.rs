//! Den's agent protocol, shared by the guest agent and every host component that talks to it.
//!
//! - [`frame`]: the wire format (12-byte header, bounded payload);
//! - [`msg`]: the JSON requests and control messages;
//! - [`mux`]: the multiplexer that runs many flow-controlled streams over one channel;
//! - [`client`]: the host-side client (`exec`, `forward`, files, info, ...).
//!
//! The protocol is documented for people in `docs/agent-protocol.md`.

pub mod client;
pub mod frame;
pub mod msg;
pub mod mux;

pub use client::{vsock_connect, AgentClient, Bounds, ClientError, ExecOutput, ExecSession};
pub use msg::{ExecRequest, ForwardTarget, Info, Request, TtySize};
pub use mux::{Event, MuxError, Role, Session};
