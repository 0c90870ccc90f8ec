//! `poll_oneoff`: waiting on clocks and stdio.
//!
//! - Stdio is always ready: stdin holds the whole request body (`nbytes` is what is left of it,
//!   with the hang-up flag once all of it was read), stdout takes up to the output limit, stderr
//!   takes anything (past its cap it is dropped). Any other descriptor gets an event with BADF.
//! - When nothing is ready at once, the call sleeps until the earliest clock subscription is due
//!   (relative, or absolute on the realtime or monotonic clock) and reports every one due then.
//! - A sleep never outlasts the request: one that would end past the deadline sleeps until the
//!   deadline and stops the guest with [`WaitStopped::PastDeadline`] (a timeout).
//! - A run on an async worker ([`super::super::inline`]) must not sleep there: it stops with
//!   [`WaitStopped::Refused`], and the request runs again on a guest thread.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmer::{FunctionEnvMut, MemoryView};

use super::{
    ERRNO_BADF, ERRNO_FAULT, ERRNO_INVAL, ERRNO_SUCCESS, STDERR_CAP, WasiState, monotonic_epoch,
    with_memory, write_bytes,
};

/// Bytes of one `subscription`.
const SUBSCRIPTION_SIZE: usize = 48;
/// Bytes of one `event`.
const EVENT_SIZE: usize = 32;
/// Most subscriptions one call may pass (bounds what the host reads and allocates).
pub(crate) const MAX_SUBSCRIPTIONS: u32 = 1024;

const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const EVENTRWFLAGS_HANGUP: u16 = 1;
const CLOCKID_REALTIME: u32 = 0;
const CLOCKID_MONOTONIC: u32 = 1;

/// Why a guest's wait stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WaitStopped {
    /// The run may not sleep where it is (an inline run): it moves to a guest thread.
    #[error("the guest waits, which it may not do on an async worker")]
    Refused,
    /// The wait would end past the request's deadline.
    #[error("the guest waits past its deadline")]
    PastDeadline,
}

/// One event to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    userdata: u64,
    errno: u16,
    kind: u8,
    nbytes: u64,
    flags: u16,
}

