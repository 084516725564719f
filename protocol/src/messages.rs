//! The wire protocol between clients and the daemon (docs/daemon.md): each
//! frame is a 4-byte big-endian length, then that many bytes of one
//! MessagePack map whose `type` says what it is. Fields are named, so a newer
//! peer can add fields that an older one ignores.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use oxiida_abi::frame;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Bumped when a change would make an older peer misread a frame. 2: a
/// field too big for one frame comes ahead of its reply in `part` frames,
/// and one printed value may span several `output` frames (`more`); a
/// version-1 client would have taken such a reply for an empty field.
pub const PROTOCOL_VERSION: u32 = 2;
/// Larger frames are refused before they are read: a bad length must not
/// make the daemon allocate gigabytes.
pub const MAX_FRAME: usize = 16 << 20;
/// The most bytes of text or data one `output` or `part` frame carries:
/// anything larger is sent in pieces, so no frame nears [`MAX_FRAME`].
pub const CHUNK: usize = 1 << 20;
/// The most workflows one `list` answers with.
pub const LIST_MAX: u32 = 10_000;
/// How many workflows a `list` without a `limit` answers with.
pub const LIST_DEFAULT: u32 = 100;

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
    List(List),
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
    /// Runs an `interrupted` or `failed` workflow again as a new one, each
    /// task with a successful record taking its recorded result
    /// (docs/durable.md). `source`, when given, must be the recorded
    /// source byte for byte (the client's file as it is now): the daemon
    /// refuses otherwise. Answered as `submit` is (`submitted`, then with
    /// `wait` the output and `finished`).
    Resume {
        id: u64,
        #[serde(default)]
        source: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    /// A workflow's task records: answered with `tasks`.
    Tasks {
        id: u64,
    },
}

/// The request names, for telling "unknown request" from "bad request".
const REQUESTS: [&str; 9] = ["hello", "status", "submit", "list", "show", "kill", "shutdown", "resume", "tasks"];

/// One page of the records, newest first. Every field is optional (a
/// client that sends none gets the newest [`LIST_DEFAULT`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct List {
    /// At most this many (capped at [`LIST_MAX`]).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only workflows submitted at or after this time (ms since the epoch).
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Only workflows in this state (see [`crate::state::ALL`]).
    #[serde(default)]
    pub state: Option<String>,
    /// Only workflows with a smaller id: the next page after one whose
    /// oldest workflow had this id.
    #[serde(default)]
    pub before: Option<u64>,
}

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
    /// The whole environment the workflow runs with (its runner's own
    /// process environment), names and values as bytes; `None`: the
    /// daemon's. The CLI sends its own unless `submit --no-env`.
    #[serde(default)]
    pub env: Option<BTreeMap<ByteBuf, ByteBuf>>,
    /// The workflow's inputs (variables bound before its first statement):
    /// one MessagePack map from name to value, encoded as foreign-call
    /// values are. `None`: no inputs (what clients before inputs send).
    #[serde(default)]
    pub inputs: Option<ByteBuf>,
    /// Reuse the result of any earlier task with the same identity
    /// (docs/durable.md); off unless asked.
    #[serde(default)]
    pub cache: bool,
    /// Set by the daemon alone, on a resumed workflow: the workflow whose
    /// task records it replays. A client's value is ignored.
    #[serde(default)]
    pub resume_from: Option<u64>,
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
    /// One printed value, or a piece of one: `more` says that the value
    /// goes on in the next `output` frame (no newline after this piece).
    Output {
        id: u64,
        text: String,
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
    },
    /// A piece of field `field` of the next reply that is not a `part`
    /// (nor a `notice` or `output`): that reply leaves the field empty, and
    /// its value is the concatenation of its parts' `data`.
    Part {
        field: String,
        data: ByteBuf,
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
        /// A failed workflow's error as its host made it for clients of
        /// its own kind (a Python daemon: the exception a called function
        /// raised, pickled); opaque to others.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exception: Option<ByteBuf>,
    },
    Workflows {
        workflows: Vec<Summary>,
        /// More workflows match than this page holds: ask again with
        /// `before` set to the last id of this page.
        #[serde(default)]
        more: bool,
    },
    Workflow(Record),
    Killing {
        id: u64,
    },
    ShuttingDown,
    /// A workflow's task records, in the order they ended.
    Tasks {
        id: u64,
        tasks: Vec<TaskRow>,
    },
}

