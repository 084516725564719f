//! How the package runs the calls a workflow may overlap (those in `para`
//! and `para for`), without a thread per call.
//!
//! **Plain calls** go to a queue that this workflow's *runner* threads
//! drain. The workflow's thread queues the calls of all its branches and
//! wakes a runner only when it has nothing else to do (just before it
//! sleeps, [`Calls::parking`]); the runner takes the GIL once and runs the
//! queued calls one after another until the queue stays empty, so a `para
//! for` of 2,000 quick calls costs a few thread and GIL hand-offs, not
//! 2,000. Results are handed back to the workflow's thread in batches (its
//! wakers are called when the queue runs dry, or every [`WAKE_BATCH`]
//! results). Waking the runner as each call is queued was measured slower
//! (4.9–6.6 ms against 3.5–4.5 ms for 2,000 calls, alternated runs): the
//! two threads then hand each other single calls.
//!
//! A call that waits (a `time.sleep`, a read, a rendezvous with another
//! branch) must not hold up the rest of the queue: a *watcher* thread looks
//! every [`TICK`] while calls are queued, and when nothing moved in a tick
//! (no call finished or was queued) it starts as many more runners as are
//! stuck (at least one; so 1, 2, 4, ... while every call waits), up to the
//! workflow's task limit. This is Go's hand-off of a processor from a
//! thread blocked in a system call. Runners idle for [`IDLE`] end.
//!
//! **Quick calls on the workflow's own thread.** In the package's runtime
//! (which calls [`Calls::parking`]), a function whose calls have returned
//! within a [`TICK`] is *quick*: its queued calls are run by the workflow's
//! thread itself when it parks, under one GIL hold, with no hand-off at
//! all. A function's first call is tried on a runner (its other calls wait
//! for the verdict), so a call that waits from the start (a barrier, an
//! event another branch sets) never holds the workflow's thread; a call
//! that takes a tick or more makes its function slow (runners only) until
//! [`QUICK_STREAK`] of its calls in a row are quick again. A quick
//! function that starts to wait holds the workflow's thread for as long
//! as that call lasts: the watcher hands the queue behind it to runners at
//! the next tick, but the workflow's other branches (their results, their
//! next calls) wait for the call to return (ARCHITECTURE.md, "Calls in
//! `para` go to per-workflow queues"; figures in benches/README.md).
//!
//! **`=f=` calls** go to another queue, served by one *dispatcher* thread
//! per worker process the pool may start: a dispatcher takes a batch of
//! queued calls (its share of the queue, fewer when calls have been slow,
//! so one worker does not get a long tail), pickles them under one GIL
//! hold, writes them to one worker at once and reads the replies in order
//! ([`crate::pool::Pool::call_batch`]).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use oxiida::foreign::{ForeignError, ForeignErrorKind, Keywords, RanBy};
use oxiida::value::Value;
use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;

use crate::functions::Functions;

/// How often the watcher looks while plain calls are queued.
const TICK: Duration = Duration::from_micros(100);
/// A runner with nothing to do waits this long for work, then ends.
const IDLE: Duration = Duration::from_secs(2);
/// A runner whose queue ran dry polls it this long before it sleeps: the
/// workflow's thread is usually about to queue the next calls.
const SPIN: Duration = Duration::from_micros(50);
/// Results a runner holds before it wakes the workflow for them.
const WAKE_BATCH: usize = 64;
/// A dispatcher sends at most this many calls in one batch...
const MAX_BATCH: usize = 256;
/// ...and, once calls have been timed, about this much work.
const BATCH_TIME: Duration = Duration::from_millis(2);

type Outcome<T = Value> = Result<T, ForeignError>;

/// Where a call's outcome lands, and who waits for it.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// The workflow no longer wants the outcome (its future was dropped).
    cancelled: AtomicBool,
}

#[derive(Default)]
struct SlotState {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

impl Slot {
    /// Sets the outcome; the waker to call (by the caller, in a batch).
    fn fill(&self, outcome: Outcome) -> Option<Waker> {
        let mut state = self.state.lock();
        state.outcome = Some(outcome);
        state.waker.take()
    }
}

/// A queued call's outcome, as the workflow awaits it. Dropping it (the
/// workflow was cancelled, or a `para` sibling failed) means the call is
/// not wanted: one not started yet never runs.
pub(crate) struct Pending(Arc<Slot>);

impl Future for Pending {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut state = self.0.state.lock();
        if let Some(outcome) = state.outcome.take() {
            return Poll::Ready(outcome);
        }
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
    }
}

