//! Sign-ins by Handshake, limited per peer: each peer has a bucket of
//! [`BURST`] attempts that refills by one every [`REFILL`]; an attempt
//! takes one and a success gives it back, so only failures count. A person
//! mistyping a password a few times never notices; a guesser gets one try
//! a second, and the password checks it could ask for stay bounded. The
//! buckets live in a map of at most [`MAX_PEERS`] peers, least recently
//! seen evicted, so an attacker with many addresses cannot grow it; an
//! evicted peer only gets a full bucket again, as a new address would.
//! Failures are logged at most once per [`LOG_EVERY`] per peer, with how
//! many there were since.

use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::SignInError;
use crate::stream_slots::Client;

/// Failed sign-ins a peer may have in a row.
const BURST: f64 = 5.0;
/// Then one more each this long.
const REFILL: Duration = Duration::from_secs(1);
/// Peers whose failures are remembered.
const MAX_PEERS: NonZeroUsize = NonZeroUsize::new(4096).unwrap();
/// At most one log line of a peer's failures this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct SignInLimit {
    peers: Mutex<LruCache<Client, Attempts>>,
}

/// One peer's bucket, and what of its failures is not logged yet.
#[derive(Debug)]
struct Attempts {
    left: f64,
    counted_at: Instant,
    logged_at: Option<Instant>,
    unlogged: u32,
}

impl Attempts {
    fn new(now: Instant) -> Self {
        Self {
            left: BURST,
            counted_at: now,
            logged_at: None,
            unlogged: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.counted_at);
        self.left = (self.left + elapsed.as_secs_f64() / REFILL.as_secs_f64()).min(BURST);
        self.counted_at = now;
    }
}

impl Default for SignInLimit {
    fn default() -> Self {
        Self::new(MAX_PEERS)
    }
}

impl SignInLimit {
    fn new(max_peers: NonZeroUsize) -> Self {
        Self {
            peers: Mutex::new(LruCache::new(max_peers)),
        }
    }

    /// Takes one attempt from `peer`'s bucket, or refuses saying how long
    /// to wait.
    pub(crate) fn begin(&self, peer: &Client, now: Instant) -> Result<(), SignInError> {
        let mut peers = self.lock();
        let attempts = peers.get_or_insert_mut(peer.clone(), || Attempts::new(now));
        attempts.refill(now);
        if attempts.left < 1.0 {
            let wait = (1.0 - attempts.left) * REFILL.as_secs_f64();
            return Err(SignInError::TooManyFailures {
                wait_seconds: wait.ceil() as u64,
            });
        }
        attempts.left -= 1.0;
        Ok(())
    }

    /// `peer` signed in: its attempt is given back.
    pub(crate) fn succeeded(&self, peer: &Client, now: Instant) {
        if let Some(attempts) = self.lock().get_mut(peer) {
            attempts.refill(now);
            attempts.left = (attempts.left + 1.0).min(BURST);
        }
    }

    /// `peer`'s sign-in failed with `error` (or was refused for failing
    /// too often): logged unless this peer was logged in the last
    /// [`LOG_EVERY`]. Never the password: no error carries it.
    pub(crate) fn failed(&self, peer: &Client, error: &dyn std::fmt::Display, now: Instant) {
        let mut peers = self.lock();
        let attempts = peers.get_or_insert_mut(peer.clone(), || Attempts::new(now));
        attempts.unlogged += 1;
        let due = attempts
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY);
        if due {
            tracing::warn!(
                peer = %peer,
                failures = attempts.unlogged,
                last = %error,
                "sign-ins refused (failures: since this peer's last such line, at most one a minute)"
            );
            attempts.logged_at = Some(now);
            attempts.unlogged = 0;
        }
    }

    /// A panic elsewhere while holding the lock leaves the counts sound
    /// (each update is one assignment), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, LruCache<Client, Attempts>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn peer(last_octet: u8) -> Client {
        Client::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)))
    }

    #[test]
    fn a_peer_fails_five_times_then_once_a_second() {
        let limit = SignInLimit::default();
        let (alice, start) = (peer(1), Instant::now());
        for _ in 0..5 {
            limit.begin(&alice, start).unwrap();
        }
        let refused = limit.begin(&alice, start).unwrap_err();
        assert!(
            matches!(refused, SignInError::TooManyFailures { wait_seconds: 1 }),
            "{refused:?}"
        );
        limit.begin(&peer(2), start).unwrap();
        let later = start + REFILL;
        limit.begin(&alice, later).unwrap();
        assert!(limit.begin(&alice, later).is_err());
    }

    #[test]
    fn successes_do_not_count_against_a_peer() {
        let limit = SignInLimit::default();
        let (alice, now) = (peer(1), Instant::now());
        for _ in 0..20 {
            limit.begin(&alice, now).unwrap();
            limit.succeeded(&alice, now);
        }
    }

    #[test]
    fn the_map_keeps_the_most_recent_peers_only() {
        let limit = SignInLimit::new(NonZeroUsize::new(3).unwrap());
        let now = Instant::now();
        for octet in 0..=255 {
            limit.begin(&peer(octet), now).unwrap();
        }
        let peers = limit.lock();
        assert_eq!(peers.len(), 3);
        assert!(peers.contains(&peer(255)) && !peers.contains(&peer(0)));
    }

    #[test]
    fn failures_are_logged_once_a_minute_per_peer_with_their_count() {
        let limit = SignInLimit::default();
        let (alice, start) = (peer(1), Instant::now());
        for _ in 0..10 {
            limit.failed(&alice, &"wrong user name or password", start);
        }
        let counted = |limit: &SignInLimit| {
            let mut peers = limit.lock();
            let attempts = peers.get_mut(&alice).unwrap();
            (attempts.unlogged, attempts.logged_at)
        };
        assert_eq!(counted(&limit), (9, Some(start)));
        limit.failed(&alice, &"wrong user name or password", start + LOG_EVERY);
        assert_eq!(counted(&limit), (0, Some(start + LOG_EVERY)));
    }
}
