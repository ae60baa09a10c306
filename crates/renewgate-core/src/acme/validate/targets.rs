//! Where http-01 and tls-alpn-01 may connect, and connecting there.
//!
//! Validation makes this server open connections to addresses an ACME client chooses (its
//! identifier, its DNS records, its redirects). Without a filter that is a server-side request
//! forgery primitive: a client could make the gateway probe its own loopback services, the cloud
//! metadata endpoint or link-local devices and learn from the failure details what answered. So
//! every address an identifier, a resolution or a redirect yields passes [`Policy::check`]; only
//! the addresses an administrator pinned in `acme.validation.hosts` are used as given.
//!
//! Resolution asks both A and AAAA and connection attempts go IPv6 first, then IPv4, falling back
//! on failure, so a name with a broken AAAA record still validates over IPv4 (as Let's Encrypt
//! does). Each checked address is connected to directly: no second resolution could swap in an
//! address that was never checked.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_resolver::TokioResolver;
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Failure, FailureKind};
use crate::settings::AcmeValidationSettings;

/// A host to validate or to follow a redirect to: a DNS name (lower case, no trailing dot) or an
/// IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// An identifier as the caller gives it. A malformed one is this server's fault (identifiers
    /// are checked when the order is made), hence `serverInternal`.
    pub(super) fn parse(identifier: &str) -> Result<Host, Failure> {
        Host::from_text(identifier).ok_or_else(|| {
            Failure::new(FailureKind::ServerInternal, format!("{identifier:?} is not a DNS name or an IP address"))
        })
    }

    /// A name or an IP address's text; `None` for anything else (so nothing unexpected reaches a
    /// Host header, an SNI or the resolver).
    pub(super) fn from_text(text: &str) -> Option<Host> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(Host::Ip(ip));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        let well_formed = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        well_formed.then_some(Host::Name(name))
    }

    /// The host as written in a URL's authority and a Host header (an IPv6 address in brackets).
    pub(super) fn authority(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why a built-in rule refuses an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Loopback,
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    Metadata,
}

impl Refused {
    fn describe(self) -> &'static str {
        match self {
            Refused::Loopback => "a loopback address",
            Refused::LinkLocal => "a link-local address",
            Refused::Unspecified => "an unspecified (this-network) address",
            Refused::Multicast => "a multicast address",
            Refused::Broadcast => "the broadcast address",
            Refused::Metadata => "a cloud metadata address",
        }
    }
}

/// How an IPv6 address carries an IPv4 one that the network would really reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embedding {
    /// `::ffff:a.b.c.d`: a dual-stack socket connects to the IPv4 address itself.
    Mapped,
    /// `::a.b.c.d` (deprecated): some stacks still treat it as the IPv4 address.
    Compatible,
    /// `64:ff9b::/96` or `64:ff9b:1::/48`: a NAT64 gateway forwards it to the IPv4 address.
    Nat64,
}

impl Embedding {
    fn describe(self) -> &'static str {
        match self {
            Embedding::Mapped => "IPv4-mapped",
            Embedding::Compatible => "IPv4-compatible",
            Embedding::Nat64 => "NAT64",
        }
    }
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that reach IPv4.
fn embedded_v4(v6: Ipv6Addr) -> Option<(Ipv4Addr, Embedding)> {
    let s = v6.segments();
    let last32 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some((last32, Embedding::Mapped)),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some((last32, Embedding::Nat64)),
        // RFC 8215's local-use prefix; operators use it with the IPv4 address in the last 32 bits.
        [0x64, 0xff9b, 1, ..] => Some((last32, Embedding::Nat64)),
        // `::` and `::1` are IPv6's own unspecified and loopback addresses, not IPv4-compatible.
        [0, 0, 0, 0, 0, 0, _, _] if !v6.is_unspecified() && !v6.is_loopback() => Some((last32, Embedding::Compatible)),
        _ => None,
    }
}