/// Where the calls of one batch ([`Calls::each`]) land: a `para for` drops
/// their results, so only how many finished, and the first failure, are kept.
struct EachSlot {
    state: Mutex<EachState>,
    /// The workflow no longer wants the calls not started yet.
    cancelled: AtomicBool,
}

struct EachState {
    /// Finished and not yet reported.
    finished: usize,
    /// Not finished yet.
    left: usize,
    failed: Option<ForeignError>,
    waker: Option<Waker>,
}

impl EachSlot {
    fn new(calls: usize) -> EachSlot {
        EachSlot { state: Mutex::new(EachState { finished: 0, left: calls, failed: None, waker: None }), cancelled: AtomicBool::new(false) }
    }

    /// Counts one call's outcome; the waker to call (by the caller, in a batch).
    fn fill(&self, outcome: Outcome) -> Option<Waker> {
        let mut state = self.state.lock();
        state.left = state.left.saturating_sub(1);
        let value = match outcome {
            Err(e) if state.failed.is_none() => {
                state.failed = Some(e);
                None
            }
            other => {
                state.finished += 1;
                other.ok()
            }
        };
        let waker = state.waker.take();
        drop(state);
        // The result is not used; dropped outside the lock.
        drop(value);
        waker
    }
}

/// A batch's calls as they finish (the `Stream` [`oxiida::foreign::Host::call_each`]
/// returns). Dropping it means the calls not started yet never run.
pub(crate) struct EachPending(Arc<EachSlot>);

impl EachPending {
    /// A batch refused as a whole (the workflow is over).
    pub(crate) fn failed(error: ForeignError) -> EachPending {
        let slot = EachSlot::new(0);
        slot.state.lock().failed = Some(error);
        EachPending(Arc::new(slot))
    }
}

impl futures_core::Stream for EachPending {
    type Item = Outcome<usize>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outcome<usize>>> {
        let mut state = self.0.state.lock();
        if let Some(e) = state.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if state.finished > 0 {
            return Poll::Ready(Some(Ok(std::mem::take(&mut state.finished))));
        }
        if state.left == 0 {
            return Poll::Ready(None);
        }
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for EachPending {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
    }
}

/// Where a queued call's outcome goes: its own slot, or its batch's.
enum Target {
    One(Arc<Slot>),
    Each(Arc<EachSlot>),
}

impl Target {
    fn cancelled(&self) -> bool {
        match self {
            Target::One(slot) => slot.cancelled.load(Ordering::Relaxed),
            Target::Each(slot) => slot.cancelled.load(Ordering::Relaxed),
        }
    }

    fn fill(&self, outcome: Outcome) -> Option<Waker> {
        match self {
            Target::One(slot) => slot.fill(outcome),
            Target::Each(slot) => slot.fill(outcome),
        }
    }
}

struct Job {
    dotted: Arc<str>,
    args: Vec<Value>,
    keywords: Keywords,
    target: Target,
    /// A recorded `=f=` call's: where the worker's pid goes.
    ran_by: Option<RanBy>,
    /// Whether the workflow keeps the result unread ([`oxiida::foreign::result_kept`],
    /// asked when the call is queued).
    kept: bool,
}

struct Shared {
    functions: Arc<Functions>,
    /// The most runner threads at once (the workflow's task limit).
    max_runners: usize,
    /// Dispatcher threads, one per worker the pool may start.
    dispatchers: usize,
    state: Mutex<State>,
    /// Idle runners wait here.
    work: Condvar,
    /// The watcher waits here while no plain call is queued.
    watch: Condvar,
    /// Dispatchers wait here.
    process_work: Condvar,
    /// Plain calls finished or queued (the watcher's sign of progress: a
    /// workflow thread still queueing calls is about to park and run them).
    completed: AtomicU64,
    /// Plain calls queued (read without the lock by spinning runners).
    queued: AtomicUsize,
    /// The mean time of an `=f=` call in a batch lately, in nanoseconds (0: unknown).
    process_ns: AtomicU64,
    /// The workflow's runtime calls `parking` before it sleeps.
    parks: AtomicBool,
    /// The workflow's thread is running quick calls (`run_quick`).
    here: AtomicBool,
    /// ...and the watcher saw it inside one for a tick.
    here_stuck: AtomicBool,
}

/// What the calls of one function have shown so far (in this workflow).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Speed {
    /// Its first call is on a runner; the others wait in `held` for the verdict.
    Probing,
    /// Its last calls returned within a [`TICK`]: the workflow's thread runs it.
    Quick,
    /// A call took a tick or more (a first call often does: imports,
    /// caches): runners run it, until [`QUICK_STREAK`] quick calls in a row
    /// (counted here) make it quick again.
    Slow(u8),
}

