//! Login throttling for password (Basic) authentication, a concurrency gate for password hashes, and
//! extraction of the client address behind trusted reverse proxies.
//!
//! # Intended use, per password attempt
//!
//! 1. `let source = client_source(peer, x_forwarded_for, &trusted_proxies);`
//! 2. A valid bearer token or a cached Basic credential is accepted **before** any of this and is never
//!    throttled nor counted: only attempts that would run the password hash go through steps 3–6.
//! 3. `throttle.check(user, source, Instant::now())` — on `Err(closed)` answer `429 Too Many Requests` with
//!    `Retry-After: closed.retry_after_secs()` at once, **without** running the hash. A refused attempt is
//!    not counted as a failure (no password was checked).
//! 4. `gate.try_acquire()` — on `None` answer `503 Service Unavailable` (the hash capacity is exhausted).
//!    Hold the [`HashPermit`] while hashing; it is `Send + 'static`, so it can be moved into a
//!    blocking task together with the hash computation.
//! 5. Verify the password.
//! 6. On a failure (wrong password **or unknown user name**; do not reveal which) call
//!    `throttle.record_failure(user, source, now)` and write one audit row per returned [`Closure`];
//!    on a success call `throttle.record_success(user, source, now)`.
//!
//! # Rules
//!
//! * Pair rule: [`ThrottleConfig::per_user_source`] (default 10) failures of one user name from one source
//!   within [`WINDOW`] (60 s) close that (user, source) pair. A user name alone never locks an account: the
//!   same user from another source is unaffected.
//! * Source rule: [`ThrottleConfig::per_source`] (default 100) failures from one source within 60 s, over any
//!   user names, close that source for every user name.
//! * A limit of 0 disables its rule (nothing is stored for it).
//! * A closure lasts [`BASE_CLOSURE`] (60 s), doubling on each repeat closure of the same key (60, 120, 240,
//!   480 s, …) up to [`MAX_CLOSURE`] (15 min). The escalation is forgotten once the key has stayed open for
//!   [`MAX_CLOSURE`] after its last closure ended (so waiting it out never buys an attacker a faster rate
//!   than the capped 15 min regime).
//! * The window is *sliding*: a failure counts for exactly 60 s after it happened (a failure exactly 60 s
//!   old no longer counts). Failures are kept as timestamps, at most `limit` per key.
//! * On closure the key's failure log is cleared, so a reopened key starts counting from zero; failures
//!   recorded while a key is closed (requests that passed `check` concurrently) are ignored for that key, so
//!   a closure is reported exactly once.
//!
//! # Keys
//!
//! * Sources: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) counts as the IPv4 address; IPv4 is keyed per address,
//!   IPv6 per /64 prefix (see [`SourceKey`]).
//! * User names are lowercased (Unicode `to_lowercase`) and truncated to [`MAX_USER_KEY_BYTES`] for the key,
//!   so case variations cannot be used to get fresh counters. Distinct accounts that differ only in case
//!   share one counter per source — stricter, never weaker.
//!
//! # Memory
//!
//! Each of the two tables (pairs, sources) holds at most [`ThrottleConfig::max_entries`] keys (default
//! 100,000). Entries carrying no information any more (no failure within the window, no closure within the
//! last [`MAX_CLOSURE`] after it ended) are swept at most once per window, and whenever a table is full.
//! When a table is still full, open keys are evicted in a batch (1/16 of the cap), least recently active
//! first. **Closed keys are never evicted**, so the cap cannot be used to unlock a closed key early; if a
//! table is entirely made of closed keys, failures of *new* keys of that table are not counted (see
//! [`ThrottleStats::untracked`]) until the earliest closure ends — the other table still applies.
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// Failures are counted over a sliding window of this length.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Length of the first closure of a key.
pub const BASE_CLOSURE: Duration = Duration::from_secs(60);
/// Longest closure; also how long a key must stay open after a closure before its escalation is forgotten.
pub const MAX_CLOSURE: Duration = Duration::from_secs(15 * 60);
/// Default failures per (user, source) pair per window.
pub const DEFAULT_PER_USER_SOURCE: u32 = 10;
/// Default failures per source per window.
pub const DEFAULT_PER_SOURCE: u32 = 100;
/// Default maximum number of keys per table.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// User names are truncated to this many bytes (at a char boundary) in the throttle key.
pub const MAX_USER_KEY_BYTES: usize = 256;

/// Settings of a [`Throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures of one user from one source per 60 s that close the pair; 0 disables the rule.
    pub per_user_source: u32,
    /// Failures from one source per 60 s that close the source; 0 disables the rule.
    pub per_source: u32,
    /// Maximum number of keys in each of the two tables (values below 1 are treated as 1).
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_user_source: DEFAULT_PER_USER_SOURCE,
            per_source: DEFAULT_PER_SOURCE,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Which rule a closure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A (user name, source) pair.
    Pair,
    /// A source, for every user name.
    Source,
}

/// Answer of [`Throttle::check`] for a closed key: reply 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Time until the key opens again.
    pub retry_after: Duration,
    /// The closed rule (the one that stays closed longest, if both are closed).
    pub scope: Scope,
}

impl Closed {
    /// `retry_after` in whole seconds for the `Retry-After` header: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            Scope::Pair => "user and source",
            Scope::Source => "source",
        };
        write!(f, "too many failed logins for this {scope}; retry after {} s", self.retry_after_secs())
    }
}

impl std::error::Error for Closed {}

