//! Choosing a server: one worker's balancing state and the three methods, as nginx does them.
//!
//! - `round_robin`: smooth weighted round robin (`ngx_http_upstream_get_peer`): every
//!   candidate's `current += effective`; the largest `current` wins and loses the sum of the
//!   candidates' `effective` weights. Weights 3:1 give `a a b a`, 5:1:1 give `a a b a c a a`.
//!   `effective` starts at the weight, drops by `weight / max_fails` when this worker sees the
//!   server fail and climbs back by one per pick.
//! - `least_conn`: fewest active requests on this worker relative to the weight
//!   (`conns_a * weight_b < conns_b * weight_a`); ties go to smooth weighted round robin among
//!   the tied servers (`ngx_http_upstream_get_least_conn_peer`).
//! - `client_hash`: a consistent-hash ring (160 points per unit of weight, as nginx's
//!   `hash ... consistent`), keyed by the client certificate's fingerprint, or by the client's
//!   IP address when it sent none. A key maps to the first point at or after its hash whose
//!   server may be used, so a client stays on its server while the set of usable servers is
//!   unchanged, and only the clients of a server that goes down move.
//!
//! Which servers may be used is decided in passes, the first that has a candidate wins:
//! primaries that are up; backups that are up; then, every server being down, nginx's "try
//! them anyway" — primaries not failed by the active check, backups likewise, and finally any
//! server. Servers configured `down` and servers this request already tried are never
//! candidates. Balancing state is per worker (`Cell`s); health is shared (see `health`).

use std::cell::Cell;
use std::net::IpAddr;

use crate::config::{Balance, Server};

/// Points on the hash ring per unit of weight (nginx's ketama value).
const POINTS_PER_WEIGHT: usize = 160;
/// Upper bound on ring points per tier; weights beyond it are scaled down proportionally.
const MAX_RING_POINTS: usize = 1 << 16;

/// What `client_hash` hashes: the client certificate's fingerprint, else the client's address.
/// With neither (the default), `client_hash` falls back to round robin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Key {
    hash: Option<u64>,
}

impl Key {
    /// The key of a client: its certificate fingerprint when it has one, else its IP address (an
    /// IPv4-mapped IPv6 address hashes as the IPv4 one).
    pub fn new(fingerprint: Option<&str>, ip: Option<IpAddr>) -> Key {
        let hash = match (fingerprint, ip) {
            (Some(f), _) => Some(hash64(&[b"cert:", f.as_bytes()])),
            (None, Some(IpAddr::V4(v4))) => Some(hash64(&[b"ip:", &v4.octets()])),
            (None, Some(IpAddr::V6(v6))) => Some(match v6.to_ipv4_mapped() {
                Some(v4) => hash64(&[b"ip:", &v4.octets()]),
                None => hash64(&[b"ip:", &v6.octets()]),
            }),
            (None, None) => None,
        };
        Key { hash }
    }
}

/// The servers one request has tried (by index), so the next try goes elsewhere.
#[derive(Debug, Default, Clone)]
pub struct Tried {
    low: u64,
    high: Vec<u64>,
}

impl Tried {
    /// Marks server `i` as tried.
    pub fn insert(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else {
            let w = i / 64 - 1;
            if self.high.len() <= w {
                self.high.resize(w + 1, 0);
            }
            self.high[w] |= 1 << (i % 64);
        }
    }

    /// True if server `i` was tried.
    pub fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.low & (1 << i) != 0
        } else {
            self.high
                .get(i / 64 - 1)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
        }
    }
}

/// A server's health as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Avail {
    /// Usable.
    Up,
    /// Out by passive accounting (`max_fails` within `fail_timeout`).
    Failed,
    /// Out by the active health check.
    CheckFailed,
}

/// What [`Balancer::choose`] picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index of the server in [`Upstream::servers`](crate::config::Upstream::servers).
    pub index: usize,
    /// Every usable server was down, and this one is tried anyway.
    pub despite_down: bool,
}