/// Ticks without progress after which the quick calls go to runners
/// although the workflow's thread is not inside one.
const HERE_GRACE: u32 = 10;
/// Quick calls in a row, on runners, that give a slow function back to
/// the workflow's thread.
const QUICK_STREAK: u8 = 8;

#[derive(Default)]
struct State {
    /// Plain calls for the runners.
    plain: VecDeque<Job>,
    /// Plain calls of quick functions, for the workflow's thread when it parks.
    quick: VecDeque<Job>,
    /// Plain calls of a function whose first call is being tried on a runner.
    held: Vec<Job>,
    speed: HashMap<Arc<str>, Speed>,
    process: VecDeque<Job>,
    /// Runner threads alive, and those of them asleep waiting for work.
    runners: usize,
    idle: usize,
    /// Wake-ups given to idle runners and not yet taken.
    tokens: usize,
    watcher: bool,
    dispatchers: usize,
    /// Results whose waiting branches are not woken yet.
    wakers: Vec<Waker>,
    closed: bool,
}

/// One workflow's runners, watcher and dispatchers.
pub(crate) struct Calls {
    shared: Arc<Shared>,
}

fn closed_error() -> ForeignError {
    ForeignError::new(ForeignErrorKind::Internal, "the workflow is over: the call was not run")
}

impl Calls {
    pub(crate) fn new(functions: Arc<Functions>, max_runners: usize) -> Calls {
        let shared = Shared {
            functions,
            max_runners: max_runners.max(1),
            dispatchers: crate::pool::max_workers(),
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            watch: Condvar::new(),
            process_work: Condvar::new(),
            completed: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            process_ns: AtomicU64::new(0),
            parks: AtomicBool::new(false),
            here: AtomicBool::new(false),
            here_stuck: AtomicBool::new(false),
        };
        Calls { shared: Arc::new(shared) }
    }

    /// Queues a plain call for the runners.
    pub(crate) fn plain(&self, dotted: String, args: Vec<Value>, keywords: Keywords) -> Result<Pending, ForeignError> {
        let slot = Arc::new(Slot::default());
        let shared = &self.shared;
        let mut state = shared.state.lock();
        if state.closed {
            return Err(closed_error());
        }
        let job = Job { dotted: Arc::from(dotted), args, keywords, target: Target::One(slot.clone()), ran_by: None, kept: false };
        queue_plain(shared, &mut state, std::iter::once(job));
        Ok(Pending(slot))
    }

    /// Queues calls of one function together (`Host::call_each`): one
    /// lock, one look at the function's verdict and one slot for them all;
    /// `process` for `=f=` calls. Each call then runs as a call queued on its own.
    pub(crate) fn each(&self, dotted: &str, calls: Vec<oxiida::foreign::EachCall>, process: bool) -> Result<EachPending, ForeignError> {
        let slot = Arc::new(EachSlot::new(calls.len()));
        let dotted: Arc<str> = Arc::from(dotted);
        let n = calls.len();
        let jobs = calls.into_iter().map(|(args, keywords)| Job {
            dotted: dotted.clone(),
            args,
            keywords,
            target: Target::Each(slot.clone()),
            ran_by: None,
            kept: false,
        });
        let shared = &self.shared;
        let mut state = shared.state.lock();
        if state.closed {
            return Err(closed_error());
        }
        if process {
            state.process.extend(jobs);
            start_dispatcher(shared, &mut state, n)?;
            shared.process_work.notify_all();
        } else {
            queue_plain(shared, &mut state, jobs);
        }
        Ok(EachPending(slot))
    }

