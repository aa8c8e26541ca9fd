//! Connection and request deadlines with one timer per connection.
//!
//! Three limits apply to a client connection: the time to receive a whole request head
//! (`--header-timeout`, which also bounds how long an idle keep-alive connection is kept,
//! as hyper's `header_read_timeout` did), the time to receive a request body, and the time
//! to receive the target's response head (`--upstream-timeout`).
//!
//! A `tokio::time::timeout` (or hyper's header timer) per limit and per request arms and
//! cancels an entry in tokio's timer wheel each time: a boxed sleep, the wheel's mutex and
//! two clock reads. Under callgrind that was ~2.5k of the ~37k instructions of a forwarded
//! request. Here each connection owns one sleep, the [`Watchdog`]. Starting or ending a
//! request only updates a counter and a timestamp; the sleep is re-armed when it fires, and
//! only then are the deadlines compared with the clock. A deadline earlier than the sleep
//! (an `--upstream-timeout` shorter than `--header-timeout`) falls back to a timer of its
//! own, so every limit still holds to the millisecond.
//!
//! The same alarm carries the start of a graceful shutdown ([`Drain`]) to every connection.
//! hyper-util's graceful watcher polled a `tokio::sync::watch` receiver (a mutex-guarded
//! waiter list) on every wake-up of every connection, ~300 instructions per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// No request deadline is set.
const UNSET: u64 = u64::MAX;

/// The deadlines of one client connection, shared by the connection's [`Watchdog`] and the
/// requests it serves. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Deadlines {
    shared: Arc<Shared>,
}

struct Shared {
    /// Timestamps below are nanoseconds after this instant.
    origin: Instant,
    header_timeout: u64,
    /// Requests whose response has not ended.
    busy: AtomicU32,
    /// When `busy` last fell to zero (the connection's start at first).
    idle_since: AtomicU64,
    /// When the current wait (request body or response head) must end, or [`UNSET`].
    request_deadline: AtomicU64,
    /// Set by the watchdog when `request_deadline` has passed.
    expired: AtomicBool,
    /// The wait to wake when it expired.
    request_waker: AtomicWaker,
    /// When the watchdog's sleep fires next.
    armed: AtomicU64,
}

/// The waiting limit was reached.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Elapsed;

impl Deadlines {
    /// Deadlines for a connection accepted now, which `drain` can ask to close.
    pub(crate) fn new(header_timeout: Duration, drain: &Drain) -> (Self, Watchdog) {
        // Never zero (the configuration refuses it): a zero timeout would re-arm forever.
        let header_timeout = nanos(header_timeout).max(1_000_000);
        let origin = Instant::now();
        let shared = Arc::new(Shared {
            origin,
            header_timeout,
            busy: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            request_deadline: AtomicU64::new(UNSET),
            expired: AtomicBool::new(false),
            request_waker: AtomicWaker::new(),
            armed: AtomicU64::new(header_timeout),
        });
        let watchdog = Watchdog::new(shared.clone(), drain.clone());
        drain.register(&watchdog.alarm);
        (Deadlines { shared }, watchdog)
    }

    /// Marks a request as started; the connection is idle again when every returned
    /// [`Busy`] is dropped (the response has ended, or was abandoned).
    pub(crate) fn begin(&self) -> Busy {
        self.shared.busy.fetch_add(1, Ordering::AcqRel);
        Busy { deadlines: self.clone() }
    }