/// A key that has just closed, returned once by [`Throttle::record_failure`]: write one audit row for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// Which rule closed.
    pub scope: Scope,
    /// Human-readable key, e.g. `user "alice" from 192.0.2.7` or `source 2001:db8::/64` (user names are
    /// escaped with Rust's `Debug` quoting, so control characters cannot forge log lines).
    pub key: String,
    /// Normalised user name (lowercased, truncated) for [`Scope::Pair`]; `None` for [`Scope::Source`].
    pub user: Option<String>,
    /// Normalised source.
    pub source: SourceKey,
    /// When the key opens again.
    pub until: Instant,
    /// Length of this closure (60 s, 120 s, … 15 min).
    pub retry_after: Duration,
    /// 1 for the first closure of the key, 2 for the first repeat, …
    pub strike: u32,
}

impl fmt::Display for Closure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} closed for {} s (strike {})", self.key, self.retry_after.as_secs(), self.strike)
    }
}

/// A normalised source address: IPv4 (also when given IPv4-mapped IPv6) as is, IPv6 reduced to its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    /// Normalises `ip`.
    pub fn new(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => Self(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128)))),
        }
    }

    /// The network address (the IPv4 address, or the IPv6 /64 prefix with the host bits zeroed).
    pub fn addr(&self) -> IpAddr {
        self.0
    }

    /// 32 for IPv4, 64 for IPv6.
    pub fn prefix_len(&self) -> u8 {
        match self.0 {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 64,
        }
    }
}

impl From<IpAddr> for SourceKey {
    fn from(ip: IpAddr) -> Self {
        Self::new(ip)
    }
}

impl From<Ipv4Addr> for SourceKey {
    fn from(ip: Ipv4Addr) -> Self {
        Self::new(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for SourceKey {
    fn from(ip: Ipv6Addr) -> Self {
        Self::new(IpAddr::V6(ip))
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The user-name part of a throttle key: lowercased, truncated to [`MAX_USER_KEY_BYTES`] at a char boundary.
pub fn normalize_user(user: &str) -> String {
    let mut key = user.to_lowercase();
    if key.len() > MAX_USER_KEY_BYTES {
        let mut end = MAX_USER_KEY_BYTES;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key.truncate(end);
    }
    key
}

/// Sizes of the throttle's tables, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleStats {
    /// Keys in the (user, source) table.
    pub pairs: usize,
    /// Keys in the source table.
    pub sources: usize,
    /// Failures of new keys that were not counted because a table was full of closed keys.
    pub untracked: u64,
}

/// Length of the closure number `strike` (1-based): 60 s · 2^(strike−1), at most 15 min.
fn closure_duration(strike: u32) -> Duration {
    let shift = strike.saturating_sub(1).min(16);
    BASE_CLOSURE.saturating_mul(1 << shift).min(MAX_CLOSURE)
}

#[derive(Debug)]
struct Entry {
    /// Timestamps of the most recent failures, oldest first, at most `limit`.
    failures: VecDeque<Instant>,
    last_failure: Instant,
    /// End of the latest closure (kept after it ends, for the escalation).
    closed_until: Option<Instant>,
    /// Closures in the current escalation streak.
    strikes: u32,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self { failures: VecDeque::new(), last_failure: now, closed_until: None, strikes: 0 }
    }

    fn is_closed(&self, now: Instant) -> bool {
        self.closed_until.is_some_and(|until| now < until)
    }

    /// Whether the entry carries no information any more and can be dropped.
    fn is_reclaimable(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_failure) >= WINDOW
            && self.closed_until.is_none_or(|until| now.saturating_duration_since(until) >= MAX_CLOSURE)
    }

    fn last_activity(&self) -> Instant {
        self.closed_until.map_or(self.last_failure, |until| until.max(self.last_failure))
    }

    /// Counts one failure; returns `(until, length, strike)` when it closes the key.
    fn record(&mut self, limit: u32, now: Instant) -> Option<(Instant, Duration, u32)> {
        if self.is_closed(now) {
            return None;
        }
        while self.failures.front().is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW) {
            self.failures.pop_front();
        }
        // Callers may race with slightly older `now`s: keep the log sorted.
        let stamp = self.failures.back().map_or(now, |&last| last.max(now));
        self.failures.push_back(stamp);
        self.last_failure = self.last_failure.max(now);
        if self.failures.len() < limit as usize {
            return None;
        }
        self.failures = VecDeque::new();
        if self.closed_until.is_some_and(|until| now.saturating_duration_since(until) >= MAX_CLOSURE) {
            self.strikes = 0;
        }
        self.strikes = self.strikes.saturating_add(1);
        let length = closure_duration(self.strikes);
        let until = now + length;
        self.closed_until = Some(until);
        Some((until, length, self.strikes))
    }
}

#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, Entry>,
    limit: u32,
    cap: usize,
    next_sweep: Option<Instant>,
    /// Set when the table is full of closed keys: no point looking for room before this.
    no_room_until: Option<Instant>,
    untracked: u64,
}

impl<K: Eq + Hash> Table<K> {
    fn new(limit: u32, cap: usize) -> Self {
        Self { map: HashMap::new(), limit, cap: cap.max(1), next_sweep: None, no_room_until: None, untracked: 0 }
    }

    fn enabled(&self) -> bool {
        self.limit > 0
    }

    fn closed_until(&self, key: &K, now: Instant) -> Option<Instant> {
        self.map.get(key).and_then(|entry| entry.closed_until.filter(|&until| now < until))
    }