    /// The workflow's runtime will call [`Calls::parking`] before it sleeps.
    pub(crate) fn wake_when_parking(&self) {
        self.shared.parks.store(true, Ordering::Relaxed);
    }

    /// Called by the workflow's thread just before it sleeps (all its
    /// branches wait): the calls it queued meanwhile start now, in one batch.
    /// Calls of functions that have been quick so far run here, on the
    /// workflow's thread, under one GIL hold; the others (a function's
    /// first call, or one that has been slow) go to a runner.
    pub(crate) fn parking(&self) {
        let shared = &self.shared;
        let run_here = {
            let mut state = shared.state.lock();
            // Runners awake but stuck in a call are the watcher's to help.
            if !state.plain.is_empty() && state.runners == state.idle {
                start_runners(shared, &mut state, 1);
            }
            !state.quick.is_empty()
        };
        if run_here {
            shared.here.store(true, Ordering::Relaxed);
            Python::attach(|py| run_quick(py, shared));
            shared.here.store(false, Ordering::Relaxed);
            shared.here_stuck.store(false, Ordering::Relaxed);
        }
    }

    /// Queues an `=f=` call for the dispatchers.
    pub(crate) fn process(&self, dotted: String, args: Vec<Value>, keywords: Keywords) -> Result<Pending, ForeignError> {
        self.process_reporting(dotted, args, keywords, None)
    }

    /// [`Calls::process`] for a recorded call: `ran_by` gets the worker's pid.
    pub(crate) fn process_reporting(
        &self,
        dotted: String,
        args: Vec<Value>,
        keywords: Keywords,
        ran_by: Option<RanBy>,
    ) -> Result<Pending, ForeignError> {
        let slot = Arc::new(Slot::default());
        let shared = &self.shared;
        let mut state = shared.state.lock();
        if state.closed {
            return Err(closed_error());
        }
        let kept = oxiida::foreign::result_kept();
        state.process.push_back(Job { dotted: Arc::from(dotted), args, keywords, target: Target::One(slot.clone()), ran_by, kept });
        start_dispatcher(shared, &mut state, 1)?;
        shared.process_work.notify_one();
        Ok(Pending(slot))
    }

    /// The workflow is over: queued calls are dropped, and every thread
    /// ends once its current call (if any) returns.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.shared.state.lock();
            state.closed = true;
            self.shared.queued.store(0, Ordering::Relaxed);
            (
                std::mem::take(&mut state.plain),
                std::mem::take(&mut state.quick),
                std::mem::take(&mut state.held),
                std::mem::take(&mut state.process),
                std::mem::take(&mut state.wakers),
            )
        };
        self.shared.work.notify_all();
        self.shared.watch.notify_all();
        self.shared.process_work.notify_all();
        drop(dropped);
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        self.close();
    }
}

/// Queues plain calls of one function: where each goes depends on what
/// its calls have shown so far (see [`Speed`]).
fn queue_plain(shared: &Arc<Shared>, state: &mut State, jobs: impl Iterator<Item = Job>) {
    let parks = shared.parks.load(Ordering::Relaxed);
    let mut jobs = jobs.peekable();
    let Some(first) = jobs.peek() else { return };
    let before = state.plain.len() + state.quick.len() + state.held.len();
    match state.speed.get(&first.dotted).copied() {
        Some(Speed::Quick) if parks => state.quick.extend(jobs),
        Some(Speed::Probing) if parks => state.held.extend(jobs),
        None if parks => {
            state.speed.insert(first.dotted.clone(), Speed::Probing);
            state.plain.extend(jobs.next());
            state.held.extend(jobs);
        }
        _ => state.plain.extend(jobs),
    }
    let added = state.plain.len() + state.quick.len() + state.held.len() - before;
    shared.completed.fetch_add(added as u64, Ordering::Relaxed);
    shared.queued.store(state.plain.len(), Ordering::Relaxed);
    // No runner is woken here when the workflow's thread calls
    // `parking`: it queues what its branches call until it has nothing
    // else to do, then wakes one, which runs them all in one go. The watcher wakes one
    // if that thread stays busy. A runtime without that hook (the
    // daemon's) wakes one now.
    if !parks && state.runners == state.idle {
        start_runners(shared, state, 1);
    }
    if !state.watcher {
        state.watcher = true;
        let watched = shared.clone();
        if super::threads::spawn("oxiida-watch", move || watch(&watched)).is_err() {
            state.watcher = false;
        }
    } else if before == 0 {
        shared.watch.notify_one();
    }
}