/// One recorded task (docs/durable.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TaskRow {
    /// Stable within the workflow: the call's span and the path to it.
    pub key: String,
    /// `shell`, `shellpipe`, `call` or `call=f=`.
    pub kind: String,
    /// The function, or the command line.
    pub what: String,
    /// `succeeded`, `failed`, `replayed` (resume) or `cached`.
    pub status: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    #[serde(default)]
    pub error: Option<String>,
    /// The keys of the tasks whose outputs flowed into this one's arguments.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Who ran it: `pid N` of a shell task's own process, else of the
    /// process that ran the workflow.
    #[serde(default)]
    pub worker: String,
    /// For a call: the plugin that served it, `name version, sha256 <file>`.
    #[serde(default)]
    pub plugin: Option<String>,
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
    /// The Python environment (`sys.prefix`) whose interpreter runs the
    /// workflows of a daemon started from Python; absent otherwise.
    #[serde(default)]
    pub environment: Option<String>,
    /// Workflows `workflow resume` can run again: interrupted (a daemon
    /// that died, a restart) and not resumed yet, newest first.
    #[serde(default)]
    pub resumable: Vec<u64>,
    /// `daemon start --executor`: where its workflows' `=f=` calls run
    /// (a Dask scheduler's address, or `pool`); absent: none was given.
    #[serde(default)]
    pub executor: Option<String>,
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
    /// The top-level variables of a workflow that succeeded, as in
    /// `finished` (absent from older daemons, and for other workflows).
    #[serde(default)]
    pub variables: Option<ByteBuf>,
    /// As in `finished`: a failed workflow's exception, for its host's clients.
    #[serde(default)]
    pub exception: Option<ByteBuf>,
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
pub enum ReplyError {
    #[error("the daemon sent a reply this client cannot read: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// `part` frames that do not fit the reply after them.
    #[error("the daemon sent a reply this client cannot read: {0}")]
    Parts(String),
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The largest `n <= at` where `text` may be cut (a character boundary),
/// and never 0 when `at` is not: a piece always has a character in it.
fn cut(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    let back = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    if back > 0 {
        back
    } else {
        (at..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len())
    }
}

/// `text` in pieces of at most [`CHUNK`] bytes, each whole UTF-8; one
/// (maybe empty) piece for a short text.
pub fn text_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::with_capacity(text.len() / CHUNK + 1);
    let mut rest = text;
    loop {
        let n = cut(rest, CHUNK);
        pieces.push(&rest[..n]);
        rest = &rest[n..];
        if rest.is_empty() {
            return pieces;
        }
    }
}

/// `data` in pieces of at most [`CHUNK`] bytes, cut between UTF-8
/// characters when it is text (a text split this way keeps every piece
/// valid, for readers that decode each one).
pub fn data_pieces(data: &[u8]) -> Vec<&[u8]> {
    match std::str::from_utf8(data) {
        Ok(text) => text_pieces(text).into_iter().map(str::as_bytes).collect(),
        Err(_) => data.chunks(CHUNK).collect(),
    }
}

