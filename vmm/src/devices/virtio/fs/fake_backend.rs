//! A vhost-user backend that agrees to everything and serves nothing, for the fuzz target and
//! unit tests that play the guest's side of [`super::Fs`] without a `virtiofsd`: it answers the
//! requests that need an answer (features, ring bases, acknowledgements) and drops the rest,
//! descriptors included. The real backend is exercised by `fs/tests.rs` and the KVM lab.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

const GET_FEATURES: u32 = 1;
const GET_VRING_BASE: u32 = 11;
const GET_PROTOCOL_FEATURES: u32 = 15;
const REPLY: u32 = 0x4;
const NEED_REPLY: u32 = 0x8;
/// VERSION_1, PROTOCOL_FEATURES, indirect descriptors, event index.
const FEATURES: u64 = (1 << 32) | (1 << 30) | (1 << 29) | (1 << 28);
/// REPLY_ACK.
const PROTOCOL_FEATURES: u64 = 0x8;

/// Starts the backend on a thread of its own (it ends when the frontend hangs up) and returns
/// the frontend's end of its socket.
pub fn spawn() -> std::io::Result<UnixStream> {
    let (ours, mut theirs) = UnixStream::pair()?;
    std::thread::Builder::new().name("fake vhost-user backend".into()).spawn(move || while serve(&mut theirs) {})?;
    Ok(ours)
}

/// Answers one request; false when the frontend is gone.
fn serve(s: &mut UnixStream) -> bool {
    let mut hdr = [0u8; 12];
    if s.read_exact(&mut hdr).is_err() {
        return false;
    }
    let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
    let (request, flags, size) = (word(0), word(4), word(8));
    // Descriptors sent along are closed by the kernel when the bytes are read without them.
    let mut body = vec![0u8; size.min(4096) as usize];
    if s.read_exact(&mut body).is_err() {
        return false;
    }
    let reply: Option<Vec<u8>> = match request {
        GET_FEATURES => Some(FEATURES.to_le_bytes().to_vec()),
        GET_PROTOCOL_FEATURES => Some(PROTOCOL_FEATURES.to_le_bytes().to_vec()),
        GET_VRING_BASE => Some([body.get(..4).unwrap_or(&[0; 4]), &[0u8; 4]].concat()),
        _ if flags & NEED_REPLY != 0 => Some(0u64.to_le_bytes().to_vec()),
        _ => None,
    };
    let Some(reply) = reply else { return true };
    let mut msg = Vec::with_capacity(12 + reply.len());
    msg.extend_from_slice(&request.to_le_bytes());
    msg.extend_from_slice(&(0x1 | REPLY).to_le_bytes());
    msg.extend_from_slice(&(reply.len() as u32).to_le_bytes());
    msg.extend_from_slice(&reply);
    s.write_all(&msg).is_ok()
}
