//! The wire protocol between clients and the daemon (docs/daemon.md): each
//! frame is a 4-byte big-endian length, then that many bytes of one
//! MessagePack map whose `type` says what it is. Fields are named, so a newer
//! peer can add fields that an older one ignores.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use oxiida_abi::frame;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Bumped when a change would make an older peer misread a frame.
pub const PROTOCOL_VERSION: u32 = 1;
/// Larger frames are refused before they are read: a bad length must not
/// make the daemon allocate gigabytes.
pub const MAX_FRAME: usize = 16 << 20;

/// What a client asks. The first request on a connection must be `Hello`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Hello {
        protocol: u32,
        client: String,
    },
    Status,
    Submit(Submit),
    List,
    Show {
        id: u64,
    },
    Kill {
        id: u64,
        /// After `killing`, send `finished` once the workflow has ended.
        #[serde(default)]
        wait: bool,
    },
    /// Stops the daemon; running workflows are cancelled and recorded as interrupted.
    Shutdown,
}

/// The request names, for telling "unknown request" from "bad request".
const REQUESTS: [&str; 7] = ["hello", "status", "submit", "list", "show", "kill", "shutdown"];

/// A plugin for one workflow: a library path the client resolved (the
/// daemon's working directory and search path are not the client's), and
/// the bytes its session is opened with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PluginSpec {
    pub path: String,
    #[serde(default)]
    pub config: ByteBuf,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Submit {
    /// What diagnostics and listings call the workflow (its file name).
    pub name: String,
    pub source: String,
    #[serde(default)]
    pub plugins: Vec<PluginSpec>,
    /// Shell tasks and plugins see this as their working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Keep the connection and stream `output` frames, then `finished`.
    #[serde(default)]
    pub wait: bool,
    #[serde(default)]
    pub max_tasks: Option<u32>,
    #[serde(default)]
    pub max_fanout: Option<u32>,
    /// Per-workflow data for a plugin, keyed by plugin name; extends that
    /// plugin's session config (e.g. functions pickled by a Python client).
    #[serde(default)]
    pub extra: BTreeMap<String, ByteBuf>,
}

/// What the daemon answers. Any reply may be preceded by `notice` frames.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        protocol: u32,
        server: String,
        pid: u32,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// Something the user should know, printed by clients before the reply.
    Notice {
        message: String,
    },
    Status(Status),
    Submitted {
        id: u64,
    },
    Output {
        id: u64,
        text: String,
    },
    Finished {
        id: u64,
        state: String,
        exit_code: Option<i32>,
        error: Option<String>,
        /// The workflow's top-level variables when it succeeded: one
        /// MessagePack map, encoded as foreign-call values are.
        #[serde(default)]
        variables: Option<ByteBuf>,
    },
    Workflows {
        workflows: Vec<Summary>,
    },
    Workflow(Record),
    Killing {
        id: u64,
    },
    ShuttingDown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not a frame: too long, cut short, or not MessagePack.
    BadFrame,
    UnknownRequest,
    /// A known request with missing or mistyped fields.
    BadRequest,
    /// Protocol versions differ, or a request came before `hello`.
    Handshake,
    NotFound,
    /// The request was understood but cannot be done now.
    Refused,
    Internal,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    pub started_ms: i64,
    pub socket: String,
    pub log: String,
    pub database: String,
    /// Given to `daemon start --plugin`: every workflow gets a session of each.
    pub default_plugins: Vec<String>,
    /// Every plugin library loaded so far, "name (path)".
    pub loaded_plugins: Vec<String>,
    /// Workflows not finished: `running`, or `queued` for a slot.
    pub running: Vec<Summary>,
    /// The limits the daemon was started with (absent from older daemons).
    #[serde(default)]
    pub limits: Option<StatusLimits>,
}

/// `daemon start --memory-limit ... --output-limit ... --max-running ...
/// --idle-timeout ...`, as the daemon applies them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusLimits {
    /// Bytes of address space per runner; `None`: no limit.
    pub memory_limit: Option<u64>,
    /// Bytes of output kept per workflow (its first and last halves).
    pub output_limit: u64,
    /// As asked with `--max-running`.
    pub max_running: u64,
    /// As applied: capped by the open-file limit.
    pub max_running_effective: u64,
    pub idle_timeout_secs: u64,
}

