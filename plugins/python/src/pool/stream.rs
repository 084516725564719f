//! A large result that a worker sends while it pickles it (status 7 frames,
//! then a status 8 frame with the rest; see `_Parts` in `_worker.py`).
//!
//! Its bytes are kept whole, as any result's are. For the package, which
//! may hand the result back to Python, a thread also unpickles the parts as
//! they arrive, while the worker still pickles the rest: then a large
//! result returned to Python costs the slower of pickling and unpickling,
//! not their sum (a `ProcessPoolExecutor` pays their sum). The caller gets
//! the bytes at once and the thread with them ([`Answer::Streamed`]): it
//! reads the bytes into workflow values meanwhile, or waits for the object.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::Answer;

/// The parts of one streamed result received so far.
pub(super) struct Streamed {
    pickle: Vec<u8>,
    unpickler: Option<Unpickler>,
}

impl Streamed {
    /// `unpickle`: also unpickle the parts as they arrive.
    pub(super) fn new(unpickle: bool) -> Self {
        Streamed { pickle: Vec::new(), unpickler: unpickle.then(Unpickler::start).flatten() }
    }

    pub(super) fn len(&self) -> usize {
        self.pickle.len()
    }

    pub(super) fn push(&mut self, part: Vec<u8>) {
        self.pickle.extend_from_slice(&part);
        if let Some(unpickler) = &mut self.unpickler {
            unpickler.send(part);
        }
    }

    /// The whole result, with its last part: its bytes, and the thread
    /// making the object, not waited for (the caller may not need it, and
    /// reads the bytes meanwhile).
    pub(super) fn finish(mut self, last: Vec<u8>) -> Answer {
        self.pickle.extend_from_slice(&last);
        let object = self.unpickler.take().and_then(|mut u| {
            u.send(last);
            u.parts = None;
            u.thread.take().map(|t| Unpickled(Some(t)))
        });
        Answer::Streamed(std::mem::take(&mut self.pickle), object)
    }
}

/// The object a thread is unpickling from a whole result. Dropped unwaited
/// (the workflow read the bytes and needs no object), it waits for the
/// thread, which frees the object: no thread outlives its result, so none
/// is left running Python when the interpreter exits.
pub struct Unpickled(Option<JoinHandle<Option<Py<PyAny>>>>);

impl Unpickled {
    /// The object, once made; `None` if the thread failed (the caller
    /// unpickles the bytes itself). The GIL is released while waiting: the
    /// thread needs it.
    pub fn wait(mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        let thread = self.0.take()?;
        py.detach(|| thread.join().ok().flatten())
    }
}

impl Drop for Unpickled {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            join(thread);
        }
    }
}

/// Waits for an unpickling thread to end, with the GIL released if this
/// thread holds it (the other thread needs it to finish).
fn join<T>(thread: JoinHandle<T>) {
    Python::attach(|py| {
        py.detach(|| {
            let _ = thread.join();
        })
    });
}

/// A thread unpickling the parts sent to it. Dropped before its end (the
/// stream was given up, the worker died), it reads the end of its input,
/// fails, and is joined.
struct Unpickler {
    parts: Option<mpsc::Sender<Vec<u8>>>,
    thread: Option<JoinHandle<Option<Py<PyAny>>>>,
}

impl Unpickler {
    /// `None` when no thread can be started: the bytes are read as usual.
    fn start() -> Option<Self> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("oxiida-unpickle".into())
            .spawn(move || {
                Python::attach(|py| {
                    let input = Py::new(py, Parts { receiver: std::sync::Mutex::new(receiver), current: Arc::default(), at: 0 }).ok()?;
                    let pickle = py.import("pickle").ok()?;
                    let unpickler = pickle.getattr("Unpickler").ok()?.call1((input,)).ok()?;
                    unpickler.call_method0("load").ok().map(Bound::unbind)
                })
            })
            .ok()?;
        Some(Unpickler { parts: Some(sender), thread: Some(thread) })
    }

    fn send(&mut self, part: Vec<u8>) {
        if let Some(parts) = &self.parts {
            // A thread that stopped (a broken pickle) takes no more: ignored,
            // its `None` says so at the end.
            let _ = parts.send(part);
        }
    }
}

impl Drop for Unpickler {
    /// A stream given up (another status came, the worker died): the thread
    /// reads the end of its input, fails, and is joined.
    fn drop(&mut self) {
        self.parts = None;
        if let Some(thread) = self.thread.take() {
            join(thread);
        }
    }
}

/// The file `pickle.Unpickler` reads: the parts as they arrive. Its end
/// (the sender gone) is the end of the file; a pickle cut there fails.
#[pyclass(module = "oxiida._oxiida")]
struct Parts {
    /// In a mutex for `Sync` (a pyclass must be, and so must what the
    /// thread waits on with the GIL released); one reader, never contended.
    receiver: std::sync::Mutex<mpsc::Receiver<Vec<u8>>>,
    current: Arc<Vec<u8>>,
    at: usize,
}

impl Parts {
    /// The next bytes available, at most `n` (waiting for a part, the GIL
    /// released); empty at the end.
    fn next<'a>(&'a mut self, py: Python<'_>, n: usize) -> &'a [u8] {
        if self.at == self.current.len() {
            let receiver = &self.receiver;
            match py.detach(|| receiver.lock().ok().and_then(|r| r.recv().ok())) {
                Some(part) => {
                    self.current = Arc::new(part);
                    self.at = 0;
                }
                None => return &[],
            }
        }
        let end = self.current.len().min(self.at + n);
        let bytes = &self.current[self.at..end];
        self.at = end;
        bytes
    }
}

#[pymethods]
impl Parts {
    #[pyo3(signature = (n = -1))]
    fn read<'py>(&mut self, py: Python<'py>, n: isize) -> Bound<'py, PyBytes> {
        let mut want = usize::try_from(n).unwrap_or(usize::MAX);
        // Most reads fall within one part: no copy but the bytes object's.
        let first = self.next(py, want);
        if first.len() == want || first.is_empty() {
            return PyBytes::new(py, first);
        }
        let mut out = first.to_vec();
        want -= out.len();
        while want > 0 {
            let more = self.next(py, want);
            if more.is_empty() {
                break;
            }
            want -= more.len();
            out.extend_from_slice(more);
        }
        PyBytes::new(py, &out)
    }

    fn readline<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        // `pickle.Unpickler` refuses a file without `readline`; protocol 5
        // pickles of plain values have no line opcodes, so it is never
        // called in practice and may read byte by byte.
        let mut out = Vec::new();
        loop {
            let byte = self.next(py, 1);
            let Some(&b) = byte.first() else { break };
            out.push(b);
            if b == b'\n' {
                break;
            }
        }
        PyBytes::new(py, &out)
    }
}