/// One reply as the frames it is sent in, none of them over [`MAX_FRAME`]:
/// a printed value longer than [`CHUNK`] becomes several `output` frames
/// (`more` on all but the last); a `finished` or `workflow` field longer
/// than that goes ahead of its reply in `part` frames, and the reply
/// leaves it empty. [`Parts`] puts the fields back together.
pub fn split(reply: Reply) -> Vec<Reply> {
    fn take(field: &str, value: &mut Vec<u8>, parts: &mut Vec<Reply>) {
        if value.len() > CHUNK {
            let data = std::mem::take(value);
            parts.extend(data_pieces(&data).into_iter().map(|d| Reply::Part { field: field.into(), data: ByteBuf::from(d) }));
        }
    }
    fn take_text(field: &str, value: &mut String, parts: &mut Vec<Reply>) {
        let mut bytes = std::mem::take(value).into_bytes();
        take(field, &mut bytes, parts);
        *value = String::from_utf8(bytes).expect("a text split on character boundaries stays text");
    }
    let mut frames = Vec::new();
    match reply {
        Reply::Output { id, text, more } if text.len() > CHUNK => {
            let pieces = text_pieces(&text);
            let last = pieces.len() - 1;
            frames.extend(pieces.into_iter().enumerate().map(|(i, p)| Reply::Output { id, text: p.into(), more: more || i < last }));
        }
        Reply::Finished { id, state, exit_code, mut error, mut variables, mut exception } => {
            if let Some(e) = error.as_mut() {
                take_text("error", e, &mut frames);
            }
            if let Some(v) = variables.as_mut() {
                take("variables", v, &mut frames);
            }
            if let Some(v) = exception.as_mut() {
                take("exception", v, &mut frames);
            }
            frames.push(Reply::Finished { id, state, exit_code, error, variables, exception });
        }
        Reply::Workflow(mut record) => {
            take_text("source", &mut record.source, &mut frames);
            take_text("output", &mut record.output, &mut frames);
            if let Some(e) = record.error.as_mut() {
                take_text("error", e, &mut frames);
            }
            if let Some(v) = record.variables.as_mut() {
                take("variables", v, &mut frames);
            }
            if let Some(v) = record.exception.as_mut() {
                take("exception", v, &mut frames);
            }
            frames.push(Reply::Workflow(record));
        }
        other => frames.push(other),
    }
    frames
}

/// The `part` frames read ahead of a reply, for [`Parts::fill`].
#[derive(Debug, Default)]
pub struct Parts(BTreeMap<String, Vec<u8>>);