/// One worker's balancing state for one upstream.
#[derive(Debug)]
pub struct Balancer {
    method: Balance,
    peers: Vec<Peer>,
    primaries: Vec<usize>,
    backups: Vec<usize>,
    /// `client_hash` rings for the primaries and the backups.
    rings: Option<[Ring; 2]>,
}

#[derive(Debug)]
struct Peer {
    weight: i64,
    down: bool,
    max_fails: u32,
    current: Cell<i64>,
    effective: Cell<i64>,
    /// Requests this worker has under way on the server.
    active: Cell<u32>,
}

/// Which servers a pass admits.
#[derive(Clone, Copy)]
enum Level {
    Up,
    NotCheckFailed,
    Any,
}

const PASSES: [(Level, bool); 6] = [
    (Level::Up, false),
    (Level::Up, true),
    (Level::NotCheckFailed, false),
    (Level::NotCheckFailed, true),
    (Level::Any, false),
    (Level::Any, true),
];

impl Balancer {
    /// A balancer over `servers` using `method`, with every server up.
    pub fn new(servers: &[Server], method: Balance) -> Self {
        let peers = servers
            .iter()
            .map(|s| Peer {
                weight: i64::from(s.weight),
                down: s.down,
                max_fails: s.max_fails,
                current: Cell::new(0),
                effective: Cell::new(i64::from(s.weight)),
                active: Cell::new(0),
            })
            .collect();
        let (backups, primaries): (Vec<usize>, Vec<usize>) =
            (0..servers.len()).partition(|&i| servers[i].backup);
        let rings = (method == Balance::ClientHash)
            .then(|| [Ring::new(servers, &primaries), Ring::new(servers, &backups)]);
        Self {
            method,
            peers,
            primaries,
            backups,
            rings,
        }
    }

    /// The server for the next try, or None when every usable server has been tried.
    /// `avail` tells each server's health.
    pub fn choose(
        &self,
        key: &Key,
        tried: &Tried,
        avail: impl Fn(usize) -> Avail,
    ) -> Option<Choice> {
        let hash = match self.method {
            Balance::ClientHash => key.hash,
            _ => None,
        };
        for (pass, (level, backup)) in PASSES.iter().enumerate() {
            let tier = if *backup {
                &self.backups
            } else {
                &self.primaries
            };
            let ok = |i: usize| {
                !self.peers[i].down
                    && !tried.contains(i)
                    && matches!(
                        (level, avail(i)),
                        (_, Avail::Up) | (Level::Any, _) | (Level::NotCheckFailed, Avail::Failed)
                    )
            };
            let picked = match (self.method, hash, &self.rings) {
                (Balance::ClientHash, Some(h), Some(rings)) => {
                    rings[usize::from(*backup)].find(h, ok)
                }
                (Balance::LeastConn, _, _) => self.least_conn(tier, ok),
                _ => self.round_robin(tier, ok),
            };
            if let Some(index) = picked {
                return Some(Choice {
                    index,
                    despite_down: pass >= 2,
                });
            }
        }
        None
    }

    /// Smooth weighted round robin over the candidates of `tier`.
    fn round_robin(&self, tier: &[usize], ok: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0i64;
        for &i in tier {
            if !ok(i) {
                continue;
            }
            let p = &self.peers[i];
            p.current.set(p.current.get() + p.effective.get());
            total += p.effective.get();
            if p.effective.get() < p.weight {
                p.effective.set(p.effective.get() + 1);
            }
            if best.is_none_or(|b| p.current.get() > self.peers[b].current.get()) {
                best = Some(i);
            }
        }
        let b = best?;
        let p = &self.peers[b];
        p.current.set(p.current.get() - total);
        Some(b)
    }