/// A workflow in a listing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub id: u64,
    pub name: String,
    pub state: String,
    pub exit_code: Option<i32>,
    pub submitted_ms: i64,
    pub finished_ms: Option<i64>,
}

/// Everything recorded about a workflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub name: String,
    pub source: String,
    pub plugins: Vec<String>,
    pub cwd: Option<String>,
    pub state: String,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub submitted_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// The printed lines, each ending in a newline.
    pub output: String,
}

/// A body that is not a request the daemon can serve; the framing is
/// intact, so the connection can go on.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
}

/// A reply this client cannot read.
#[derive(Debug, thiserror::Error)]
#[error("the daemon sent a reply this client cannot read: {0}")]
pub struct ReplyError(#[from] rmp_serde::decode::Error);

/// One message as a frame: its MessagePack body behind the one framing,
/// `oxiida_abi::frame`.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let body = rmp_serde::to_vec_named(message).expect("protocol types always serialize");
    frame::encode(&body)
}

/// Decodes a request body, telling apart unknown requests, known requests
/// with bad fields, and bytes that are not a request at all.
pub fn decode_request(body: &[u8]) -> Result<Request, RequestError> {
    #[derive(Deserialize)]
    struct Tagged {
        #[serde(rename = "type")]
        kind: String,
    }
    rmp_serde::from_slice::<Request>(body).map_err(|e| {
        let (kind, message) = match rmp_serde::from_slice::<Tagged>(body) {
            Ok(t) if !REQUESTS.contains(&t.kind.as_str()) => (ErrorKind::UnknownRequest, format!("unknown request `{}`", t.kind)),
            Ok(t) => (ErrorKind::BadRequest, format!("bad `{}` request: {e}", t.kind)),
            Err(_) => (ErrorKind::BadFrame, format!("the frame is not a MessagePack map with a `type`: {e}")),
        };
        RequestError { kind, message }
    })
}

pub fn decode_reply(body: &[u8]) -> Result<Reply, ReplyError> {
    Ok(rmp_serde::from_slice(body)?)
}

/// Why a frame's header is refused: its body would be over [`MAX_FRAME`].
pub fn frame_len(header: [u8; frame::HEADER_LEN]) -> std::io::Result<usize> {
    frame::body_len(header, MAX_FRAME)
}

/// Blocking read of one frame's body (clients); `None` at a clean end.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    frame::read(r, MAX_FRAME)
}

pub fn write_frame<T: Serialize>(w: &mut impl Write, message: &T) -> std::io::Result<()> {
    w.write_all(&encode(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[4..]
    }

    #[test]
    fn requests_round_trip_with_named_fields() {
        let submit = Request::Submit(Submit { name: "wf.ox".into(), source: "print 1;".into(), wait: true, ..Submit::default() });
        let frame = encode(&submit);
        assert_eq!(frame_len(frame[..4].try_into().unwrap()).unwrap(), frame.len() - 4);
        let Request::Submit(back) = decode_request(body(&frame)).unwrap() else { panic!("not a submit") };
        assert_eq!((back.name.as_str(), back.wait), ("wf.ox", true));
        // Old clients omit optional fields.
        let minimal = rmp_serde::to_vec_named(&shapes::Minimal { kind: "submit", name: "a", source: "b" }).unwrap();
        assert!(matches!(decode_request(&minimal), Ok(Request::Submit(_))));
    }

    #[test]
    fn bad_bodies_are_told_apart() {
        let unknown = rmp_serde::to_vec_named(&shapes::Tag { kind: "frobnicate" }).unwrap();
        assert_eq!(decode_request(&unknown).unwrap_err().kind, ErrorKind::UnknownRequest);
        let bad = rmp_serde::to_vec_named(&shapes::Tag { kind: "show" }).unwrap();
        assert_eq!(decode_request(&bad).unwrap_err().kind, ErrorKind::BadRequest);
        assert_eq!(decode_request(b"\xc1garbage").unwrap_err().kind, ErrorKind::BadFrame);
        assert!(frame_len((MAX_FRAME as u32 + 1).to_be_bytes()).is_err());
    }

    mod shapes {
        #[derive(serde::Serialize)]
        pub struct Tag {
            #[serde(rename = "type")]
            pub kind: &'static str,
        }
        #[derive(serde::Serialize)]
        pub struct Minimal {
            #[serde(rename = "type")]
            pub kind: &'static str,
            pub name: &'static str,
            pub source: &'static str,
        }
    }
}