/// After `added` `=f=` calls were queued: one more dispatcher, while the
/// pool may start more workers. When none runs and none can start, the
/// calls are taken back and that is the error.
fn start_dispatcher(shared: &Arc<Shared>, state: &mut State, added: usize) -> Result<(), ForeignError> {
    if state.dispatchers >= shared.dispatchers {
        return Ok(());
    }
    let started = shared.clone();
    match super::threads::spawn("oxiida-dispatch", move || dispatch(&started)) {
        Ok(_) => state.dispatchers += 1,
        Err(e) if state.dispatchers == 0 => {
            let keep = state.process.len() - added;
            state.process.truncate(keep);
            return Err(ForeignError::new(ForeignErrorKind::Internal, format!("cannot start a thread for `=f=` calls: {e}")));
        }
        Err(_) => {}
    }
    Ok(())
}

/// Wakes idle runners, then starts new ones, `n` in all (within the limit).
fn start_runners(shared: &Arc<Shared>, state: &mut State, n: usize) {
    let woken = n.min(state.idle);
    state.idle -= woken;
    state.tokens += woken;
    for _ in 0..woken {
        shared.work.notify_one();
    }
    let new = (n - woken).min(shared.max_runners.saturating_sub(state.runners));
    if new > 0 {
        // Counted now, started as a tree: each new runner starts half of
        // those left, so 512 threads start in 9 rounds, not one by one.
        state.runners += new;
        spawn_runners(shared.clone(), new, state);
    }
}

/// Starts `n` runners already counted: one now, which starts the rest.
/// Those that cannot start are uncounted again.
fn spawn_runners(shared: Arc<Shared>, n: usize, state: &mut State) {
    let runner = shared.clone();
    let spawned = super::threads::spawn("oxiida-call", move || {
        let mut rest = n - 1;
        while rest > 0 {
            let half = rest.div_ceil(2);
            rest -= half;
            let mut state = runner.state.lock();
            spawn_runners(runner.clone(), half, &mut state);
        }
        run(&runner)
    });
    if spawned.is_err() {
        state.runners -= n;
    }
}

