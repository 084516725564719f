//! The one framing of every byte stream oxiida speaks over: the daemon's
//! socket and the worker pipes of process plugins. A frame is a 4-byte
//! big-endian length, then that many bytes of body. An async reader uses
//! `tokio_util::codec::LengthDelimitedCodec` with the same settings
//! ([`HEADER_LEN`], big-endian, a maximum); blocking code uses [`read`] and
//! [`write`] here.

use std::io::{self, Read, Write};

/// The length prefix's size in bytes.
pub const HEADER_LEN: usize = 4;

/// The header announcing a body of `len` bytes.
///
/// # Panics
/// When `len` does not fit in 32 bits (4 GiB): callers bound their bodies
/// far below that.
pub fn header(len: usize) -> [u8; HEADER_LEN] {
    u32::try_from(len).expect("a frame body under 4 GiB").to_be_bytes()
}

/// The body length a header announces, refused when over `max`.
pub fn body_len(header: [u8; HEADER_LEN], max: usize) -> io::Result<usize> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {len} bytes is larger than the limit of {max}")));
    }
    Ok(len)
}

/// Writes one frame: header and body, in one write when they are small.
pub fn write(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&header(body.len()));
    frame.extend_from_slice(body);
    w.write_all(&frame)
}

/// One frame as bytes, header included (for writers that batch).
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&header(body.len()));
    frame.extend_from_slice(body);
    frame
}

/// Reads one frame's body; `None` at a clean end of stream (before a header).
pub fn read(r: &mut impl Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER_LEN];
    match r.read_exact(&mut header) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let len = body_len(header, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut bytes = Vec::new();
        super::write(&mut bytes, b"hello").unwrap();
        super::write(&mut bytes, b"").unwrap();
        assert_eq!(&bytes[..4], &[0, 0, 0, 5]);
        let mut r = &bytes[..];
        assert_eq!(super::read(&mut r, 10).unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(super::read(&mut r, 10).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(super::read(&mut r, 10).unwrap(), None);
        let mut r = &bytes[..];
        assert!(super::read(&mut r, 4).unwrap_err().to_string().contains("larger than the limit of 4"));
    }
}
