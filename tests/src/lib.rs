//! Harness for Den's end-to-end tests: builds guest images through `den-images`, boots them under
//! QEMU (TCG on hosts without usable KVM), and connects to the real agent.
//!
//! Every guest is killed when its [`Guest`] is dropped, and also when the thread that started it
//! ends (`PR_SET_PDEATHSIG`), so no VM outlives its test.

// Test support: a step that cannot be taken fails the test that asked for it, so helpers may
// panic with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod dend;
pub mod docker;
pub mod guest;
pub mod images;
pub mod lab;
pub mod lab_dev;
pub mod lpk;
pub mod netns;
pub mod ssh;
pub mod system;

pub use guest::{Guest, GuestOptions};

/// What the tests take of a guest's output through the agent, and how long they wait: roomy
/// (the benches move hundreds of MiB), but bounded like every other reader of guest output.
pub const EXEC: den_agent_proto::Bounds = den_agent_proto::Bounds::new(1 << 30, std::time::Duration::from_secs(900));