    fn record(&mut self, key: K, now: Instant) -> Option<(Instant, Duration, u32)> {
        self.maybe_sweep(now);
        if let Some(entry) = self.map.get_mut(&key) {
            return entry.record(self.limit, now);
        }
        if !self.make_room(now) {
            self.untracked += 1;
            return None;
        }
        let mut entry = Entry::new(now);
        let closed = entry.record(self.limit, now);
        self.map.insert(key, entry);
        closed
    }

    fn remove_unless_closed(&mut self, key: &K, now: Instant) {
        if self.map.get(key).is_some_and(|entry| !entry.is_closed(now)) {
            self.map.remove(key);
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, entry| !entry.is_reclaimable(now));
        self.next_sweep = now.checked_add(WINDOW);
    }

    fn maybe_sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|next| now >= next) {
            self.sweep(now);
        }
    }

    /// Makes room for one new key; false if the table is full of closed keys.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.map.len() < self.cap {
            return true;
        }
        if self.no_room_until.is_some_and(|until| now < until) {
            return false;
        }
        self.sweep(now);
        // Evict in batches so that a table kept full costs O(1) amortised per new key.
        let target = self.cap - (self.cap / 16).max(1);
        if self.map.len() > target {
            let mut activity: Vec<Instant> =
                self.map.values().filter(|entry| !entry.is_closed(now)).map(Entry::last_activity).collect();
            let evict = (self.map.len() - target).min(activity.len());
            if evict > 0 {
                let threshold = *activity.select_nth_unstable(evict - 1).1;
                let mut evicted = 0;
                self.map.retain(|_, entry| {
                    let drop = evicted < evict && !entry.is_closed(now) && entry.last_activity() <= threshold;
                    evicted += usize::from(drop);
                    !drop
                });
            }
        }
        if self.map.len() >= self.cap {
            self.no_room_until = self.map.values().filter_map(|entry| entry.closed_until).filter(|&u| now < u).min();
            return false;
        }
        self.no_room_until = None;
        true
    }
}

type PairKey = (Box<str>, SourceKey);

#[derive(Debug)]
struct Tables {
    pairs: Table<PairKey>,
    sources: Table<SourceKey>,
}

/// In-memory login throttle; see the [module documentation](self). All methods take `&self`
/// (one internal `Mutex`); share it with an `Arc`.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    tables: Mutex<Tables>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

impl Throttle {
    /// A throttle with the given settings.
    pub fn new(config: ThrottleConfig) -> Self {
        let tables = Tables {
            pairs: Table::new(config.per_user_source, config.max_entries),
            sources: Table::new(config.per_source, config.max_entries),
        };
        Self { config, tables: Mutex::new(tables) }
    }

    /// The settings.
    pub fn config(&self) -> ThrottleConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // The tables stay consistent even if a holder panicked; keep throttling rather than failing open.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Call before hashing: `Err` means answer 429 with `Retry-After` right away. Never stores anything.
    pub fn check(&self, user: &str, source: IpAddr, now: Instant) -> Result<(), Closed> {
        let source = SourceKey::new(source);
        let tables = self.lock();
        let source_until = tables.sources.closed_until(&source, now);
        let pair_until = if tables.pairs.enabled() && !tables.pairs.map.is_empty() {
            tables.pairs.closed_until(&(normalize_user(user).into_boxed_str(), source), now)
        } else {
            None
        };
        let (until, scope) = match (pair_until, source_until) {
            (None, None) => return Ok(()),
            (Some(pair), Some(src)) if pair > src => (pair, Scope::Pair),
            (Some(pair), None) => (pair, Scope::Pair),
            (_, Some(src)) => (src, Scope::Source),
        };
        Err(Closed { retry_after: until.saturating_duration_since(now), scope })
    }

    /// Counts a failed password attempt (unknown user names included). Returns the keys that this very
    /// failure closed — usually none, at most one per rule (the pair and the source may close on the same
    /// failure). A key is returned once per closure: failures while it is closed are not counted for it.
    #[must_use = "write one audit row per returned Closure"]
    pub fn record_failure(&self, user: &str, source: IpAddr, now: Instant) -> Vec<Closure> {
        let source = SourceKey::new(source);
        let mut closures = Vec::new();
        let mut tables = self.lock();
        if tables.pairs.enabled() {
            let user = normalize_user(user);
            let key = (user.clone().into_boxed_str(), source);
            if let Some((until, retry_after, strike)) = tables.pairs.record(key, now) {
                closures.push(Closure {
                    scope: Scope::Pair,
                    key: format!("user {user:?} from {source}"),
                    user: Some(user),
                    source,
                    until,
                    retry_after,
                    strike,
                });
            }
        }
        if tables.sources.enabled()
            && let Some((until, retry_after, strike)) = tables.sources.record(source, now)
        {
            closures.push(Closure {
                scope: Scope::Source,
                key: format!("source {source}"),
                user: None,
                source,
                until,
                retry_after,
                strike,
            });
        }
        closures
    }

    /// Records a successful password login: forgets the pair's failures and escalation, unless the pair is
    /// currently closed (a success that raced with the closure does not unlock it). The source counter is
    /// not reset (an attacker with one valid account must not be able to reset it).
    pub fn record_success(&self, user: &str, source: IpAddr, now: Instant) {
        let mut tables = self.lock();
        if tables.pairs.enabled() && !tables.pairs.map.is_empty() {
            let key = (normalize_user(user).into_boxed_str(), SourceKey::new(source));
            tables.pairs.remove_unless_closed(&key, now);
        }
    }

    /// Current table sizes.
    pub fn stats(&self) -> ThrottleStats {
        let tables = self.lock();
        ThrottleStats {
            pairs: tables.pairs.map.len(),
            sources: tables.sources.map.len(),
            untracked: tables.pairs.untracked + tables.sources.untracked,
        }
    }
}

