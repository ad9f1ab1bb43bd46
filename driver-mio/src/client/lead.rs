//! Who polls: the client's event loop, run by whichever thread leads.
//!
//! One poller watches every connection of a client, and one thread at a
//! time polls it: the leader. Usually that is the client's own loop
//! thread, which reads responses and unparks the callers they belong to.
//! But a caller that waits alone would then pay a thread hop per call: the
//! loop thread wakes for the response, and wakes the caller (two context
//! switches and two futex calls more than a blocking socket's ping-pong,
//! most of the cost of a call on one core). So a caller that finds nobody
//! polling leads itself: it runs the loop's turns on its own thread until
//! its result arrives, and reads its response straight off the socket.
//!
//! The rules that keep every call answered:
//!
//! - a caller leads only when nobody does; otherwise it parks, counted in
//!   [`Lead::parked`], and whoever leads delivers its result;
//! - a caller that stops leading while others are parked, or after someone
//!   asked for a turn it may not have taken ([`Lead::pending`]), hands the
//!   lead to the loop thread and unparks it;
//! - the loop thread steps down when, after a turn, no caller is parked.
//!   While a caller leads it sleeps until that caller stops; otherwise it
//!   rests and takes the lead back after a [`REST`] in which no caller led,
//!   so a quiet client's hang-ups, timers and goaways are handled within
//!   that much of arriving;
//! - anything that needs a turn ([`LoopShared::notify`]: a new connection, a
//!   connection asking to be driven, the router's timer) writes the
//!   poller's waker, which ends a leader's poll, and, if nobody leads,
//!   wakes the loop thread to; a caller that gets there first leads instead;
//! - except a caller's own `start` (a request left for a batch, an earlier
//!   deadline): that caller is about to wait and leads then, so it does
//!   not wake the loop thread, which would take the lead from it, and the
//!   two would trade it for every batch (one thread keeping 128 calls in
//!   flight did half the calls, with a p99 of 2.5 ms). If it never waits,
//!   the loop thread takes the lead at the end of its rest: what `start`
//!   asked for waits at most a [`REST`];
//! - a leading caller's own result can be set by another thread (a cancel,
//!   a dial that failed, `close`): its waker then ends the poll too; set by
//!   its own turn's timers (its deadline), the turn does not sleep in its
//!   poll.
//!
//! Parked callers sleep in the client's parking lot ([`parking`]), which
//! wakes everyone one turn answered together.
//!
//! None of this changes what goes on the wire or when: the turns are the
//! same whoever runs them.

use crate::stream::Stream;
use mio::{Events, Poll as Poller, Registry, Token, Waker as LoopWaker};
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Wake, Waker};
use std::thread::{self, Thread, ThreadId};
use std::time::{Duration, Instant};
use weft_driver::client::{Client as Core, ConnCell};
use weft_proto::ConnId;

use super::Mio;
use super::parking::{self, Lot};

/// The poller's own waker.
pub(super) const WAKER: Token = Token(0);

/// How long the loop thread stays out of the way of callers that lead
/// themselves before it takes the lead back (if none led meanwhile).
pub(super) const REST: Duration = Duration::from_millis(1);

/// Who polls now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Leader {
    Nobody,
    Loop,
    Caller,
}

/// The leadership, under one short lock never held across a system call.
struct Lead {
    leader: Leader,
    /// Callers parked until someone else's turn delivers their result.
    parked: usize,
    /// A turn was asked for since the leader last polled.
    pending: bool,
    /// Whether a caller led since the loop thread began resting.
    caller_led: bool,
    /// The loop thread sleeps until unparked (a caller led when it began).
    loop_sleeps: bool,
}

/// The poller and what only its leader touches.
struct LoopState {
    poller: Poller,
    events: Events,
    conns: HashMap<ConnId, (Arc<ConnCell<Stream>>, Waker)>,
    ready: Vec<ConnId>,
}

/// What the loop shares with everyone else.
pub(super) struct LoopShared {
    pub(super) registry: Registry,
    waker: LoopWaker,
    /// Connections opened since the leader last looked.
    adopted: Mutex<Vec<Arc<ConnCell<Stream>>>>,
    /// Connections whose cell asked to be driven.
    woken: Mutex<Vec<ConnId>>,
    lead: Mutex<Lead>,
    state: Mutex<LoopState>,
    /// The loop thread, once it runs.
    loop_thread: OnceLock<Thread>,
    /// Where parked callers sleep.
    lot: Lot,
    /// Adoptions whose notify is done, for tests.
    #[cfg(test)]
    adoptions: std::sync::atomic::AtomicUsize,
    /// Turns asked for from inside a `start` while nobody led, for tests.
    #[cfg(test)]
    left_to_the_starter: std::sync::atomic::AtomicUsize,
}