    /// Fewest active requests relative to weight; ties by smooth weighted round robin.
    fn least_conn(&self, tier: &[usize], ok: impl Fn(usize) -> bool) -> Option<usize> {
        let load = |i: usize| (i64::from(self.peers[i].active.get()), self.peers[i].weight);
        let mut best: Option<usize> = None;
        let mut tied = false;
        for &i in tier {
            if !ok(i) {
                continue;
            }
            match best {
                None => best = Some(i),
                Some(b) => {
                    let ((ca, wa), (cb, wb)) = (load(i), load(b));
                    if ca * wb < cb * wa {
                        best = Some(i);
                        tied = false;
                    } else if ca * wb == cb * wa {
                        tied = true;
                    }
                }
            }
        }
        let b = best?;
        if !tied {
            return Some(b);
        }
        let (cb, wb) = load(b);
        self.round_robin(tier, |i| {
            let (ci, wi) = load(i);
            ok(i) && ci * wb == cb * wi
        })
    }

    /// A request starts on server `i` (for `least_conn`); it ends when the guard drops.
    pub fn begin(&self, i: usize) -> Active<'_> {
        let p = &self.peers[i];
        p.active.set(p.active.get().saturating_add(1));
        Active { peer: p }
    }

    /// Server `i` failed on this worker: its effective weight drops by `weight / max_fails`.
    pub fn failed(&self, i: usize) {
        let p = &self.peers[i];
        if p.max_fails > 0 {
            let drop = p.weight / i64::from(p.max_fails);
            p.effective.set((p.effective.get() - drop).max(0));
        }
    }
}

/// A request under way on one server; counts in `least_conn` until dropped.
pub struct Active<'a> {
    peer: &'a Peer,
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.peer
            .active
            .set(self.peer.active.get().saturating_sub(1));
    }
}