#[derive(Debug)]
struct GateState {
    max: usize,
    in_use: AtomicUsize,
}

/// Limits the number of password hashes computed at once. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct HashGate {
    state: Arc<GateState>,
}

impl Default for HashGate {
    /// As many permits as `std::thread::available_parallelism()` (1 if unknown).
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }
}

impl HashGate {
    /// A gate admitting `max` concurrent hashes (0 is treated as 1: a gate that admits nobody would lock
    /// every password user out).
    pub fn new(max: usize) -> Self {
        Self { state: Arc::new(GateState { max: max.max(1), in_use: AtomicUsize::new(0) }) }
    }

    /// The number of permits.
    pub fn max(&self) -> usize {
        self.state.max
    }

    /// Permits currently held.
    pub fn in_use(&self) -> usize {
        self.state.in_use.load(Ordering::Acquire)
    }

    /// A permit if fewer than `max` are held, else `None` (answer 503). Never blocks.
    pub fn try_acquire(&self) -> Option<HashPermit> {
        let mut current = self.state.in_use.load(Ordering::Relaxed);
        loop {
            if current >= self.state.max {
                return None;
            }
            match self.state.in_use.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(HashPermit { state: Arc::clone(&self.state) }),
                Err(actual) => current = actual,
            }
        }
    }
}

/// One hash slot of a [`HashGate`], released on drop.
#[must_use = "the slot is released as soon as the permit is dropped"]
#[derive(Debug)]
pub struct HashPermit {
    state: Arc<GateState>,
}