fn wake(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

/// A runner: drains the queue under one GIL hold, then waits for more.
fn run(shared: &Arc<Shared>) {
    loop {
        if shared.queued.load(Ordering::Relaxed) > 0 {
            Python::attach(|py| drain(py, shared));
        }
        let mut state = shared.state.lock();
        if !state.plain.is_empty() {
            continue;
        }
        if state.closed {
            state.runners -= 1;
            return;
        }
        state.idle += 1;
        loop {
            if state.tokens > 0 {
                state.tokens -= 1;
                break;
            }
            let timed_out = shared.work.wait_for(&mut state, IDLE).timed_out();
            if state.tokens > 0 {
                continue;
            }
            if state.closed || timed_out {
                state.idle -= 1;
                state.runners -= 1;
                return;
            }
        }
    }
}

/// Runs queued plain calls until the queue stays empty for [`SPIN`]. The
/// GIL and the thread's Python state are kept meanwhile: the workflow's
/// thread is usually about to queue the next calls.
fn drain(py: Python<'_>, shared: &Shared) {
    let mut finished: Option<Waker> = None;
    let mut here = shared.functions.here(py);
    loop {
        let (job, wakers) = {
            let mut state = shared.state.lock();
            state.wakers.extend(finished.take());
            let job = state.plain.pop_front();
            shared.queued.store(state.plain.len(), Ordering::Relaxed);
            // Before a call that may wait, the results so far go back.
            let wakers =
                if state.plain.is_empty() || state.wakers.len() >= WAKE_BATCH { std::mem::take(&mut state.wakers) } else { Vec::new() };
            (job, wakers)
        };
        wake(wakers);
        let Some(job) = job else {
            // With the workflow's thread running the quick calls itself, what
            // comes next to the runners is a first or a slow call: no spin.
            if shared.parks.load(Ordering::Relaxed) {
                return;
            }
            let spin_until = Instant::now() + SPIN;
            while shared.queued.load(Ordering::Relaxed) == 0 && Instant::now() < spin_until {
                std::hint::spin_loop();
            }
            if shared.queued.load(Ordering::Relaxed) == 0 {
                return;
            }
            continue;
        };
        if job.target.cancelled() {
            unprobe(shared, &job.dotted);
            continue;
        }
        let started = Instant::now();
        let outcome = shared.functions.call_in(&mut here, &job.dotted, &job.args, &job.keywords).map_err(super::foreign_error);
        timed(shared, &job.dotted, started.elapsed());
        finished = job.target.fill(outcome);
    }
}

/// A plain call of `dotted` took `took`: what its function's calls have
/// shown so far, and where its queued calls go now.
fn timed(shared: &Shared, dotted: &str, took: Duration) {
    shared.completed.fetch_add(1, Ordering::Relaxed);
    if !shared.parks.load(Ordering::Relaxed) {
        return;
    }
    let quick = took < TICK;
    let mut state = shared.state.lock();
    let before = state.speed.get(dotted).copied();
    let after = match (before, quick) {
        (Some(Speed::Quick), true) | (Some(Speed::Slow(0)), false) => return,
        (Some(Speed::Slow(n)), true) if n + 1 < QUICK_STREAK => Speed::Slow(n + 1),
        (_, true) => Speed::Quick,
        (_, false) => Speed::Slow(0),
    };
    state.speed.insert(Arc::from(dotted), after);
    let held = std::mem::take(&mut state.held);
    let (mine, others): (Vec<Job>, Vec<Job>) = held.into_iter().partition(|j| &*j.dotted == dotted);
    state.held = others;
    if after == Speed::Quick {
        // Its calls waiting for a verdict or for a runner move to the
        // workflow's thread, which the runner's results wake.
        let plain = std::mem::take(&mut state.plain);
        let (waiting, others): (VecDeque<Job>, VecDeque<Job>) = plain.into_iter().partition(|j| &*j.dotted == dotted);
        state.plain = others;
        state.quick.extend(mine);
        state.quick.extend(waiting);
    } else {
        state.plain.extend(mine);
    }
    shared.queued.store(state.plain.len(), Ordering::Relaxed);
}

/// A call not run (its branch is gone): if it was its function's first,
/// the calls held for the verdict go to runners, and the next call of the
/// function is tried afresh.
fn unprobe(shared: &Shared, dotted: &str) {
    if !shared.parks.load(Ordering::Relaxed) {
        return;
    }
    let mut state = shared.state.lock();
    if state.speed.get(dotted) != Some(&Speed::Probing) {
        return;
    }
    state.speed.remove(dotted);
    let held = std::mem::take(&mut state.held);
    let (mine, others): (Vec<Job>, Vec<Job>) = held.into_iter().partition(|j| &*j.dotted == dotted);
    state.held = others;
    state.plain.extend(mine);
    shared.queued.store(state.plain.len(), Ordering::Relaxed);
}

/// The workflow's thread, about to park: runs the queued calls of quick
/// functions itself, then wakes their branches. A call that turns out
/// slow marks its function so; one that blocks is the watcher's to see
/// (it hands the rest of the queue to runners).
fn run_quick(py: Python<'_>, shared: &Shared) {
    let mut wakers = Vec::new();
    let mut here = shared.functions.here(py);
    loop {
        let Some(job) = shared.state.lock().quick.pop_front() else { break };
        if job.target.cancelled() {
            continue;
        }
        let outcome = shared.functions.call_in(&mut here, &job.dotted, &job.args, &job.keywords).map_err(super::foreign_error);
        // Its function is known quick: only a slow call is news, which the
        // watcher tells (not timed here: two clock reads were 3% of a
        // trivial call).
        if shared.here_stuck.load(Ordering::Relaxed) {
            shared.here_stuck.store(false, Ordering::Relaxed);
            timed(shared, &job.dotted, TICK);
        } else {
            shared.completed.fetch_add(1, Ordering::Relaxed);
        }
        wakers.extend(job.target.fill(outcome));
    }
    drop(here);
    wake(wakers);
}

/// The watcher: while plain calls are queued, looks every tick; when no
/// call finished in one, the runners are all inside calls that wait, and
/// more are started (as many as are awake, so the count doubles).
fn watch(shared: &Arc<Shared>) {
    let mut seen = shared.completed.load(Ordering::Relaxed);
    // Ticks in a row without progress.
    let mut stuck = 0;
    loop {
        {
            let mut state = shared.state.lock();
            while waiting(&state) == 0 && !state.closed {
                if shared.watch.wait_for(&mut state, IDLE).timed_out() && waiting(&state) == 0 {
                    state.watcher = false;
                    return;
                }
            }
            if state.closed {
                state.watcher = false;
                return;
            }
        }
        std::thread::sleep(TICK);
        let now = shared.completed.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            stuck = 0;
            continue;
        }
        stuck += 1;
        let wakers = {
            let mut state = shared.state.lock();
            // Nothing moved for a tick. Calls held for a verdict go to
            // runners. So do the quick calls when the workflow's thread is
            // inside one of them that waits; when it is busy elsewhere (or
            // not scheduled yet on a loaded machine), after [`HERE_GRACE`].
            let held = std::mem::take(&mut state.held);
            state.plain.extend(held);
            if shared.here.load(Ordering::Relaxed) {
                shared.here_stuck.store(true, Ordering::Relaxed);
            }
            if shared.here.load(Ordering::Relaxed) || stuck >= HERE_GRACE {
                let quick = std::mem::take(&mut state.quick);
                state.plain.extend(quick);
            }
            shared.queued.store(state.plain.len(), Ordering::Relaxed);
            if !state.plain.is_empty() && !state.closed {
                let awake = state.runners - state.idle;
                let n = awake.max(1).min(state.plain.len());
                start_runners(shared, &mut state, n);
            }
            // Results held by a runner now stuck in a call go back now.
            std::mem::take(&mut state.wakers)
        };
        wake(wakers);
    }
}