/// A consistent-hash ring over some servers: sorted `(point, server index)`.
#[derive(Debug, Default)]
struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn new(servers: &[Server], members: &[usize]) -> Self {
        let weight: usize = members.iter().map(|&i| servers[i].weight as usize).sum();
        let per_weight = POINTS_PER_WEIGHT.min((MAX_RING_POINTS / weight.max(1)).max(1));
        let mut points = Vec::with_capacity(weight * per_weight);
        for &i in members {
            let s = &servers[i];
            // Points derive from the address, so the ring is the same in every worker and
            // every process with this configuration.
            let id = s.addr.to_string();
            for n in 0..servers[i].weight as usize * per_weight {
                let n = n as u64;
                points.push((hash64(&[id.as_bytes(), b"#", &n.to_le_bytes()]), i));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The first usable server at or after `h`, going round once.
    fn find(&self, h: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.points.partition_point(|&(p, _)| p < h);
        let n = self.points.len();
        (0..n)
            .map(|k| self.points[(start + k) % n].1)
            .find(|&i| ok(i))
    }
}

/// FNV-1a over the parts, then a 64-bit finalizer (murmur3's fmix64) to spread the bits:
/// stable across builds and processes, unlike `DefaultHasher`.
fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn server(port: u16, weight: u32, backup: bool) -> Server {
        Server {
            addr: ([127, 0, 0, 1], port).into(),
            name: format!("127.0.0.1:{port}"),
            weight,
            backup,
            down: false,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
        }
    }

    fn up(_: usize) -> Avail {
        Avail::Up
    }

    fn sequence(b: &Balancer, n: usize, avail: impl Fn(usize) -> Avail + Copy) -> String {
        (0..n)
            .map(|_| {
                let c = b.choose(&Key::default(), &Tried::default(), avail).unwrap();
                (b'a' + c.index as u8) as char
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_is_nginx_sequence() {
        let b = Balancer::new(
            &[server(1, 3, false), server(2, 1, false)],
            Balance::RoundRobin,
        );
        assert_eq!(sequence(&b, 8, up), "aabaaaba");
        let servers = [
            server(1, 5, false),
            server(2, 1, false),
            server(3, 1, false),
        ];
        let b = Balancer::new(&servers, Balance::RoundRobin);
        assert_eq!(sequence(&b, 7, up), "aabacaa");
        let b = Balancer::new(
            &[server(1, 1, false), server(2, 1, false)],
            Balance::RoundRobin,
        );
        assert_eq!(sequence(&b, 4, up), "abab");
    }

    #[test]
    fn weights_hold_over_many_picks() {
        let b = Balancer::new(
            &[server(1, 1, false), server(2, 3, false)],
            Balance::RoundRobin,
        );
        let s = sequence(&b, 400, up);
        assert_eq!(s.matches('a').count(), 100);
        assert_eq!(s.matches('b').count(), 300);
    }

    #[test]
    fn backup_only_when_every_primary_is_down() {
        let servers = [server(1, 1, false), server(2, 1, false), server(3, 1, true)];
        let b = Balancer::new(&servers, Balance::RoundRobin);
        assert!(!sequence(&b, 20, up).contains('c'));
        let a_down = |i| if i == 0 { Avail::Failed } else { Avail::Up };
        assert_eq!(sequence(&b, 4, a_down), "bbbb");
        let primaries_down = |i| if i < 2 { Avail::CheckFailed } else { Avail::Up };
        let c = b
            .choose(&Key::default(), &Tried::default(), primaries_down)
            .unwrap();
        assert_eq!(
            c,
            Choice {
                index: 2,
                despite_down: false
            }
        );
        // The request that already failed on both primaries goes to the backup too.
        let mut tried = Tried::default();
        tried.insert(0);
        tried.insert(1);
        assert_eq!(b.choose(&Key::default(), &tried, up).unwrap().index, 2);
    }

    #[test]
    fn all_down_tries_anyway_preferring_servers_the_check_did_not_fail() {
        let servers = [server(1, 1, false), server(2, 1, false), server(3, 1, true)];
        let b = Balancer::new(&servers, Balance::RoundRobin);
        let avail = |i| match i {
            0 => Avail::CheckFailed,
            _ => Avail::Failed,
        };
        let c = b.choose(&Key::default(), &Tried::default(), avail).unwrap();
        assert_eq!(
            c,
            Choice {
                index: 1,
                despite_down: true
            }
        );
        let check_failed = |_| Avail::CheckFailed;
        let mut tried = Tried::default();
        tried.insert(1);
        let c = b.choose(&Key::default(), &tried, check_failed).unwrap();
        assert_eq!((c.index, c.despite_down), (0, true));
        tried.insert(0);
        tried.insert(2);
        assert_eq!(b.choose(&Key::default(), &tried, up), None);
    }

    #[test]
    fn configured_down_is_never_chosen() {
        let mut servers = [server(1, 1, false), server(2, 1, false)];
        servers[0].down = true;
        let b = Balancer::new(&servers, Balance::RoundRobin);
        assert_eq!(sequence(&b, 3, |_| Avail::Failed), "bbb");
    }

    #[test]
    fn tried_servers_are_skipped() {
        let servers: Vec<Server> = (0..100).map(|p| server(p + 1, 1, false)).collect();
        let b = Balancer::new(&servers, Balance::RoundRobin);
        let mut tried = Tried::default();
        let mut seen = Vec::new();
        while let Some(c) = b.choose(&Key::default(), &tried, up) {
            assert!(!tried.contains(c.index));
            tried.insert(c.index);
            seen.push(c.index);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn failures_lower_the_effective_weight_for_a_while() {
        let mut servers = [server(1, 4, false), server(2, 4, false)];
        servers[0].max_fails = 2;
        let b = Balancer::new(&servers, Balance::RoundRobin);
        b.failed(0);
        b.failed(0);
        assert_eq!(b.peers[0].effective.get(), 0);
        let s = sequence(&b, 8, up);
        assert!(s.matches('b').count() > s.matches('a').count(), "{s}");
        assert_eq!(b.peers[0].effective.get(), 4, "recovered by one per pick");
    }

    #[test]
    fn least_conn_prefers_the_idle_server_then_round_robin() {
        let servers = [server(1, 1, false), server(2, 1, false)];
        let b = Balancer::new(&servers, Balance::LeastConn);
        let pick = |b: &Balancer| {
            b.choose(&Key::default(), &Tried::default(), up)
                .unwrap()
                .index
        };
        let busy = b.begin(0);
        assert_eq!(pick(&b), 1);
        assert_eq!(pick(&b), 1);
        drop(busy);
        let s: Vec<usize> = (0..4).map(|_| pick(&b)).collect();
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 2, "{s:?}");
        // Relative to weight: 2 requests on weight 3 beat 1 on weight 1.
        let servers = [server(1, 3, false), server(2, 1, false)];
        let b = Balancer::new(&servers, Balance::LeastConn);
        let _a = (b.begin(0), b.begin(0));
        let _b = b.begin(1);
        assert_eq!(pick(&b), 0);
    }

    #[test]
    fn client_hash_is_sticky_and_consistent() {
        let servers: Vec<Server> = (0..5).map(|p| server(p + 1, 1, false)).collect();
        let b = Balancer::new(&servers, Balance::ClientHash);
        let fps: Vec<String> = (0..200).map(|n| format!("{:064x}", n * 7919)).collect();
        let pick = |fp: &str, avail: &dyn Fn(usize) -> Avail| {
            let key = Key::new(Some(fp), None);
            b.choose(&key, &Tried::default(), avail).unwrap().index
        };
        let before: Vec<usize> = fps.iter().map(|f| pick(f, &up)).collect();
        for (f, &i) in fps.iter().zip(&before) {
            for _ in 0..3 {
                assert_eq!(pick(f, &up), i, "the same key moved");
            }
        }
        let mut counts = [0; 5];
        for &i in &before {
            counts[i] += 1;
        }
        assert!(counts.iter().all(|&c| c >= 15), "spread: {counts:?}");
        // Server 2 goes down: only its clients move.
        let down2 = |i| if i == 2 { Avail::Failed } else { Avail::Up };
        for (f, &i) in fps.iter().zip(&before) {
            let now = pick(f, &down2);
            if i == 2 {
                assert_ne!(now, 2);
            } else {
                assert_eq!(now, i, "a client of a healthy server moved");
            }
        }
        // Another worker builds the same ring.
        let b2 = Balancer::new(&servers, Balance::ClientHash);
        let key = Key::new(Some(&fps[0]), None);
        assert_eq!(
            b2.choose(&key, &Tried::default(), up).unwrap().index,
            before[0]
        );
    }

    #[test]
    fn client_hash_without_certificate_uses_the_address() {
        let servers: Vec<Server> = (0..4).map(|p| server(p + 1, 1, false)).collect();
        let b = Balancer::new(&servers, Balance::ClientHash);
        let key = |ip: &str| Key::new(None, Some(ip.parse().unwrap()));
        let a = b.choose(&key("10.1.2.3"), &Tried::default(), up).unwrap();
        for _ in 0..5 {
            assert_eq!(
                b.choose(&key("10.1.2.3"), &Tried::default(), up).unwrap(),
                a
            );
        }
        assert_eq!(
            b.choose(&key("::ffff:10.1.2.3"), &Tried::default(), up)
                .unwrap(),
            a,
            "a v4-mapped address is the v4 address"
        );
        // No key at all: round robin.
        assert_eq!(sequence(&b, 4, up), "abcd");
    }

    #[test]
    fn ring_respects_weights() {
        let servers = [server(1, 1, false), server(2, 3, false)];
        let b = Balancer::new(&servers, Balance::ClientHash);
        let mut counts = [0; 2];
        for n in 0..4000u32 {
            let fp = format!("{n:064x}");
            let key = Key::new(Some(&fp), None);
            counts[b.choose(&key, &Tried::default(), up).unwrap().index] += 1;
        }
        let share = f64::from(counts[1]) / 4000.0;
        assert!((0.65..0.85).contains(&share), "{counts:?}");
    }

    #[test]
    fn huge_weights_keep_the_ring_bounded() {
        let servers: Vec<Server> = (0..10).map(|p| server(p + 1, 1000, false)).collect();
        let b = Balancer::new(&servers, Balance::ClientHash);
        let rings = b.rings.as_ref().unwrap();
        assert!(rings[0].points.len() <= MAX_RING_POINTS);
        assert!(rings[1].points.is_empty());
    }
}