impl Drop for HashPermit {
    fn drop(&mut self) {
        self.state.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client's address. If `peer` (the TCP peer) is not in `trusted_proxies`, it is the client. Otherwise
/// `x_forwarded_for` (all `X-Forwarded-For` header values joined with `,`) is walked from the right (the
/// hop nearest to us) and the first address that is not a trusted proxy is returned. If the walk meets a
/// malformed entry, the chain cannot be trusted further and the last address reached (a trusted proxy) is
/// returned; if every entry is a trusted proxy, the leftmost is returned. Empty entries are skipped.
///
/// Entries may be `1.2.3.4`, `1.2.3.4:port`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:port`, each
/// optionally in double quotes; an unbracketed IPv6 address is never read as having a port. All addresses,
/// including `peer`, are canonicalised (`::ffff:1.2.3.4` → `1.2.3.4`). The full address is returned, not
/// the /64: [`Throttle`] does that reduction itself.
pub fn client_source(peer: IpAddr, x_forwarded_for: Option<&str>, trusted_proxies: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let mut current = peer.to_canonical();
    if !is_trusted(&current) {
        return current;
    }
    let Some(list) = x_forwarded_for else {
        return current;
    };
    for hop in list.rsplit(',').map(str::trim).filter(|hop| !hop.is_empty()) {
        let Some(ip) = parse_forwarded_hop(hop) else {
            return current;
        };
        current = ip;
        if !is_trusted(&current) {
            return current;
        }
    }
    current
}

fn parse_forwarded_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.strip_prefix('"').and_then(|h| h.strip_suffix('"')).unwrap_or(hop);
    let ip = if let Ok(ip) = hop.parse::<IpAddr>() {
        ip
    } else if let Ok(socket) = hop.parse::<SocketAddr>() {
        socket.ip()
    } else {
        IpAddr::V6(hop.strip_prefix('[')?.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// Records `n` failures at `now` and returns every closure they produced.
    fn fail(th: &Throttle, user: &str, source: IpAddr, now: Instant, n: usize) -> Vec<Closure> {
        (0..n).flat_map(|_| th.record_failure(user, source, now)).collect()
    }

    fn config(per_user_source: u32, per_source: u32, max_entries: usize) -> ThrottleConfig {
        ThrottleConfig { per_user_source, per_source, max_entries }
    }

    #[test]
    fn defaults_keep_the_spec_numbers() {
        let c = ThrottleConfig::default();
        assert_eq!((c.per_user_source, c.per_source, c.max_entries), (10, 100, 100_000));
        assert_eq!((WINDOW, BASE_CLOSURE, MAX_CLOSURE), (secs(60), secs(60), secs(900)));
    }

    #[test]
    fn tenth_failure_closes_the_pair_once() {
        let th = Throttle::default();
        let t0 = Instant::now();
        let src = ip("192.0.2.7");
        for i in 0..9 {
            assert!(th.record_failure("alice", src, t0 + ms(i * 100)).is_empty(), "failure {}", i + 1);
            assert_eq!(th.check("alice", src, t0 + ms(i * 100)), Ok(()));
        }
        let t10 = t0 + secs(1);
        let closures = th.record_failure("alice", src, t10);
        assert_eq!(closures.len(), 1);
        let c = &closures[0];
        assert_eq!(c.scope, Scope::Pair);
        assert_eq!(c.key, r#"user "alice" from 192.0.2.7"#);
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.source, SourceKey::new(src));
        assert_eq!((c.until, c.retry_after, c.strike), (t10 + secs(60), secs(60), 1));

        // 11th and later failures while closed: no second closure (one audit row per key and window).
        for i in 0..20 {
            assert!(th.record_failure("alice", src, t10 + secs(1) + ms(i)).is_empty());
        }
        let closed = th.check("alice", src, t10 + secs(1)).unwrap_err();
        assert_eq!(closed.scope, Scope::Pair);
        assert!(closed.retry_after <= secs(60));
        assert_eq!(closed.retry_after, secs(59));
        assert_eq!(closed.retry_after_secs(), 59);

        // Opens after 60 s.
        assert!(th.check("alice", src, t10 + secs(60) - ms(1)).is_err());
        assert_eq!(th.check("alice", src, t10 + secs(60)), Ok(()));
        // The failures while closed were not counted: 9 more failures after reopening do not close.
        assert!(fail(&th, "alice", src, t10 + secs(60), 9).is_empty());
    }

    #[test]
    fn repeat_closures_double_up_to_fifteen_minutes() {
        let th = Throttle::default();
        let src = ip("192.0.2.7");
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for strike in 1..=7 {
            let closures = fail(&th, "alice", src, now, 10);
            assert_eq!(closures.len(), 1);
            assert_eq!(closures[0].strike, strike);
            lengths.push(closures[0].retry_after.as_secs());
            assert_eq!(th.check("alice", src, now).unwrap_err().retry_after, closures[0].retry_after);
            now = closures[0].until;
            assert_eq!(th.check("alice", src, now), Ok(()));
        }
        assert_eq!(lengths, [60, 120, 240, 480, 900, 900, 900]);
    }

    #[test]
    fn escalation_is_forgotten_after_fifteen_quiet_minutes() {
        let th = Throttle::default();
        let src = ip("192.0.2.7");
        let t0 = Instant::now();
        let first = fail(&th, "alice", src, t0, 10).remove(0);
        assert_eq!(first.retry_after, secs(60));
        // Closed again just under 15 min after the first closure ended: escalates.
        let second = fail(&th, "alice", src, first.until + secs(900) - secs(1), 10).remove(0);
        assert_eq!((second.retry_after, second.strike), (secs(120), 2));
        // Closed again 15 min after that closure ended: back to 60 s.
        let third = fail(&th, "alice", src, second.until + secs(900), 10).remove(0);
        assert_eq!((third.retry_after, third.strike), (secs(60), 1));
    }

    #[test]
    fn a_pair_closure_does_not_lock_the_account_or_the_source() {
        let th = Throttle::default();
        let now = Instant::now();
        let src = ip("192.0.2.7");
        assert_eq!(fail(&th, "alice", src, now, 10).len(), 1);
        assert!(th.check("alice", src, now).is_err());
        assert_eq!(th.check("bob", src, now), Ok(()), "another user from the same source");
        assert_eq!(th.check("alice", ip("192.0.2.8"), now), Ok(()), "same user from another source");
        assert!(fail(&th, "alice", ip("192.0.2.8"), now, 9).is_empty());
    }

    #[test]
    fn user_names_are_case_insensitive() {
        let th = Throttle::default();
        let now = Instant::now();
        let src = ip("192.0.2.7");
        assert!(fail(&th, "Alice", src, now, 4).is_empty());
        assert!(fail(&th, "ALICE", src, now, 5).is_empty());
        let closures = th.record_failure("alice", src, now);
        assert_eq!(closures[0].user.as_deref(), Some("alice"));
        assert!(th.check("aLiCe", src, now).is_err());
    }

    #[test]
    fn long_user_names_are_truncated_at_a_char_boundary() {
        assert_eq!(normalize_user("ÄBC"), "äbc");
        assert_eq!(normalize_user(&"€".repeat(100)).len(), 255);
        let a = format!("{}x", "a".repeat(300));
        let b = format!("{}y", "A".repeat(300));
        assert_eq!(normalize_user(&a), normalize_user(&b));
        let th = Throttle::default();
        let now = Instant::now();
        assert!(fail(&th, &a, ip("192.0.2.7"), now, 9).is_empty());
        assert_eq!(th.record_failure(&b, ip("192.0.2.7"), now).len(), 1);
    }

    #[test]
    fn ipv6_sources_are_keyed_per_slash_64() {
        let th = Throttle::default();
        let now = Instant::now();
        assert!(fail(&th, "alice", ip("2001:db8:1:2::1"), now, 5).is_empty());
        let closures = fail(&th, "alice", ip("2001:db8:1:2:ffff:eeee:dddd:cccc"), now, 5);
        assert_eq!(closures.len(), 1);
        assert_eq!(closures[0].key, r#"user "alice" from 2001:db8:1:2::/64"#);
        assert_eq!(closures[0].source.prefix_len(), 64);
        assert!(th.check("alice", ip("2001:db8:1:2::abcd"), now).is_err());
        assert_eq!(th.check("alice", ip("2001:db8:1:3::1"), now), Ok(()), "different /64");
        assert_eq!(th.check("alice", ip("2001:db9:1:2::1"), now), Ok(()), "different /64");
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert_eq!(SourceKey::new(ip("::ffff:192.0.2.7")), SourceKey::new(ip("192.0.2.7")));
        assert_eq!(SourceKey::new(ip("::ffff:192.0.2.7")).to_string(), "192.0.2.7");
        assert_ne!(SourceKey::new(ip("192.0.2.7")), SourceKey::new(ip("192.0.2.8")));
        let th = Throttle::default();
        let now = Instant::now();
        assert!(fail(&th, "alice", ip("::ffff:192.0.2.7"), now, 9).is_empty());
        assert_eq!(th.record_failure("alice", ip("192.0.2.7"), now).len(), 1);
        assert!(th.check("alice", ip("::ffff:192.0.2.7"), now).is_err());
    }

    #[test]
    fn hundred_failures_over_many_users_close_the_source() {
        let th = Throttle::default();
        let now = Instant::now();
        let src = ip("198.51.100.9");
        for i in 0..99 {
            assert!(th.record_failure(&format!("user{i}"), src, now + ms(i)).is_empty());
        }
        let closures = th.record_failure("user99", src, now + secs(1));
        assert_eq!(closures.len(), 1);
        let c = &closures[0];
        assert_eq!((c.scope, c.key.as_str(), c.user.as_deref()), (Scope::Source, "source 198.51.100.9", None));
        assert_eq!(c.retry_after, secs(60));
        let closed = th.check("somebody-new", src, now + secs(2)).unwrap_err();
        assert_eq!((closed.scope, closed.retry_after), (Scope::Source, secs(59)));
        assert_eq!(th.check("user1", ip("198.51.100.10"), now), Ok(()));
        assert!(th.record_failure("user100", src, now + secs(2)).is_empty(), "no second closure");
        assert_eq!(th.check("user1", src, now + secs(61)), Ok(()));
    }

    #[test]
    fn pair_and_source_closing_on_the_same_failure_are_both_reported() {
        let th = Throttle::new(config(10, 10, 100));
        let now = Instant::now();
        let src = ip("192.0.2.7");
        let closures = fail(&th, "alice", src, now, 10);
        let scopes: Vec<Scope> = closures.iter().map(|c| c.scope).collect();
        assert_eq!(scopes, [Scope::Pair, Scope::Source]);
        // Both closed: check reports the longer one (the source on a tie).
        assert_eq!(th.check("alice", src, now).unwrap_err().scope, Scope::Source);
        // Reopened: 9 failures of bob, then alice's first failure closes the source (strike 2) and her 10th
        // closes the pair (strike 2), each reported once.
        let now = now + secs(60);
        assert!(fail(&th, "bob", src, now, 9).is_empty());
        let closures = fail(&th, "alice", src, now, 10);
        assert_eq!(closures.len(), 2);
        assert_eq!(th.check("alice", src, now).unwrap_err().scope, Scope::Source);
        let closed = th.check("carol", src, now).unwrap_err();
        assert_eq!((closed.scope, closed.retry_after), (Scope::Source, secs(120)));
    }

    #[test]
    fn check_reports_the_longest_closure() {
        let th = Throttle::new(config(10, 30, 100));
        let src = ip("192.0.2.7");
        let mut now = Instant::now();
        // Escalate the pair to 240 s.
        for _ in 0..2 {
            now = fail(&th, "alice", src, now, 10).remove(0).until;
        }
        let pair = fail(&th, "alice", src, now, 10).remove(0);
        assert_eq!(pair.retry_after, secs(240));
        // Close the source (60 s) with other users.
        let source = fail(&th, "bob", src, now, 10).into_iter().chain(fail(&th, "carol", src, now, 10)).last();
        assert_eq!(source.map(|c| c.scope), Some(Scope::Source));
        let closed = th.check("alice", src, now).unwrap_err();
        assert_eq!((closed.scope, closed.retry_after), (Scope::Pair, secs(240)));
        assert_eq!(th.check("dave", src, now).unwrap_err().scope, Scope::Source);
    }

    #[test]
    fn zero_disables_a_rule() {
        let now = Instant::now();
        let src = ip("192.0.2.7");

        let th = Throttle::new(config(0, 100, 100));
        assert!(fail(&th, "alice", src, now, 99).is_empty());
        assert_eq!(th.check("alice", src, now), Ok(()));
        let closures = th.record_failure("alice", src, now);
        assert_eq!(closures.iter().map(|c| c.scope).collect::<Vec<_>>(), [Scope::Source]);
        assert_eq!(th.stats().pairs, 0);

        let th = Throttle::new(config(10, 0, 100));
        let mut closures = Vec::new();
        for i in 0..50 {
            closures.extend(fail(&th, &format!("user{i}"), src, now, 9));
        }
        assert!(closures.is_empty());
        assert_eq!(fail(&th, "alice", src, now, 10).len(), 1);
        assert_eq!(th.stats().sources, 0);

        let th = Throttle::new(config(0, 0, 100));
        assert!(fail(&th, "alice", src, now, 1000).is_empty());
        assert_eq!(th.check("alice", src, now), Ok(()));
        assert_eq!(th.stats(), ThrottleStats::default());
    }

    #[test]
    fn the_window_slides() {
        let th = Throttle::default();
        let src = ip("192.0.2.7");
        let t0 = Instant::now();
        // Failures exactly 60 s old no longer count.
        assert!(fail(&th, "alice", src, t0, 9).is_empty());
        assert!(th.record_failure("alice", src, t0 + secs(60)).is_empty());
        assert!(fail(&th, "alice", src, t0 + secs(61), 8).is_empty());
        assert_eq!(th.record_failure("alice", src, t0 + secs(62)).len(), 1, "9 within the window + 1");

        // Sliding, not fixed: 5 at 50 s and 5 at 70 s are 10 within 60 s and close.
        let th = Throttle::default();
        assert!(fail(&th, "bob", src, t0 + secs(50), 5).is_empty());
        assert_eq!(fail(&th, "bob", src, t0 + secs(70), 5).len(), 1);

        // Just inside the window still counts.
        let th = Throttle::default();
        assert!(fail(&th, "carol", src, t0, 9).is_empty());
        assert_eq!(th.record_failure("carol", src, t0 + secs(60) - ms(1)).len(), 1);
    }

    #[test]
    fn success_resets_the_pair_but_not_the_source() {
        let th = Throttle::new(config(10, 15, 100));
        let src = ip("192.0.2.7");
        let now = Instant::now();
        assert!(fail(&th, "alice", src, now, 9).is_empty());
        th.record_success("ALICE", src, now);
        assert!(fail(&th, "alice", src, now, 5).is_empty(), "pair count was reset");
        let closures = th.record_failure("alice", src, now);
        assert_eq!(closures.iter().map(|c| c.scope).collect::<Vec<_>>(), [Scope::Source], "source count was not");
    }

    #[test]
    fn success_resets_the_escalation_but_not_an_active_closure() {
        let th = Throttle::default();
        let src = ip("192.0.2.7");
        let now = Instant::now();
        let first = fail(&th, "alice", src, now, 10).remove(0);
        th.record_success("alice", src, now + secs(1));
        assert!(th.check("alice", src, now + secs(1)).is_err(), "a racing success does not unlock");
        th.record_success("alice", src, first.until);
        let second = fail(&th, "alice", src, first.until, 10).remove(0);
        assert_eq!((second.strike, second.retry_after), (1, secs(60)));
    }

    #[test]
    fn check_never_stores_anything() {
        let th = Throttle::default();
        let now = Instant::now();
        for i in 0..1000u32 {
            assert_eq!(th.check(&format!("u{i}"), IpAddr::V4(Ipv4Addr::from(i)), now), Ok(()));
        }
        th.record_success("nobody", ip("192.0.2.7"), now);
        assert_eq!(th.stats(), ThrottleStats::default());
    }

    #[test]
    fn expired_entries_are_swept() {
        let th = Throttle::default();
        let t0 = Instant::now();
        for i in 0..1000u32 {
            assert!(th.record_failure(&format!("u{i}"), IpAddr::V4(Ipv4Addr::from(i)), t0).is_empty());
        }
        assert_eq!(th.stats(), ThrottleStats { pairs: 1000, sources: 1000, untracked: 0 });
        assert!(th.record_failure("x", ip("192.0.2.7"), t0 + secs(60)).is_empty());
        assert_eq!(th.stats(), ThrottleStats { pairs: 1, sources: 1, untracked: 0 });
        // A closed key (and its escalation) survives sweeps until 15 min after it reopens.
        let closure = fail(&th, "alice", ip("192.0.2.8"), t0 + secs(60), 10).remove(0);
        assert!(th.record_failure("y", ip("192.0.2.9"), closure.until + secs(899)).is_empty());
        assert_eq!(th.stats().pairs, 2, "alice and y");
        assert!(th.record_failure("y", ip("192.0.2.9"), closure.until + secs(960)).is_empty());
        assert_eq!(th.stats().pairs, 1, "only y");
    }

    #[test]
    fn memory_is_capped_and_closed_keys_survive_eviction() {
        let th = Throttle::new(config(10, 0, 64));
        let src = ip("192.0.2.7");
        let t0 = Instant::now();
        assert_eq!(fail(&th, "alice", src, t0, 10).len(), 1);
        for i in 0..10_000u64 {
            assert!(th.record_failure(&format!("spray{i}"), src, t0 + ms(i)).is_empty());
            assert!(th.stats().pairs <= 64);
        }
        assert!(th.check("alice", src, t0 + secs(59)).is_err(), "the cap does not unlock a closed key");
        assert_eq!(th.stats().untracked, 0);
    }

    #[test]
    fn a_table_full_of_closed_keys_stops_tracking_new_keys() {
        let th = Throttle::new(config(10, 0, 8));
        let src = ip("192.0.2.7");
        let t0 = Instant::now();
        for i in 0..8 {
            assert_eq!(fail(&th, &format!("c{i}"), src, t0, 10).len(), 1);
        }
        assert!(fail(&th, "newcomer", src, t0 + secs(1), 50).is_empty());
        assert_eq!(th.stats(), ThrottleStats { pairs: 8, sources: 0, untracked: 50 });
        for i in 0..8 {
            assert!(th.check(&format!("c{i}"), src, t0 + secs(59)).is_err());
        }
        // Once the closures end, the open entries can be evicted and the newcomer is counted again.
        assert!(fail(&th, "newcomer", src, t0 + secs(60), 9).is_empty());
        assert_eq!(th.record_failure("newcomer", src, t0 + secs(60)).len(), 1);
        assert!(th.stats().pairs <= 8);
    }

    #[test]
    fn default_cap_holds_against_a_spray_of_sources() {
        let th = Throttle::default();
        let t0 = Instant::now();
        for i in 0..110_000u32 {
            let source = IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64));
            assert!(th.record_failure("admin", source, t0 + Duration::from_micros(u64::from(i))).is_empty());
        }
        let stats = th.stats();
        assert!(stats.pairs <= 100_000 && stats.sources <= 100_000, "{stats:?}");
        assert!(stats.pairs > 90_000 && stats.sources > 90_000, "{stats:?}");
    }

    #[test]
    fn concurrent_failures_report_a_closure_once() {
        let th = Throttle::default();
        let src = ip("192.0.2.7");
        let now = Instant::now();
        let closures: Vec<Closure> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| fail(&th, "alice", src, now, 10))).collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(closures.len(), 1);
        assert_eq!(closures[0].scope, Scope::Pair);
    }

