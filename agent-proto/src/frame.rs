//! Wire frames: a fixed 12-byte header followed by at most [`MAX_PAYLOAD`] bytes.
//!
//! ```text
//! 0      4         8      9      10       12
//! | len  | stream  | kind | chan | flags  | payload (len bytes) ...
//! ```
//! All integers are big-endian. `flags` is reserved and must be zero.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 12;
/// Largest payload a frame may carry; larger frames are refused.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// What a frame means. Unknown kinds are refused per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Version handshake, stream 0, JSON [`crate::msg::Hello`].
    Hello = 1,
    /// Opens a stream; JSON [`crate::msg::Request`].
    Open = 2,
    /// Stream bytes on channel `chan`.
    Data = 3,
    /// Half-close of channel `chan`.
    Eof = 4,
    /// JSON [`crate::msg::Control`] message on an open stream.
    Control = 5,
    /// Flow-control credit: payload is a big-endian u32 byte count.
    Credit = 6,
    /// The stream is finished in both directions (optional JSON reason).
    Close = 7,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::Open,
            3 => Kind::Data,
            4 => Kind::Eof,
            5 => Kind::Control,
            6 => Kind::Credit,
            7 => Kind::Close,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Stream the frame belongs to (0 is the session itself).
    pub stream: u32,
    /// Frame kind.
    pub kind: Kind,
    /// Channel within the stream: [`CHAN_STDIO`] or [`CHAN_STDERR`].
    pub chan: u8,
    /// Payload bytes.
    pub payload: Bytes,
}

/// Channel 0: stdin towards the guest, stdout (or the forwarded stream) towards the host.
pub const CHAN_STDIO: u8 = 0;
/// Channel 2: stderr of an exec.
pub const CHAN_STDERR: u8 = 2;

impl Frame {
    /// Builds a frame.
    pub fn new(stream: u32, kind: Kind, chan: u8, payload: impl Into<Bytes>) -> Frame {
        Frame { stream, kind, chan, payload: payload.into() }
    }

    /// Builds a frame whose payload is `value` encoded as JSON.
    pub fn json<T: serde::Serialize>(stream: u32, kind: Kind, value: &T) -> Frame {
        // Serializing our own plain data types cannot fail; fall back to `null` to stay total.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Frame::new(stream, kind, 0, body)
    }
}

/// A frame that could not be accepted; the stream it names can be failed while the session goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    /// The header announced more than [`MAX_PAYLOAD`] bytes (they were skipped).
    #[error("frame on stream {stream} announces {len} bytes, more than the {MAX_PAYLOAD}-byte limit")]
    Oversized {
        /// Stream named by the frame.
        stream: u32,
        /// Announced payload length.
        len: u32,
    },
    /// The kind byte is not one this version knows.
    #[error("frame on stream {stream} has unknown kind {kind}")]
    UnknownKind {
        /// Stream named by the frame.
        stream: u32,
        /// The kind byte.
        kind: u8,
    },
    /// Reserved flags were set.
    #[error("frame on stream {stream} sets reserved flags {flags:#x}")]
    ReservedFlags {
        /// Stream named by the frame.
        stream: u32,
        /// The flags.
        flags: u16,
    },
}

impl BadFrame {
    /// The stream the bad frame named.
    pub fn stream(&self) -> u32 {
        match self {
            BadFrame::Oversized { stream, .. }
            | BadFrame::UnknownKind { stream, .. }
            | BadFrame::ReservedFlags { stream, .. } => *stream,
        }
    }
}

/// Decodes and encodes [`Frame`]s; oversized frames are skipped without buffering them.
#[derive(Debug, Default)]
pub struct FrameCodec {
    /// Bytes of an oversized payload still to be discarded.
    skip: usize,
}

impl Decoder for FrameCodec {
    /// A bad frame is an item, not a codec error, so that the session goes on after it.
    type Item = Result<Frame, BadFrame>;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> std::io::Result<Option<Self::Item>> {
        if self.skip > 0 {
            let n = self.skip.min(src.len());
            src.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        if src.len() < HEADER_LEN {
            src.reserve(HEADER_LEN);
            return Ok(None);
        }
        let mut h = &src[..HEADER_LEN];
        let len = h.get_u32();
        let stream = h.get_u32();
        let kind = h.get_u8();
        let chan = h.get_u8();
        let flags = h.get_u16();
        if len as usize > MAX_PAYLOAD {
            src.advance(HEADER_LEN);
            self.skip = len as usize;
            return Ok(Some(Err(BadFrame::Oversized { stream, len })));
        }
        let total = HEADER_LEN + len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len as usize).freeze();
        if flags != 0 {
            return Ok(Some(Err(BadFrame::ReservedFlags { stream, flags })));
        }
        let Some(kind) = Kind::from_u8(kind) else {
            return Ok(Some(Err(BadFrame::UnknownKind { stream, kind })));
        };
        Ok(Some(Ok(Frame { stream, kind, chan, payload })))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, f: Frame, dst: &mut BytesMut) -> std::io::Result<()> {
        if f.payload.len() > MAX_PAYLOAD {
            let e = BadFrame::Oversized { stream: f.stream, len: f.payload.len() as u32 };
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
        }
        dst.reserve(HEADER_LEN + f.payload.len());
        dst.put_u32(f.payload.len() as u32);
        dst.put_u32(f.stream);
        dst.put_u8(f.kind as u8);
        dst.put_u8(f.chan);
        dst.put_u16(0);
        dst.extend_from_slice(&f.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(f: Frame) -> BytesMut {
        let mut b = BytesMut::new();
        FrameCodec::default().encode(f, &mut b).unwrap();
        b
    }

    #[test]
    fn round_trip_in_pieces() {
        let f = Frame::new(7, Kind::Data, CHAN_STDERR, &b"hello"[..]);
        let all = encode(f.clone());
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for (i, byte) in all.iter().enumerate() {
            buf.put_u8(*byte);
            let got = codec.decode(&mut buf).unwrap();
            if i + 1 < all.len() {
                assert!(got.is_none());
            } else {
                assert_eq!(got, Some(Ok(f.clone())));
            }
        }
    }

    #[test]
    fn oversized_frame_is_skipped_and_next_frame_decodes() {
        let mut buf = BytesMut::new();
        buf.put_u32((MAX_PAYLOAD + 10) as u32);
        buf.put_u32(3);
        buf.put_u8(Kind::Data as u8);
        buf.put_u8(0);
        buf.put_u16(0);
        buf.extend_from_slice(&vec![0xAB; MAX_PAYLOAD + 10]);
        let next = Frame::new(5, Kind::Eof, 0, Bytes::new());
        buf.extend_from_slice(&encode(next.clone()));
        let mut codec = FrameCodec::default();
        let got = codec.decode(&mut buf).unwrap();
        assert!(matches!(got, Some(Err(BadFrame::Oversized { stream: 3, .. }))));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Ok(next)));
    }

    #[test]
    fn unknown_kind_and_flags_are_refused_but_consumed() {
        let mut buf = encode(Frame::new(9, Kind::Data, 0, &b"x"[..]));
        buf[8] = 200;
        let mut bad_flags = encode(Frame::new(4, Kind::Data, 0, &b"y"[..]));
        bad_flags[11] = 1;
        buf.extend_from_slice(&bad_flags);
        let mut codec = FrameCodec::default();
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Err(BadFrame::UnknownKind { stream: 9, kind: 200 })))));
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Err(BadFrame::ReservedFlags { stream: 4, flags: 1 })))));
        assert!(buf.is_empty());
    }
}