impl Parts {
    pub fn add(&mut self, field: String, data: &[u8]) {
        self.0.entry(field).or_default().extend_from_slice(data);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Puts the parts read so far into `reply`'s fields, and forgets them.
    pub fn fill(&mut self, reply: &mut Reply) -> Result<(), ReplyError> {
        let parts = std::mem::take(&mut self.0);
        for (field, data) in parts {
            let text =
                |data: Vec<u8>| String::from_utf8(data).map_err(|_| ReplyError::Parts(format!("the parts of `{field}` are not UTF-8")));
            match (&mut *reply, field.as_str()) {
                (Reply::Finished { variables, .. }, "variables") => *variables = Some(ByteBuf::from(data)),
                (Reply::Finished { error, .. }, "error") => *error = Some(text(data)?),
                (Reply::Finished { exception, .. }, "exception") => *exception = Some(ByteBuf::from(data)),
                (Reply::Workflow(r), "exception") => r.exception = Some(ByteBuf::from(data)),
                (Reply::Workflow(r), "source") => r.source = text(data)?,
                (Reply::Workflow(r), "output") => r.output = text(data)?,
                (Reply::Workflow(r), "error") => r.error = Some(text(data)?),
                (Reply::Workflow(r), "variables") => r.variables = Some(ByteBuf::from(data)),
                _ => return Err(ReplyError::Parts(format!("`part` frames of `{field}` came before a reply without that field"))),
            }
        }
        Ok(())
    }
}

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
        // Old clients omit optional fields, inputs among them.
        let minimal = rmp_serde::to_vec_named(&shapes::Minimal { kind: "submit", name: "a", source: "b" }).unwrap();
        assert!(matches!(decode_request(&minimal), Ok(Request::Submit(Submit { inputs: None, .. }))));
    }

    #[test]
    fn inputs_travel_as_one_messagepack_map() {
        let map = oxiida_abi::Value::Map(vec![("n".into(), oxiida_abi::Value::Int(5))]).to_msgpack();
        let bytes = encode(&Request::Submit(Submit { inputs: Some(ByteBuf::from(map.clone())), ..Submit::default() }));
        let Ok(Request::Submit(back)) = decode_request(&bytes[4..]) else { panic!("not a submit") };
        assert_eq!(back.inputs.as_deref().map(|b| b.as_slice()), Some(&map[..]));
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

    #[test]
    fn an_environment_may_be_sent_as_text_or_bytes() {
        let text = rmp_serde::to_vec_named(&shapes::WithEnv {
            kind: "submit",
            name: "a",
            source: "b",
            env: [("HOME", "/home/me")].into_iter().collect(),
        })
        .unwrap();
        let Ok(Request::Submit(submit)) = decode_request(&text) else { panic!("not a submit") };
        let env = submit.env.unwrap();
        assert_eq!(env.get(&ByteBuf::from(b"HOME".to_vec())).map(|v| v.as_slice()), Some(&b"/home/me"[..]));
        let bytes = encode(&Request::Submit(Submit { env: Some(env.clone()), ..Submit::default() }));
        let Ok(Request::Submit(back)) = decode_request(&bytes[4..]) else { panic!("not a submit") };
        assert_eq!(back.env, Some(env));
    }

    #[test]
    fn a_list_without_fields_is_a_list_of_the_default_page() {
        let bare = rmp_serde::to_vec_named(&shapes::Tag { kind: "list" }).unwrap();
        let Ok(Request::List(list)) = decode_request(&bare) else { panic!("not a list") };
        assert!(list.limit.is_none() && list.state.is_none() && list.since_ms.is_none() && list.before.is_none());
    }

    #[test]
    fn long_fields_go_ahead_in_parts_and_come_back_whole() {
        // Three-byte characters, so that CHUNK falls inside one.
        let text: String = "a€".repeat(CHUNK / 2);
        let bytes = vec![7u8; 3 * CHUNK + 5];
        let finished = Reply::Finished {
            id: 1,
            state: "succeeded".into(),
            exit_code: Some(0),
            error: Some(text.clone()),
            variables: Some(bytes.clone().into()),
            exception: None,
        };
        let frames = split(finished);
        assert_eq!(frames.len(), 2 + 4 + 1);
        let mut parts = Parts::default();
        for frame in &frames {
            let encoded = encode(frame);
            assert!(encoded.len() - 4 <= CHUNK + 64, "a frame of {} bytes", encoded.len());
            match decode_reply(&encoded[4..]).unwrap() {
                Reply::Part { field, data } => {
                    if field == "error" {
                        assert!(std::str::from_utf8(&data).is_ok(), "each piece of a text is whole UTF-8");
                    }
                    parts.add(field, &data)
                }
                mut last => {
                    parts.fill(&mut last).unwrap();
                    let Reply::Finished { error, variables, .. } = last else { panic!("not the end") };
                    assert_eq!((error.unwrap(), variables.unwrap().into_vec()), (text.clone(), bytes.clone()));
                }
            }
        }
        let output = split(Reply::Output { id: 1, text: text.clone(), more: false });
        let mores: Vec<bool> = output.iter().map(|o| matches!(o, Reply::Output { more: true, .. })).collect();
        assert_eq!(mores, [true, false]);
        let joined: String = output.into_iter().map(|o| if let Reply::Output { text, .. } = o { text } else { panic!() }).collect();
        assert_eq!(joined, text);
    }

    mod shapes {
        #[derive(serde::Serialize)]
        pub struct Tag {
            #[serde(rename = "type")]
            pub kind: &'static str,
        }
        #[derive(serde::Serialize)]
        pub struct WithEnv {
            #[serde(rename = "type")]
            pub kind: &'static str,
            pub name: &'static str,
            pub source: &'static str,
            pub env: std::collections::BTreeMap<&'static str, &'static str>,
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