    #[test]
    fn retry_after_secs_rounds_up() {
        let closed = |retry_after| Closed { retry_after, scope: Scope::Pair };
        assert_eq!(closed(ms(59_001)).retry_after_secs(), 60);
        assert_eq!(closed(secs(60)).retry_after_secs(), 60);
        assert_eq!(closed(Duration::ZERO).retry_after_secs(), 1);
        assert_eq!(closed(secs(60)).to_string(), "too many failed logins for this user and source; retry after 60 s");
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap(), "2001:db8:ffff::/48".parse().unwrap()]
    }

    fn source(peer: &str, xff: Option<&str>) -> IpAddr {
        client_source(ip(peer), xff, &trusted())
    }

    #[test]
    fn client_source_ignores_forwarding_from_untrusted_peers() {
        assert_eq!(source("203.0.113.5", Some("198.51.100.7")), ip("203.0.113.5"));
        assert_eq!(source("::ffff:203.0.113.5", Some("198.51.100.7")), ip("203.0.113.5"));
        assert_eq!(client_source(ip("10.0.0.1"), Some("198.51.100.7"), &[]), ip("10.0.0.1"));
    }

    #[test]
    fn client_source_walks_trusted_hops_from_the_right() {
        assert_eq!(source("10.0.0.1", None), ip("10.0.0.1"));
        assert_eq!(source("10.0.0.1", Some("")), ip("10.0.0.1"));
        assert_eq!(source("10.0.0.1", Some("198.51.100.7")), ip("198.51.100.7"));
        // Spoofed entries left of the real client are ignored.
        assert_eq!(source("10.0.0.1", Some("6.6.6.6, 198.51.100.7, 10.0.0.2")), ip("198.51.100.7"));
        // Several headers joined with commas, odd spacing, empty entries.
        assert_eq!(source("10.0.0.1", Some("6.6.6.6,198.51.100.7 ,  10.0.0.2,10.0.0.3")), ip("198.51.100.7"));
        assert_eq!(source("10.0.0.1", Some("198.51.100.7,, 10.0.0.2, ")), ip("198.51.100.7"));
        // All hops trusted: the leftmost.
        assert_eq!(source("10.0.0.1", Some("10.0.0.3, 10.0.0.2")), ip("10.0.0.3"));
        // IPv6 trusted proxy and IPv4-mapped peer.
        assert_eq!(source("2001:db8:ffff::1", Some("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(source("::ffff:10.0.0.1", Some("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(source("10.0.0.1", Some("::ffff:10.0.0.2, 10.0.0.3")), ip("10.0.0.2"));
        assert_eq!(source("10.0.0.1", Some("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }

    #[test]
    fn client_source_parses_ports_and_brackets() {
        assert_eq!(source("10.0.0.1", Some("198.51.100.7:5555")), ip("198.51.100.7"));
        assert_eq!(source("10.0.0.1", Some("2001:db8::7")), ip("2001:db8::7"));
        assert_eq!(source("10.0.0.1", Some("[2001:db8::7]")), ip("2001:db8::7"));
        assert_eq!(source("10.0.0.1", Some("[2001:db8::7]:4711, 10.0.0.2")), ip("2001:db8::7"));
        assert_eq!(source("10.0.0.1", Some(r#""[2001:db8::7]:4711""#)), ip("2001:db8::7"));
        assert_eq!(source("10.0.0.1", Some("[2001:db8:ffff::2]:443, 10.0.0.2:80")), ip("2001:db8:ffff::2"));
        assert_eq!(source("10.0.0.1", Some("6.6.6.6, [2001:db8:ffff::2]:443, 10.0.0.2:80")), ip("6.6.6.6"));
    }

    #[test]
    fn client_source_stops_at_a_malformed_hop() {
        assert_eq!(source("10.0.0.1", Some("198.51.100.7, garbage, 10.0.0.2")), ip("10.0.0.2"));
        assert_eq!(source("10.0.0.1", Some("198.51.100.7, unknown")), ip("10.0.0.1"));
        assert_eq!(source("10.0.0.1", Some("198.51.100.7:99999")), ip("10.0.0.1"));
        assert_eq!(source("10.0.0.1", Some("[198.51.100.7]")), ip("10.0.0.1"));
        assert_eq!(source("10.0.0.1", Some("[2001:db8::7")), ip("10.0.0.1"));
        assert_eq!(source("10.0.0.1", Some("fe80::1%eth0, 10.0.0.2")), ip("10.0.0.2"));
        // Malformed entries left of the client do not matter.
        assert_eq!(source("10.0.0.1", Some("garbage, 198.51.100.7")), ip("198.51.100.7"));
    }

    #[test]
    fn hash_gate_limits_concurrent_permits() {
        let gate = HashGate::new(2);
        let a = gate.try_acquire().expect("first");
        let b = gate.try_acquire().expect("second");
        assert!(gate.try_acquire().is_none());
        assert_eq!(gate.in_use(), 2);
        drop(a);
        let c = gate.try_acquire().expect("released slot");
        assert!(gate.clone().try_acquire().is_none(), "clones share the slots");
        // Permits are Send + 'static: they can move into a worker thread.
        std::thread::spawn(move || drop(c)).join().unwrap();
        drop(b);
        assert_eq!(gate.in_use(), 0);
    }

    #[test]
    fn hash_gate_defaults_and_clamps() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(HashGate::default().max(), cores);
        let gate = HashGate::new(0);
        assert_eq!(gate.max(), 1);
        let _permit = gate.try_acquire().expect("one slot");
        assert!(gate.try_acquire().is_none());
    }

    #[test]
    fn hash_gate_never_exceeds_max_under_contention() {
        let gate = HashGate::new(3);
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        if let Some(permit) = gate.try_acquire() {
                            assert!(gate.in_use() <= 3);
                            admitted.fetch_add(1, Ordering::Relaxed);
                            drop(permit);
                        }
                    }
                });
            }
        });
        assert!(admitted.load(Ordering::Relaxed) > 0);
        assert_eq!(gate.in_use(), 0);
    }
}