impl Event {
    fn encode(&self) -> [u8; EVENT_SIZE] {
        let mut bytes = [0u8; EVENT_SIZE];
        bytes[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        bytes[8..10].copy_from_slice(&self.errno.to_le_bytes());
        bytes[10] = self.kind;
        bytes[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        bytes[24..26].copy_from_slice(&self.flags.to_le_bytes());
        bytes
    }
}

/// What one subscription asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    /// Ready now.
    Ready(Event),
    /// A clock due at the instant.
    Clock { userdata: u64, due: Instant },
}

/// The per-request facts a subscription is judged against.
struct Stdio {
    stdin_left: u64,
    stdout_room: u64,
}

pub(super) fn poll_oneoff(
    mut env: FunctionEnvMut<WasiState>,
    subscriptions: i32,
    events: i32,
    count: i32,
    nevents: i32,
) -> Result<i32, WaitStopped> {
    let count = count as u32;
    if count == 0 || count > MAX_SUBSCRIPTIONS {
        return Ok(ERRNO_INVAL);
    }
    let now = Instant::now();
    let mut parsed = Vec::with_capacity(count as usize);
    let errno = with_memory(&mut env, |state, view| {
        let stdio = Stdio {
            stdin_left: (state.stdin.len() - state.stdin_pos) as u64,
            stdout_room: state.max_output.saturating_sub(state.stdout.len()) as u64,
        };
        let mut raw = vec![0u8; count as usize * SUBSCRIPTION_SIZE];
        view.read(u64::from(subscriptions as u32), &mut raw)
            .map_err(|_| ERRNO_FAULT)?;
        for bytes in raw.chunks_exact(SUBSCRIPTION_SIZE) {
            parsed.push(parse(bytes, &stdio, now)?);
        }
        Ok(())
    });
    if errno != ERRNO_SUCCESS {
        return Ok(errno);
    }

    let mut due: Vec<Event> = parsed
        .iter()
        .filter_map(|s| match s {
            Subscription::Ready(event) => Some(*event),
            Subscription::Clock { .. } => None,
        })
        .collect();
    if due.is_empty() {
        let earliest = parsed
            .iter()
            .filter_map(|s| match s {
                Subscription::Clock { due, .. } => Some(*due),
                Subscription::Ready(_) => None,
            })
            .min()
            .unwrap_or(now);
        wait_until(env.data(), earliest)?;
        let woke = Instant::now();
        due = parsed
            .iter()
            .filter_map(|s| match s {
                Subscription::Clock { userdata, due } if *due <= woke => {
                    Some(clock_event(*userdata, 0))
                }
                _ => None,
            })
            .collect();
    }
    Ok(with_memory(&mut env, |_, view| {
        write_events(view, events as u32, &due)?;
        write_bytes(view, nevents as u32, &(due.len() as u32).to_le_bytes())
    }))
}

/// Sleeps until `due`, unless that is refused or past the deadline.
fn wait_until(state: &WasiState, due: Instant) -> Result<(), WaitStopped> {
    let now = Instant::now();
    if due <= now {
        return Ok(());
    }
    if !state.may_wait {
        return Err(WaitStopped::Refused);
    }
    std::thread::sleep(due.min(state.deadline).saturating_duration_since(now));
    if due > state.deadline {
        return Err(WaitStopped::PastDeadline);
    }
    Ok(())
}

fn write_events(view: &MemoryView<'_>, at: u32, events: &[Event]) -> Result<(), i32> {
    let bytes: Vec<u8> = events.iter().flat_map(Event::encode).collect();
    write_bytes(view, at, &bytes)
}

fn clock_event(userdata: u64, errno: i32) -> Event {
    Event {
        userdata,
        errno: errno as u16,
        kind: EVENTTYPE_CLOCK,
        nbytes: 0,
        flags: 0,
    }
}

fn parse(bytes: &[u8], stdio: &Stdio, now: Instant) -> Result<Subscription, i32> {
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let u32_at = |at: usize| {
        let mut word = [0u8; 4];
        word.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(word)
    };
    let userdata = u64_at(0);
    match bytes[8] {
        EVENTTYPE_CLOCK => {
            let flags = u16::from_le_bytes([bytes[40], bytes[41]]);
            let absolute = flags & SUBCLOCKFLAGS_ABSTIME != 0;
            let Some(due) = clock_due(u32_at(16), u64_at(24), absolute, now) else {
                return Ok(Subscription::Ready(clock_event(userdata, ERRNO_INVAL)));
            };
            Ok(match due <= now {
                true => Subscription::Ready(clock_event(userdata, ERRNO_SUCCESS)),
                false => Subscription::Clock { userdata, due },
            })
        }
        kind @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => {
            let ready = match (kind, u32_at(16)) {
                (EVENTTYPE_FD_READ, 0) => Some(stdio.stdin_left),
                (EVENTTYPE_FD_WRITE, 1) => Some(stdio.stdout_room),
                (EVENTTYPE_FD_WRITE, 2) => Some(STDERR_CAP as u64),
                _ => None,
            };
            let hang_up = kind == EVENTTYPE_FD_READ && ready == Some(0);
            Ok(Subscription::Ready(Event {
                userdata,
                errno: ready.map_or(ERRNO_BADF, |_| ERRNO_SUCCESS) as u16,
                kind,
                nbytes: ready.unwrap_or(0),
                flags: if hang_up { EVENTRWFLAGS_HANGUP } else { 0 },
            }))
        }
        _ => Err(ERRNO_INVAL),
    }
}

/// A time so far ahead it stands for never (a year).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a clock subscription is due, or `None` for a clock this host does not offer. A time too
/// far ahead to represent is due never (the deadline ends the wait).
fn clock_due(clock: u32, timeout_ns: u64, absolute: bool, now: Instant) -> Option<Instant> {
    let far = now + NEVER;
    let after = |ns: u64| now.checked_add(Duration::from_nanos(ns)).unwrap_or(far);
    match (clock, absolute) {
        (CLOCKID_REALTIME | CLOCKID_MONOTONIC, false) => Some(after(timeout_ns)),
        (CLOCKID_MONOTONIC, true) => {
            let epoch = monotonic_epoch();
            Some(
                epoch
                    .checked_add(Duration::from_nanos(timeout_ns))
                    .unwrap_or(far),
            )
        }
        (CLOCKID_REALTIME, true) => {
            let wall_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            Some(after(timeout_ns.saturating_sub(wall_ns)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(userdata: u64, tag: u8, word16: u32, timeout: u64, flags: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; SUBSCRIPTION_SIZE];
        bytes[0..8].copy_from_slice(&userdata.to_le_bytes());
        bytes[8] = tag;
        bytes[16..20].copy_from_slice(&word16.to_le_bytes());
        bytes[24..32].copy_from_slice(&timeout.to_le_bytes());
        bytes[40..42].copy_from_slice(&flags.to_le_bytes());
        bytes
    }

    const STDIO: Stdio = Stdio {
        stdin_left: 5,
        stdout_room: 100,
    };

    #[test]
    fn stdio_is_ready_at_once_and_other_descriptors_are_bad() {
        let now = Instant::now();
        let read = parse(&subscription(7, EVENTTYPE_FD_READ, 0, 0, 0), &STDIO, now);
        assert_eq!(
            read,
            Ok(Subscription::Ready(Event {
                userdata: 7,
                errno: 0,
                kind: EVENTTYPE_FD_READ,
                nbytes: 5,
                flags: 0
            }))
        );
        let drained = Stdio {
            stdin_left: 0,
            ..STDIO
        };
        let Ok(Subscription::Ready(eof)) =
            parse(&subscription(7, EVENTTYPE_FD_READ, 0, 0, 0), &drained, now)
        else {
            panic!("stdin is not ready at its end");
        };
        assert_eq!(eof.flags, EVENTRWFLAGS_HANGUP);
        let Ok(Subscription::Ready(write)) =
            parse(&subscription(8, EVENTTYPE_FD_WRITE, 1, 0, 0), &STDIO, now)
        else {
            panic!("stdout is not ready");
        };
        assert_eq!((write.errno, write.nbytes), (0, 100));
        let Ok(Subscription::Ready(bad)) =
            parse(&subscription(9, EVENTTYPE_FD_WRITE, 5, 0, 0), &STDIO, now)
        else {
            panic!("fd 5 got no event");
        };
        assert_eq!(bad.errno as i32, ERRNO_BADF);
        assert_eq!(
            parse(&subscription(9, 3, 0, 0, 0), &STDIO, now),
            Err(ERRNO_INVAL)
        );
    }

    #[test]
    fn clocks_are_due_after_their_timeout_or_at_their_absolute_time() {
        let now = Instant::now();
        let relative = parse(
            &subscription(1, EVENTTYPE_CLOCK, CLOCKID_MONOTONIC, 5_000_000, 0),
            &STDIO,
            now,
        );
        assert_eq!(
            relative,
            Ok(Subscription::Clock {
                userdata: 1,
                due: now + Duration::from_millis(5)
            })
        );
        // An absolute time already past is due at once.
        let past = parse(
            &subscription(
                2,
                EVENTTYPE_CLOCK,
                CLOCKID_REALTIME,
                1,
                SUBCLOCKFLAGS_ABSTIME,
            ),
            &STDIO,
            now,
        );
        assert_eq!(past, Ok(Subscription::Ready(clock_event(2, 0))));
        let unknown = parse(&subscription(3, EVENTTYPE_CLOCK, 9, 1, 0), &STDIO, now);
        assert_eq!(
            unknown,
            Ok(Subscription::Ready(clock_event(3, ERRNO_INVAL)))
        );
        let forever = parse(
            &subscription(4, EVENTTYPE_CLOCK, CLOCKID_MONOTONIC, u64::MAX, 0),
            &STDIO,
            now,
        );
        assert!(matches!(forever, Ok(Subscription::Clock { due, .. }) if due > now));
    }
}