/// Wakes the leader for one connection: the waker each cell holds.
struct ConnWaker {
    conn: ConnId,
    shared: Arc<LoopShared>,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let first = {
            let mut woken = lock(&self.shared.woken);
            let first = woken.is_empty();
            if !woken.contains(&self.conn) {
                woken.push(self.conn);
            }
            first
        };
        if first {
            self.shared.notify();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("unpoisoned")
}

/// The poller's state, even after a panic in a caller's turn (which hands
/// the lead on as it unwinds): the next leader carries on with it rather
/// than leave parked callers without anyone to poll.
fn lock_state(shared: &LoopShared) -> MutexGuard<'_, LoopState> {
    shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LoopShared {
    /// A poller, with the loop thread as its first leader.
    pub(super) fn new() -> io::Result<Arc<LoopShared>> {
        let poller = Poller::new()?;
        Ok(Arc::new(LoopShared {
            waker: LoopWaker::new(poller.registry(), WAKER)?,
            registry: poller.registry().try_clone()?,
            adopted: Mutex::new(Vec::new()),
            woken: Mutex::new(Vec::new()),
            lead: Mutex::new(Lead {
                leader: Leader::Loop,
                parked: 0,
                pending: false,
                caller_led: false,
                loop_sleeps: false,
            }),
            state: Mutex::new(LoopState {
                poller,
                events: Events::with_capacity(256),
                conns: HashMap::new(),
                ready: Vec::new(),
            }),
            loop_thread: OnceLock::new(),
            lot: Lot::new(),
            #[cfg(test)]
            adoptions: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(test)]
            left_to_the_starter: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// A connection for the leader to drive from its next turn.
    pub(super) fn adopt(&self, cell: Arc<ConnCell<Stream>>) {
        lock(&self.adopted).push(cell);
        self.notify();
        #[cfg(test)]
        self.adoptions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Asks for a turn: ends the leader's poll, or wakes the loop thread to
    /// lead if nobody does.
    pub(super) fn notify(&self) {
        let _ = self.waker.wake();
        let mut lead = lock(&self.lead);
        lead.pending = true;
        if lead.leader == Leader::Nobody {
            // The loop thread takes the lead unless a caller does first;
            // from inside `start`, that caller (see the module's rules).
            drop(lead);
            if STARTING.get() == std::ptr::from_ref(self) as usize {
                #[cfg(test)]
                self.left_to_the_starter
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            } else {
                self.unpark_loop();
            }
        }
    }

    fn unpark_loop(&self) {
        // Unset only before the loop thread's first look, when it leads.
        if let Some(t) = self.loop_thread.get() {
            t.unpark();
        }
    }
}

/// One turn of the event loop: fire the router's timers, poll (blocking
/// until the next timer), drive every connection that is ready. `true` when the client is closed and every
/// connection finished: the loop thread stops.
fn turn(core: &Arc<Core<Mio>>, shared: &Arc<LoopShared>, st: &mut LoopState) -> bool {
    let _turn = InTurn::enter(shared);
    SELF_WOKEN.set(false);
    let next = core.handle_timeout();
    if core.is_closed() && st.conns.is_empty() && lock(&shared.adopted).is_empty() {
        return true;
    }
    let mut timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
    if SELF_WOKEN.get() {
        // A leading caller's own call ended on a timer (nothing else may
        // ever end this poll): look for events, do not wait for them.
        timeout = Some(Duration::ZERO);
    }
    // Whatever asked for a turn before this poll is seen by it.
    lock(&shared.lead).pending = false;
    // The timers may have answered callers: they must not wait for the
    // poll to end.
    shared.lot.flush();
    let LoopState {
        poller,
        events,
        conns,
        ready,
    } = st;
    if let Err(e) = poller.poll(events, timeout)
        && e.kind() != io::ErrorKind::Interrupted
    {
        tracing::error!(error = %e, "client event loop failed");
        // Nothing would fire a timer or read a byte again: end every call
        // now rather than leave its caller parked.
        core.close();
        return true;
    }
    for cell in std::mem::take(&mut *lock(&shared.adopted)) {
        let waker = Waker::from(Arc::new(ConnWaker {
            conn: cell.id(),
            shared: shared.clone(),
        }));
        ready.push(cell.id());
        conns.insert(cell.id(), (cell, waker));
    }
    for e in events.iter().filter(|e| e.token() != WAKER) {
        let conn = ConnId(e.token().0 as u64);
        if (e.is_read_closed() || e.is_error())
            && let Some((cell, _)) = conns.get(&conn)
        {
            cell.note_hang_up();
        }
        ready.push(conn);
    }
    ready.append(&mut lock(&shared.woken));
    ready.sort_unstable();
    ready.dedup();
    for conn in ready.drain(..) {
        let Some((cell, waker)) = conns.get(&conn) else {
            continue;
        };
        let mut cx = Context::from_waker(waker);
        if core.drive_conn(cell, &mut cx).is_ready() {
            conns.remove(&conn);
        }
    }
    false
}

thread_local! {
    /// The client whose turn this thread runs, if any (its address).
    static IN_TURN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// A call of this thread's ended during its own turn: it must look
    /// before its turn sleeps in a poll.
    static SELF_WOKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The client whose `start` this thread is in, if any (its address):
    /// another client notified from inside it (by code `start` runs, a
    /// balancer say) is not spared its loop thread.
    static STARTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs a caller's `start` on `shared`'s client: a turn it asks for is
/// left to its own wait (see the module's rules).
pub(super) fn starting<T>(shared: &LoopShared, start: impl FnOnce() -> T) -> T {
    struct Reset(usize);
    impl Drop for Reset {
        fn drop(&mut self) {
            STARTING.set(self.0);
        }
    }
    let _reset = Reset(STARTING.replace(std::ptr::from_ref(shared) as usize));
    start()
}

/// A turn was asked for and nobody leads to take it: a caller about to
/// wait should lead at once rather than spin (its own `start` may have
/// left its request for that turn to write).
pub(super) fn turn_unled(shared: &LoopShared) -> bool {
    let lead = lock(&shared.lead);
    lead.pending && lead.leader == Leader::Nobody
}

/// Marks a turn in progress on this thread; when it ends, wakes together
/// every caller the turn answered.
struct InTurn<'a>(&'a LoopShared);

impl<'a> InTurn<'a> {
    fn enter(shared: &'a LoopShared) -> InTurn<'a> {
        IN_TURN.set(std::ptr::from_ref(shared) as usize);
        InTurn(shared)
    }

    fn current(shared: &LoopShared) -> bool {
        IN_TURN.get() == std::ptr::from_ref(shared) as usize
    }
}

impl Drop for InTurn<'_> {
    fn drop(&mut self) {
        IN_TURN.set(0);
        self.0.lot.flush();
    }
}

/// The loop thread: leads whenever no caller does and someone needs it.
pub(super) fn event_loop(core: Arc<Core<Mio>>, shared: Arc<LoopShared>) {
    let _ = shared.loop_thread.set(thread::current());
    let mut rested = false;
    loop {
        {
            let mut lead = lock(&shared.lead);
            while lead.leader != Leader::Loop {
                if lead.leader == Leader::Nobody
                    && (lead.parked > 0 || lead.pending || (rested && !lead.caller_led))
                {
                    lead.leader = Leader::Loop;
                    break;
                }
                // Callers lead themselves: look again after a rest, or
                // when asked. While one leads, sleep until it stops (a
                // long call would otherwise wake this thread every rest).
                // (A caller leading now counts as one that led in this
                // rest: when it stops, rest once more before taking over.)
                let untimed = lead.leader == Leader::Caller;
                lead.caller_led = untimed;
                lead.loop_sleeps = untimed;
                drop(lead);
                if untimed {
                    thread::park();
                } else {
                    thread::park_timeout(REST);
                }
                rested = true;
                lead = lock(&shared.lead);
                lead.loop_sleeps = false;
            }
            rested = false;
        }
        if turn(&core, &shared, &mut lock_state(&shared)) {
            return;
        }
        let mut lead = lock(&shared.lead);
        if lead.parked == 0 && !lead.pending {
            lead.leader = Leader::Nobody;
        }
    }
}

/// A caller's waker: wakes its thread, ends its poll while it leads, and
/// stops counting it as parked once its result is in.
///
/// One per thread, so waiting allocates nothing.
pub(super) struct CallerWaker {
    thread: Thread,
    id: ThreadId,
    /// This thread's bit in a parking lot.
    bit: u32,
    waiting: Mutex<Waiting>,
    /// Runs in a wake from another thread once the caller's state is let
    /// go: tests widen the gap there.
    #[cfg(test)]
    after_release: Mutex<Option<Box<dyn Fn() + Send>>>,
}

/// What a caller's thread is doing for the client it waits on.
enum Waiting {
    Idle,
    /// In `wait`, neither polling nor parked.
    Looking(Arc<LoopShared>),
    Leading(Arc<LoopShared>),
    Parked(Arc<LoopShared>),
}

impl CallerWaker {
    /// Stops counting this caller as parked, if it still is.
    fn unpark_count(&self) {
        let mut waiting = lock(&self.waiting);
        if let Waiting::Parked(shared) = &*waiting {
            let shared = shared.clone();
            *waiting = Waiting::Looking(shared.clone());
            drop(waiting);
            lock(&shared.lead).parked -= 1;
        }
    }

    /// Marks this thread as waiting on `shared`'s calls until the guard
    /// drops.
    pub(super) fn enter<'a>(&'a self, shared: &Arc<LoopShared>) -> Looking<'a> {
        *lock(&self.waiting) = Waiting::Looking(shared.clone());
        Looking(self)
    }
}

/// A caller inside `wait`.
pub(super) struct Looking<'a>(&'a CallerWaker);

impl Drop for Looking<'_> {
    fn drop(&mut self) {
        *lock(&self.0.waiting) = Waiting::Idle;
    }
}

impl Wake for CallerWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Woken from its own turn: it looks at its result after the turn,
        // which does not sleep in its poll now.
        if thread::current().id() == self.id {
            SELF_WOKEN.set(true);
            return;
        }
        let mut waiting = lock(&self.waiting);
        let (shared, parked) = match &*waiting {
            Waiting::Idle => {
                drop(waiting);
                return self.thread.unpark();
            }
            Waiting::Leading(shared) => {
                let _ = shared.waker.wake();
                return;
            }
            Waiting::Looking(shared) => (shared.clone(), false),
            Waiting::Parked(shared) => {
                // Its result is in: the leader need not stay on for it (a
                // leader that sees no parked caller after its turn steps
                // down, and the caller leads its next call itself).
                let shared = shared.clone();
                *waiting = Waiting::Looking(shared.clone());
                (shared, true)
            }
        };
        // Before letting go of the caller's state: a caller still looking
        // may park the moment it is free to, and must then find the word
        // moved, or it sleeps on a wake already spent.
        shared.lot.bump();
        drop(waiting);
        #[cfg(test)]
        if let Some(hook) = &*lock(&self.after_release) {
            hook();
        }
        if parked {
            lock(&shared.lead).parked -= 1;
            if !parking::BATCHED {
                self.thread.unpark();
            } else if InTurn::current(&shared) {
                shared.lot.defer(self.bit);
            } else {
                shared.lot.wake(self.bit);
            }
        }
    }
}