/// Plain calls queued, anywhere.
fn waiting(state: &State) -> usize {
    state.plain.len() + state.quick.len() + state.held.len()
}

/// A dispatcher: sends batches of queued `=f=` calls to one worker at a time.
fn dispatch(shared: &Arc<Shared>) {
    loop {
        let batch: Vec<Job> = {
            let mut state = shared.state.lock();
            loop {
                if state.closed {
                    state.dispatchers -= 1;
                    return;
                }
                // Calls whose branches are gone are dropped unsent.
                while state.process.front().is_some_and(|j| j.target.cancelled()) {
                    state.process.pop_front();
                }
                if !state.process.is_empty() {
                    break;
                }
                if shared.process_work.wait_for(&mut state, IDLE).timed_out() && state.process.is_empty() {
                    state.dispatchers -= 1;
                    return;
                }
            }
            let n = batch_size(shared, state.process.len());
            state.process.drain(..n).filter(|j| !j.target.cancelled()).collect()
        };
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let calls: Vec<crate::functions::BatchCall<'_, Arc<str>, Value>> =
            batch.iter().map(|j| (&*j.dotted, j.args.as_slice(), j.keywords.as_slice(), j.kept)).collect();
        let (results, who) = crate::ran_by::asking(|| shared.functions.call_batch(&calls));
        // One batch, one worker process: each recorded call names its pid.
        if let Some(who) = who {
            for ran_by in batch.iter().filter_map(|j| j.ran_by.as_ref()) {
                let _ = ran_by.set(who.clone());
            }
        }
        let per_call = started.elapsed().as_nanos() as u64 / batch.len() as u64;
        let old = shared.process_ns.load(Ordering::Relaxed);
        shared.process_ns.store(if old == 0 { per_call } else { (old * 3 + per_call) / 4 }, Ordering::Relaxed);
        let wakers: Vec<Waker> =
            batch.iter().zip(results).filter_map(|(job, result)| job.target.fill(result.map_err(super::foreign_error))).collect();
        wake(wakers);
    }
}

/// How many of `queued` calls one dispatcher takes: its share, and no more
/// than about [`BATCH_TIME`] of work once calls have been timed (a few
/// before), so that slow calls spread over every worker.
fn batch_size(shared: &Shared, queued: usize) -> usize {
    let share = queued.div_ceil(shared.dispatchers);
    let per_call = shared.process_ns.load(Ordering::Relaxed);
    let by_time = (BATCH_TIME.as_nanos() as u64).checked_div(per_call).map_or(4, |n| n as usize);
    share.min(by_time).clamp(1, MAX_BATCH)
}