    /// Runs `wait`, giving up after `limit`. One wait at a time per connection (HTTP/1
    /// serves one request at a time). A wait that is ready at once reads no clock.
    pub(crate) fn within<F: Future>(&self, limit: Duration, wait: F) -> Within<'_, F> {
        Within { wait, shared: &self.shared, limit, watch: Watch::NotYet }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Deadlines::within`].
    pub(crate) struct Within<'a, F> {
        #[pin]
        wait: F,
        shared: &'a Shared,
        limit: Duration,
        watch: Watch<'a>,
    }
}

enum Watch<'a> {
    /// Not pending yet: no deadline taken.
    NotYet,
    /// The watchdog expires the wait (and the guard clears its deadline when it ends).
    Watchdog { _clear: ClearOnDrop<'a> },
    /// The deadline falls before the watchdog looks next: a timer of the wait's own.
    Timer(Pin<Box<Sleep>>),
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(done) = this.wait.poll(cx) {
            *this.watch = Watch::NotYet;
            return Poll::Ready(Ok(done));
        }
        let s = *this.shared;
        if let Watch::NotYet = this.watch {
            let deadline = s.now().saturating_add(nanos(*this.limit));
            *this.watch = if deadline < s.armed.load(Ordering::Acquire) {
                Watch::Timer(Box::pin(tokio::time::sleep_until(s.at(deadline))))
            } else {
                s.expired.store(false, Ordering::Release);
                s.request_deadline.store(deadline, Ordering::Release);
                Watch::Watchdog { _clear: ClearOnDrop(s) }
            };
        }
        let expired = match this.watch {
            Watch::Timer(sleep) => sleep.as_mut().poll(cx).is_ready(),
            _ => {
                s.request_waker.register(cx.waker());
                s.expired.load(Ordering::Acquire)
            }
        };
        if expired {
            *this.watch = Watch::NotYet;
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    }
}

impl Shared {
    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.origin))
    }

    fn at(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(UNSET - 1)
}

/// Clears the request deadline when a wait ends, however it ends.
struct ClearOnDrop<'a>(&'a Shared);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.request_deadline.store(UNSET, Ordering::Release);
    }
}

/// A request in progress; see [`Deadlines::begin`].
pub(crate) struct Busy {
    deadlines: Deadlines,
}

impl Busy {
    /// The deadlines of the request's connection.
    pub(crate) fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &*self.deadlines.shared;
        if s.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.idle_since.store(s.now(), Ordering::Release);
        }
    }
}

/// A response body that keeps its request [`Busy`] until it ends or is dropped: hyper drops
/// the body once its last frame is written, and only then waits for the next request head.
pub(crate) struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, busy: Busy) -> Self {
        Tracked { body, _busy: busy }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's one timer. Reports [`Event::Idle`] when the connection has been idle,
/// or has been sending a request head, for longer than the header timeout (the connection
/// is then closed), and [`Event::Drain`] once when a graceful shutdown starts. Along the
/// way it expires request waits that outlived their limit.
///
/// It is polled with the connection, on every wake-up of the connection's task; its sleep
/// is polled only when the alarm rang (the sleep fired, or the drain started), which keeps
/// the cost of those polls to two atomic operations.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    sleep: Pin<Box<Sleep>>,
    alarm: Arc<Alarm>,
    alarm_waker: Waker,
    drain: Drain,
    drain_reported: bool,
}

/// What the [`Watchdog`] saw.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Idle (or sending a head) beyond the header timeout: close the connection.
    Idle,
    /// A graceful shutdown started: finish the request in progress, then close.
    Drain,
}

/// The waker the watchdog's sleep is polled with: notes that it rang, then wakes the task.
struct Alarm {
    rang: AtomicBool,
    task: AtomicWaker,
}

impl Alarm {
    fn ring(&self) {
        self.rang.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.ring();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ring();
    }
}

impl Watchdog {
    fn new(shared: Arc<Shared>, drain: Drain) -> Self {
        let sleep = Box::pin(tokio::time::sleep_until(shared.at(shared.header_timeout)));
        // `rang` starts true so that the first poll registers the sleep (and sees a drain
        // that started before the connection registered).
        let alarm = Arc::new(Alarm { rang: AtomicBool::new(true), task: AtomicWaker::new() });
        let alarm_waker = Waker::from(alarm.clone());
        Watchdog { shared, sleep, alarm, alarm_waker, drain, drain_reported: false }
    }

    /// Polls for the next [`Event`].
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        self.alarm.task.register(cx.waker());
        if !self.alarm.rang.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let s = &*self.shared;
        let mut alarm_cx = Context::from_waker(&self.alarm_waker);
        while self.sleep.as_mut().poll(&mut alarm_cx).is_ready() {
            let now = s.now();
            let request_deadline = s.request_deadline.load(Ordering::Acquire);
            if request_deadline <= now {
                s.expired.store(true, Ordering::Release);
                s.request_waker.wake();
            }
            let mut next = if s.busy.load(Ordering::Acquire) == 0 {
                let idle_deadline = s.idle_since.load(Ordering::Acquire).saturating_add(s.header_timeout);
                if idle_deadline <= now {
                    return Poll::Ready(Event::Idle);
                }
                idle_deadline
            } else {
                // Busy connections are not timed out; look again later.
                now.saturating_add(s.header_timeout)
            };
            if request_deadline > now {
                next = next.min(request_deadline);
            }
            s.armed.store(next, Ordering::Release);
            self.sleep.as_mut().reset(s.at(next));
        }
        if !self.drain_reported && self.drain.started() {
            self.drain_reported = true;
            return Poll::Ready(Event::Drain);
        }
        Poll::Pending
    }
}

/// Starts the graceful shutdown of every open connection: each one's alarm rings.
#[derive(Clone, Default)]
pub(crate) struct Drain {
    shared: Arc<DrainShared>,
}

#[derive(Default)]
struct DrainShared {
    started: AtomicBool,
    /// The alarms of connections; entries of closed connections are pruned as it grows.
    alarms: Mutex<Vec<Weak<Alarm>>>,
}

impl Drain {
    fn register(&self, alarm: &Arc<Alarm>) {
        let mut alarms = self.shared.alarms.lock().unwrap_or_else(PoisonError::into_inner);
        if alarms.len() == alarms.capacity() {
            // Amortised: a prune before each doubling keeps it proportional to the open
            // connections, not to every connection ever accepted.
            alarms.retain(|a| a.strong_count() > 0);
        }
        alarms.push(Arc::downgrade(alarm));
    }

    /// Asks every connection, open now or registering later, to finish and close.
    pub(crate) fn start(&self) {
        self.shared.started.store(true, Ordering::Release);
        let alarms = std::mem::take(&mut *self.shared.alarms.lock().unwrap_or_else(PoisonError::into_inner));
        for alarm in alarms.iter().filter_map(Weak::upgrade) {
            alarm.ring();
        }
    }

    fn started(&self) -> bool {
        self.shared.started.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(30);

    /// Runs a watchdog until it reports `Idle` (a drain is reported at most once before).
    async fn until_idle(mut watchdog: Watchdog) {
        for _ in 0..2 {
            if std::future::poll_fn(|cx| watchdog.poll_event(cx)).await == Event::Idle {
                return;
            }
        }
        panic!("no idle report");
    }

    fn deadlines(header_timeout: Duration) -> (Deadlines, Watchdog) {
        Deadlines::new(header_timeout, &Drain::default())
    }

    /// Fails (rather than hangs) a test whose future never ends; time is paused, so the
    /// bound costs no real time.
    async fn bounded<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(3600), f).await.expect("ended within the hour")
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_ends_after_the_header_timeout() {
        let (_deadlines, watchdog) = deadlines(HEADER);
        let started = Instant::now();
        bounded(until_idle(watchdog)).await;
        assert_eq!(started.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_clock_restarts_when_the_last_response_ends() {
        let (deadlines, watchdog) = deadlines(HEADER);
        let started = Instant::now();
        let busy = deadlines.begin();
        let watchdog = tokio::spawn(until_idle(watchdog));
        // A request (a long stream, say) outlives several header timeouts.
        tokio::time::sleep(HEADER * 3 + Duration::from_secs(1)).await;
        assert!(!watchdog.is_finished(), "a busy connection is never timed out");
        drop(busy);
        bounded(watchdog).await.unwrap();
        assert_eq!(started.elapsed(), HEADER * 4 + Duration::from_secs(1));
    }

    /// 300 s: later than the watchdog's sleep, which expires the wait; 300 ms: earlier, so
    /// the wait takes a timer of its own.
    #[tokio::test(start_paused = true)]
    async fn a_wait_is_expired_at_its_limit_and_not_before() {
        for limit in [Duration::from_secs(300), Duration::from_millis(300)] {
            let (deadlines, watchdog) = deadlines(HEADER);
            let _watchdog = tokio::spawn(until_idle(watchdog));
            let _busy = deadlines.begin();
            let started = Instant::now();
            assert_eq!(bounded(deadlines.within(limit, std::future::pending::<()>())).await, Err(Elapsed));
            assert_eq!(started.elapsed(), limit);
            // A wait that ends in time returns its value; a ready one at once.
            let quick = deadlines.within(limit, tokio::time::sleep(limit - Duration::from_millis(1)));
            assert_eq!(quick.await, Ok(()));
            assert_eq!(deadlines.within(limit, async { 7 }).await, Ok(7));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_reaches_connections_open_before_and_after_it_starts() {
        let drain = Drain::default();
        let (_before, mut open) = Deadlines::new(HEADER, &drain);
        // The first poll registers the sleep; nothing to report yet.
        let first = std::future::poll_fn(|cx| Poll::Ready(open.poll_event(cx))).await;
        assert_eq!(first, Poll::Pending);
        drain.start();
        let started = Instant::now();
        assert_eq!(bounded(std::future::poll_fn(|cx| open.poll_event(cx))).await, Event::Drain);
        assert_eq!(started.elapsed(), Duration::ZERO, "at once, not at the next timer");
        let (_after, mut late) = Deadlines::new(HEADER, &drain);
        assert_eq!(bounded(std::future::poll_fn(|cx| late.poll_event(cx))).await, Event::Drain);
        // Reported once; the idle timeout still applies afterwards.
        bounded(until_idle(late)).await;
        assert_eq!(started.elapsed(), HEADER);
    }
}