/// The cloud metadata addresses outside the link-local range: Alibaba's and AWS's IPv6 one
/// (169.254.169.254, used by AWS, GCP, Azure and others, is link-local).
const METADATA_V4: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

fn refused_v4(ip: Ipv4Addr) -> Option<Refused> {
    if ip.is_loopback() {
        Some(Refused::Loopback)
    } else if ip.is_link_local() {
        Some(Refused::LinkLocal)
    } else if ip.octets()[0] == 0 {
        Some(Refused::Unspecified)
    } else if ip.is_multicast() {
        Some(Refused::Multicast)
    } else if ip.is_broadcast() {
        Some(Refused::Broadcast)
    } else if ip == METADATA_V4 {
        Some(Refused::Metadata)
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<Refused> {
    if ip.is_loopback() {
        Some(Refused::Loopback)
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some(Refused::LinkLocal)
    } else if ip.is_unspecified() {
        Some(Refused::Unspecified)
    } else if ip.is_multicast() {
        Some(Refused::Multicast)
    } else if ip == METADATA_V6 {
        Some(Refused::Metadata)
    } else {
        None
    }
}

/// Which addresses validation may connect to: the built-in refusals, `acme.validation.deny_cidrs`,
/// and `acme.validation.allow_loopback`. Private ranges stay allowed: a gateway inside a company
/// network validates names that resolve to it.
#[derive(Debug)]
pub(super) struct Policy {
    deny: Vec<IpNet>,
    allow_loopback: bool,
}

impl Policy {
    /// `deny_cidrs` were checked when the settings were loaded; one that still does not parse
    /// (settings built in code) fails the validation rather than being skipped, so a typo never
    /// silently opens a range.
    pub(super) fn new(settings: &AcmeValidationSettings) -> Result<Policy, Failure> {
        let deny = settings
            .deny_cidrs
            .iter()
            .map(|c| {
                let c = c.trim();
                c.parse::<IpNet>().or_else(|_| c.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                    Failure::new(
                        FailureKind::ServerInternal,
                        format!("acme.validation.deny_cidrs: {c:?} is not an address or CIDR"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy { deny, allow_loopback: settings.allow_loopback })
    }

    /// Whether `ip` may be connected to; a refusal is a `connection` failure naming the address
    /// and the rule. Addresses that reach IPv4 through IPv6 (mapped, compatible, NAT64) are judged
    /// by the IPv4 address too, or `::ffff:127.0.0.1` would walk around the loopback rule.
    pub(super) fn check(&self, ip: IpAddr) -> Result<(), Failure> {
        let embedded = match ip {
            IpAddr::V4(v4) => Some((v4, None)),
            IpAddr::V6(v6) => {
                if let Some(r) = refused_v6(v6)
                    && !(r == Refused::Loopback && self.allow_loopback)
                {
                    return Err(refusal(ip, r, None));
                }
                embedded_v4(v6).map(|(v4, how)| (v4, Some(how)))
            }
        };
        if let Some((v4, how)) = embedded
            && let Some(r) = refused_v4(v4)
        {
            // Loopback is allowed as itself and IPv4-mapped (what a dual-stack socket shows for
            // it), not through NAT64 or the deprecated compatible form: those do not reach this
            // machine's loopback, they reach some gateway's.
            let loopback_allowed =
                r == Refused::Loopback && self.allow_loopback && matches!(how, None | Some(Embedding::Mapped));
            if !loopback_allowed {
                return Err(refusal(ip, r, how.map(|h| (v4, h))));
            }
        }
        let v4 = embedded.map(|(v4, _)| v4);
        let forms = [Some(ip), v4.map(IpAddr::V4), v4.map(|v4| IpAddr::V6(v4.to_ipv6_mapped()))];
        if let Some(net) = self.deny.iter().find(|net| forms.iter().flatten().any(|f| net.contains(f))) {
            return Err(Failure::new(
                FailureKind::Connection,
                format!("{ip} is in {net}: validation refused (acme.validation.deny_cidrs)"),
            ));
        }
        Ok(())
    }
}

/// A built-in refusal: the address, the rule, the IPv4 address it stands for, and the setting
/// that would change the outcome where one would.
fn refusal(ip: IpAddr, r: Refused, via: Option<(Ipv4Addr, Embedding)>) -> Failure {
    let mut detail = format!("{ip} is {}", r.describe());
    if let Some((v4, how)) = via {
        detail.push_str(&format!(" ({v4} in {} form)", how.describe()));
    }
    detail.push_str(": validation refused");
    if r == Refused::Loopback && matches!(via, None | Some((_, Embedding::Mapped))) {
        detail.push_str(" (acme.validation.allow_loopback)");
    }
    Failure::new(FailureKind::Connection, detail)
}

/// `acme.validation.hosts`: `name=IP` or `*.suffix=IP` (the suffix itself and its subdomains).
/// The first matching entry wins; an entry whose address does not parse is ignored.
fn pinned(settings: &AcmeValidationSettings, name: &str) -> Option<IpAddr> {
    settings.hosts.iter().find_map(|entry| {
        let (pattern, ip) = entry.split_once('=')?;
        let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        let hit = match pattern.strip_prefix("*.") {
            Some(suffix) => name == suffix || name.strip_suffix(suffix).is_some_and(|sub| sub.ends_with('.')),
            None => name == pattern,
        };
        if hit { ip.trim().parse::<IpAddr>().ok() } else { None }
    })
}

/// The resolver validation asks: `acme.validation.dns_server` (an IP address with an optional
/// port, UDP and TCP) when set, else the system's. Uncached, so a record published a moment ago
/// is seen and a stale one is not; its per-query timeout is half the validation's, so a second
/// attempt fits before the deadline.
pub(super) fn resolver(settings: &AcmeValidationSettings) -> Result<TokioResolver, Failure> {
    use hickory_resolver::config::{
        ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    let server = settings.dns_server.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let mut builder = match server {
        Some(server) => {
            let addr: SocketAddr = server
                .parse()
                .or_else(|_| server.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    Failure::new(
                        FailureKind::ServerInternal,
                        format!("acme.validation.dns_server {server:?} is not an IP address with an optional port"),
                    )
                })?;
            let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
            udp.port = addr.port();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            let mut b = hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![ns]),
                TokioRuntimeProvider::default(),
            );
            // A configured server is the whole truth: /etc/hosts of this machine is not asked.
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        }
        None => TokioResolver::builder_tokio()
            .map_err(|e| Failure::new(FailureKind::ServerInternal, format!("no system resolver: {e}")))?,
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = (super::time_limit(settings) / 2).max(std::time::Duration::from_secs(1));
    builder.build().map_err(|e| Failure::new(FailureKind::ServerInternal, format!("resolver: {e}")))
}

/// Turns hosts into the addresses validation may connect to, for one validation: the resolver is
/// built once, on first need, and reused for redirects.
pub(super) struct Lookup<'s> {
    settings: &'s AcmeValidationSettings,
    policy: Policy,
    resolver: Option<TokioResolver>,
}

impl<'s> Lookup<'s> {
    pub(super) fn new(settings: &'s AcmeValidationSettings) -> Result<Self, Failure> {
        Ok(Lookup { settings, policy: Policy::new(settings)?, resolver: None })
    }

    pub(super) fn settings(&self) -> &'s AcmeValidationSettings {
        self.settings
    }

    /// The addresses to try for `host`, in order (IPv6 first, then IPv4): an IP address if the
    /// policy allows it; a pinned address as given; else the name's A and AAAA records the policy
    /// allows. Refused records are dropped; if none is left, the failure lists why each was.
    pub(super) async fn addresses(&mut self, host: &Host) -> Result<Vec<IpAddr>, Failure> {
        let name = match host {
            Host::Ip(ip) => {
                self.policy.check(*ip)?;
                return Ok(vec![*ip]);
            }
            Host::Name(name) => name,
        };
        if let Some(ip) = pinned(self.settings, name) {
            return Ok(vec![ip]);
        }
        let built = match self.resolver.take() {
            Some(r) => r,
            None => resolver(self.settings)?,
        };
        let resolver = self.resolver.insert(built);
        let found = resolver.lookup_ip(format!("{name}.")).await.map_err(|e| {
            let detail = if e.is_no_records_found() {
                format!("{name} has no A or AAAA record")
            } else {
                format!("cannot resolve {name}: {e}")
            };
            Failure::new(FailureKind::Dns, detail)
        })?;
        let resolved = ipv6_first(found.iter());
        if resolved.is_empty() {
            return Err(Failure::new(FailureKind::Dns, format!("{name} has no A or AAAA record")));
        }
        let mut allowed = Vec::new();
        let mut refusals = Vec::new();
        for ip in resolved {
            match self.policy.check(ip) {
                Ok(()) => allowed.push(ip),
                Err(f) => refusals.push(f.detail),
            }
        }
        if allowed.is_empty() {
            return Err(Failure::new(
                FailureKind::Connection,
                format!("every address of {name} is refused: {}", refusals.join("; ")),
            ));
        }
        Ok(allowed)
    }
}

/// IPv6 addresses first, then IPv4, each in the resolver's order, without duplicates.
fn ipv6_first(found: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = Vec::new();
    for ip in found {
        if !all.contains(&ip) {
            all.push(ip);
        }
    }
    all.sort_by_key(|ip| ip.is_ipv4()); // stable: keeps the order within each family
    all
}

/// Connects to the first of `addresses` (already checked) that accepts on `port`, in order. Each
/// attempt gets an equal share of the time left before `deadline`, keeping one share for the
/// exchange that follows, so a black-holed first address cannot use up the time the next one
/// needs. A total failure names every address tried and why it failed.
pub(super) async fn connect(
    host: &str,
    addresses: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> Result<TcpStream, Failure> {
    let mut tried = Vec::new();
    for (i, ip) in addresses.iter().enumerate() {
        let addr = SocketAddr::new(*ip, port);
        let left = (addresses.len() - i) as u32;
        let share = deadline.saturating_duration_since(Instant::now()) / (left + 1);
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => tried.push(format!("{addr}: {e}")),
            Err(_) => tried.push(format!("{addr}: no answer within {} ms", share.as_millis())),
        }
    }
    let detail = if tried.is_empty() {
        format!("no address to connect to for {host}")
    } else {
        format!("cannot connect to {host}: {}", tried.join("; "))
    };
    Err(Failure::new(FailureKind::Connection, detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> AcmeValidationSettings {
        AcmeValidationSettings::default()
    }

    fn policy(s: &AcmeValidationSettings) -> Policy {
        Policy::new(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn assert_refused(p: &Policy, addr: &str) {
        let f = p.check(ip(addr)).expect_err(addr);
        assert_eq!(f.kind, FailureKind::Connection, "{addr}");
        let shown = ip(addr).to_string();
        assert!(f.detail.contains("refused") && f.detail.contains(&shown), "{addr}: {}", f.detail);
    }

    #[test]
    fn built_in_ranges_are_refused_in_every_form() {
        let p = policy(&settings());
        for addr in [
            // loopback
            "127.0.0.1",
            "127.255.0.9",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::7f00:1",
            // link-local, the usual metadata address included
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "febf::1",
            "::ffff:169.254.169.254",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1:2::a9fe:a9fe",
            // unspecified
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::ffff:0.0.0.0",
            // multicast and broadcast
            "224.0.0.1",
            "239.255.255.250",
            "ff02::1",
            "ff05::2",
            "::ffff:224.0.0.1",
            "255.255.255.255",
            // cloud metadata
            "100.100.100.200",
            "fd00:ec2::254",
            "::ffff:100.100.100.200",
        ] {
            assert_refused(&p, addr);
        }
        let f = p.check(ip("127.0.0.1")).unwrap_err();
        assert_eq!(f.detail, "127.0.0.1 is a loopback address: validation refused (acme.validation.allow_loopback)");
        let f = p.check(ip("64:ff9b::a9fe:a9fe")).unwrap_err();
        assert!(f.detail.contains("169.254.169.254 in NAT64 form"), "{}", f.detail);
    }

    #[test]
    fn public_and_private_ranges_are_allowed() {
        let p = policy(&settings());
        for addr in [
            "192.0.2.1",
            "8.8.8.8",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "100.100.100.201",
            "fc00::1",
            "fd00:ec2::253",
            "fd12:3456::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "64:ff9b::192.0.2.1",
        ] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn deny_cidrs_refuse_addresses_and_their_ipv4_forms() {
        let mut s = settings();
        s.deny_cidrs = vec!["10.0.0.0/8".into(), " 2001:db8::/32 ".into(), "192.0.2.7".into()];
        let p = policy(&s);
        for addr in ["10.1.2.3", "::ffff:10.1.2.3", "64:ff9b::10.1.2.3", "2001:db8::1", "192.0.2.7"] {
            assert_refused(&p, addr);
            assert!(p.check(ip(addr)).unwrap_err().detail.contains("deny_cidrs"));
        }
        for addr in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "172.16.0.1"] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
        // A deny entry written in IPv4-mapped form still covers the plain IPv4 address.
        s.deny_cidrs = vec!["::ffff:192.168.0.0/112".into()];
        assert_refused(&policy(&s), "192.168.3.4");
        s.deny_cidrs = vec!["not-a-cidr".into()];
        assert_eq!(Policy::new(&s).unwrap_err().kind, FailureKind::ServerInternal);
    }

    #[test]
    fn allow_loopback_allows_loopback_only() {
        let mut s = settings();
        s.allow_loopback = true;
        let p = policy(&s);
        for addr in ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
        for addr in ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "0.0.0.0", "::", "fe80::1"] {
            assert_refused(&p, addr);
        }
        // NAT64 loopback is some gateway's loopback, not ours.
        assert_refused(&p, "64:ff9b::7f00:1");
        // deny_cidrs still apply to loopback.
        s.deny_cidrs = vec!["127.0.0.0/8".into()];
        assert_refused(&policy(&s), "::ffff:127.0.0.1");
    }

    #[test]
    fn embedded_ipv4_forms_are_recognized() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let lo = Ipv4Addr::LOCALHOST;
        assert_eq!(embedded_v4(v6("::ffff:127.0.0.1")), Some((lo, Embedding::Mapped)));
        assert_eq!(embedded_v4(v6("64:ff9b::7f00:1")), Some((lo, Embedding::Nat64)));
        assert_eq!(embedded_v4(v6("64:ff9b:1:abcd::7f00:1")), Some((lo, Embedding::Nat64)));
        assert_eq!(embedded_v4(v6("::127.0.0.1")), Some((lo, Embedding::Compatible)));
        assert_eq!(embedded_v4(v6("::1")), None);
        assert_eq!(embedded_v4(v6("::")), None);
        assert_eq!(embedded_v4(v6("2001:db8::7f00:1")), None);
        assert_eq!(embedded_v4(v6("64:ff9b:2::7f00:1")), None);
    }

    #[test]
    fn hosts_are_parsed_strictly() {
        assert_eq!(Host::parse("A.Example.com.").unwrap(), Host::Name("a.example.com".into()));
        assert_eq!(Host::parse("2001:db8::1").unwrap().authority(), "[2001:db8::1]");
        assert_eq!(Host::parse("192.0.2.1").unwrap().authority(), "192.0.2.1");
        for bad in ["", "a..b", "a b", "a\r\nHost: x", "*.example.com", "a/b", "[::1]"] {
            assert_eq!(Host::parse(bad).unwrap_err().kind, FailureKind::ServerInternal, "{bad:?}");
        }
    }

    #[test]
    fn pinned_entries_match_names_and_suffixes() {
        let mut s = settings();
        s.hosts = vec!["exact.test=192.0.2.1".into(), "*.wild.test = 192.0.2.2".into(), "bad.test=nope".into()];
        assert_eq!(pinned(&s, "exact.test"), Some(ip("192.0.2.1")));
        assert_eq!(pinned(&s, "sub.exact.test"), None);
        assert_eq!(pinned(&s, "wild.test"), Some(ip("192.0.2.2")));
        assert_eq!(pinned(&s, "a.b.wild.test"), Some(ip("192.0.2.2")));
        assert_eq!(pinned(&s, "notwild.test"), None);
        assert_eq!(pinned(&s, "bad.test"), None);
    }

    #[tokio::test]
    async fn a_pinned_address_is_used_as_given_and_an_ip_identifier_is_checked() {
        let mut s = settings();
        s.hosts = vec!["pinned.test=127.0.0.1".into()];
        let mut lookup = Lookup::new(&s).unwrap();
        let pinned = lookup.addresses(&Host::parse("pinned.test").unwrap()).await.unwrap();
        assert_eq!(pinned, [ip("127.0.0.1")]);
        let f = lookup.addresses(&Host::parse("127.0.0.1").unwrap()).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(f.detail.contains("refused") && f.detail.contains("127.0.0.1"), "{}", f.detail);
        assert_eq!(lookup.addresses(&Host::parse("192.0.2.1").unwrap()).await.unwrap(), [ip("192.0.2.1")]);
    }

    async fn resolve(zone: super::super::dns01::fake::Zone) -> Result<Vec<IpAddr>, Failure> {
        let server = super::super::dns01::fake::serve(zone).await;
        let s = AcmeValidationSettings { dns_server: Some(server.to_string()), timeout_s: 5, ..settings() };
        Lookup::new(&s).unwrap().addresses(&Host::parse("site.test").unwrap()).await
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked_and_ordered() {
        use super::super::dns01::fake::Zone;
        let zone = Zone {
            a: vec!["192.0.2.1".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            aaaa: vec!["2001:db8::1".parse().unwrap(), "fe80::1".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(resolve(zone).await.unwrap(), [ip("2001:db8::1"), ip("192.0.2.1")]);

        let zone = Zone {
            a: vec!["169.254.169.254".parse().unwrap()],
            aaaa: vec!["::1".parse().unwrap()],
            ..Default::default()
        };
        let f = resolve(zone).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(
            f.detail.starts_with("every address of site.test is refused")
                && f.detail.contains("169.254.169.254")
                && f.detail.contains("::1"),
            "{}",
            f.detail
        );

        let f = resolve(Zone::default()).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Dns);
        assert!(f.detail.contains("no A or AAAA record"), "{}", f.detail);
    }

    #[test]
    fn resolved_addresses_go_ipv6_first() {
        let found = ["192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2", "192.0.2.1"].map(ip);
        assert_eq!(ipv6_first(found.into_iter()), ["2001:db8::1", "2001:db8::2", "192.0.2.1", "192.0.2.2"].map(ip));
    }

    #[tokio::test]
    async fn connecting_falls_back_from_ipv6_to_ipv4() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1 must work");
        let port = listener.local_addr().unwrap().port();
        // ::1 must exist here and have nothing on that port, so the first attempt is a real refusal.
        drop(std::net::TcpListener::bind(("::1", port)).expect("binding [::1] must work on this machine"));
        let accepted = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = connect("localhost", &[ip("::1"), ip("127.0.0.1")], port, deadline).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), SocketAddr::new(ip("127.0.0.1"), port));
        assert!(accepted.await.unwrap().unwrap().ip().is_ipv4());
    }

    #[tokio::test]
    async fn a_total_connection_failure_names_what_was_tried() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let f = connect("localhost", &[ip("::1"), ip("127.0.0.1")], port, deadline).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(
            f.detail.contains(&format!("[::1]:{port}")) && f.detail.contains(&format!("127.0.0.1:{port}")),
            "{}",
            f.detail
        );
    }
}