thread_local! {
    static CALLER: (Arc<CallerWaker>, Waker) = {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let me = Arc::new(CallerWaker {
            thread: thread::current(),
            id: thread::current().id(),
            bit: 1 << (n % 32),
            waiting: Mutex::new(Waiting::Idle),
            #[cfg(test)]
            after_release: Mutex::new(None),
        });
        (me.clone(), Waker::from(me))
    };
}

/// This thread's caller waker.
pub(super) fn caller_waker() -> (Arc<CallerWaker>, Waker) {
    CALLER.with(|(me, waker)| (me.clone(), waker.clone()))
}

/// Where a caller reads the parking lot's word before looking at its
/// result (see [`lead_or_park`]).
pub(super) fn seq(shared: &LoopShared) -> u32 {
    shared.lot.seq()
}

/// Leads the client's loop while `done` says no, if nobody else leads;
/// else parks until woken. Returns after one lead or one park: the caller
/// looks at its result again either way. `seen` is [`seq`] read before the
/// caller last looked.
pub(super) fn lead_or_park(
    core: &Arc<Core<Mio>>,
    shared: &Arc<LoopShared>,
    me: &CallerWaker,
    seen: u32,
    mut done: impl FnMut() -> bool,
) {
    {
        let mut waiting = lock(&me.waiting);
        let mut lead = lock(&shared.lead);
        if lead.leader != Leader::Nobody {
            lead.parked += 1;
            *waiting = Waiting::Parked(shared.clone());
            drop((lead, waiting));
            // Woken by its result's waker, or spuriously: the caller looks
            // again.
            shared.lot.wait(seen, me.bit);
            me.unpark_count();
            return;
        }
        // (`pending` stays: the turn clears it before its poll, and if no
        // turn runs, the release hands the lead to the loop thread.)
        lead.leader = Leader::Caller;
        lead.caller_led = true;
        *waiting = Waiting::Leading(shared.clone());
    }
    // Released however this ends, a panic included: a lead left held would
    // leave every parked caller parked for good.
    let _release = Release { shared, me };
    let mut st = lock_state(shared);
    // A result set by another thread before this thread was leading only
    // moved the lot's word: look before polling.
    while !done() {
        if turn(core, shared, &mut st) {
            return;
        }
    }
}

/// Ends a caller's lead: hands it to the loop thread if anyone needs it.
struct Release<'a> {
    shared: &'a Arc<LoopShared>,
    me: &'a CallerWaker,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        *lock(&self.me.waiting) = Waiting::Looking(Arc::clone(self.shared));
        let mut lead = lock(&self.shared.lead);
        if lead.parked > 0 || lead.pending {
            lead.leader = Leader::Loop;
            drop(lead);
            self.shared.unpark_loop();
        } else {
            lead.leader = Leader::Nobody;
            // It takes the lead back after a rest unless a caller leads
            // again: at most one unpark per rest while callers lead.
            if std::mem::take(&mut lead.loop_sleeps) {
                drop(lead);
                self.shared.unpark_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests;
