//! Challenge validation (RFC 8555 §8, RFC 8737): http-01, dns-01 and tls-alpn-01, each really
//! performed against the name being authorized. There is no switch that skips it: the only
//! shortcut is a pre-validated EAB key (its authorizations never get a challenge).
//!
//! A challenge POST marks the challenge `processing` and spawns [`run`]; the outcome is written
//! in one transaction (challenge and authorization `valid` or `invalid`, with the error kept on
//! the challenge so the client sees why).
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::asn1::Asn1Object;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509Ref;

use super::orders::{Authz, Challenge};
use crate::engine::Engine;

/// Why a validation failed: the ACME error type (`connection`, `dns`, `tls`,
/// `incorrectResponse`) and a detail for the client.
pub type Failure = (&'static str, String);

fn fail(kind: &'static str) -> impl Fn(String) -> Failure {
    move |m| (kind, m)
}

/// How a failure is kept on the challenge row, and read back for the challenge's `error`.
pub fn encode_failure(f: &Failure) -> String {
    format!("{}|{}", f.0, f.1)
}

pub fn decode_failure(stored: &str) -> (&str, &str) {
    match stored.split_once('|') {
        Some((k @ ("connection" | "dns" | "tls" | "incorrectResponse" | "serverInternal"), d)) => (k, d),
        _ => ("incorrectResponse", stored),
    }
}

pub const HTTP_01: &str = "http-01";
pub const DNS_01: &str = "dns-01";
pub const TLS_ALPN_01: &str = "tls-alpn-01";

/// The challenge types offered for an identifier, as Pebble and Let's Encrypt do: all three for
/// a name, dns-01 only for a wildcard, http-01 and tls-alpn-01 for an IP address (RFC 8738).
pub fn offered(identifier: &str, wildcard: bool) -> &'static [&'static str] {
    if wildcard {
        &[DNS_01]
    } else if identifier.parse::<IpAddr>().is_ok() {
        &[HTTP_01, TLS_ALPN_01]
    } else {
        &[HTTP_01, DNS_01, TLS_ALPN_01]
    }
}

/// Validates one challenge and records the outcome. Never fails: a validation that cannot be
/// performed is an `invalid` authorization with the reason, and a database error is logged (the
/// challenge stays `processing`, which a client sees as a validation that did not finish).
pub async fn run(engine: Arc<Engine>, ch: Challenge, thumbprint: String) {
    let e2 = engine.clone();
    let ch2 = ch.clone();
    let authz = match web::block(move || -> Result<Authz, String> {
        let mut c = e2.pool.get().map_err(|e| e.to_string())?;
        crate::acme::orders::authz(&mut c, ch2.authz_id).map_err(|e| e.to_string())
    })
    .await
    {
        Ok(Ok(a)) => a,
        other => {
            tracing::error!(challenge = ch.id, "validation could not load its authorization: {other:?}");
            return;
        }
    };
    let key_authorization = format!("{}.{thumbprint}", ch.token);
    let outcome: Result<(), Failure> = match ch.kind.as_str() {
        DNS_01 => dns01(&engine, &authz.identifier, &key_authorization).await,
        kind @ (HTTP_01 | TLS_ALPN_01) => match resolve_ip(&engine, &authz.identifier).await {
            Err(f) => Err(f),
            Ok(ip) => {
                let (e2, a2, kind) = (engine.clone(), authz.clone(), kind.to_string());
                let token = ch.token.clone();
                web::block(move || {
                    if kind == HTTP_01 {
                        http01(&e2, ip, &a2.identifier, &token, &key_authorization)
                    } else {
                        tls_alpn01(&e2, ip, &a2.identifier, &key_authorization)
                    }
                })
                .await
                .unwrap_or_else(|e| Err(("serverInternal", e.to_string())))
            }
        },
        other => Err(("serverInternal", format!("unknown challenge type {other}"))),
    };
    let ok = outcome.is_ok();
    let (kind, identifier) = (ch.kind.clone(), authz.identifier.clone());
    let recorded = web::block(move || record(&engine, &ch, &authz, outcome)).await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::error!(%identifier, "recording the {kind} outcome failed: {recorded:?}");
    }
    tracing::info!(%identifier, %kind, ok, "challenge validation");
}

/// Restarts the validations a crash interrupted: a challenge left `processing` would otherwise
/// stay so for ever. Validating twice (another instance may be at it) is harmless: the outcome
/// is the same and only a `pending` authorization changes.
pub async fn resume(engine: Arc<Engine>) {
    let e2 = engine.clone();
    let found = web::block(move || -> Result<Vec<(Challenge, String)>, String> {
        let mut c = e2.pool.get().map_err(|e| e.to_string())?;
        // Start with a clean slate: expired nonces and day-old dry-run orders go (issuing nonces
        // also purges now and then; a restart should not wait for that).
        crate::acme::store::purge_nonces(&mut c).map_err(|e| e.to_string())?;
        crate::acme::dry_run::purge(&mut c).map_err(|e| e.to_string())?;
        crate::acme::validation::interrupted(&mut c).map_err(|e| e.to_string())
    })
    .await;
    let Ok(Ok(found)) = found else {
        tracing::error!("cannot list interrupted challenge validations: {found:?}");
        return;
    };
    for (ch, jwk) in found {
        let thumbprint = serde_json::from_str::<serde_json::Value>(&jwk)
            .ok()
            .and_then(|v| v.as_object().and_then(|o| super::jws::thumbprint(o).ok()));
        if let Some(t) = thumbprint {
            tracing::info!(challenge = ch.id, "resuming an interrupted validation");
            actix_web::rt::spawn(run(engine.clone(), ch, t));
        }
    }
}

fn record(engine: &Engine, ch: &Challenge, a: &Authz, outcome: Result<(), Failure>) -> Result<(), String> {
    let mut c = engine.pool.get().map_err(|e| e.to_string())?;
    crate::acme::validation::record(&mut c, ch.id, a.id, outcome.err().map(|e| encode_failure(&e)))
        .map_err(|e| e.to_string())
}

/// `acme.validation.hosts`: `name=IP` or `*.suffix=IP`, checked before DNS.
fn static_host(engine: &Engine, name: &str) -> Option<IpAddr> {
    for entry in &engine.settings.acme.validation.hosts {
        let Some((pattern, ip)) = entry.split_once('=') else { continue };
        let pattern = pattern.trim().to_lowercase();
        let hit = match pattern.strip_prefix("*.") {
            Some(suffix) => name == suffix || name.ends_with(&format!(".{suffix}")),
            None => name == pattern,
        };
        if hit && let Ok(ip) = ip.trim().parse::<IpAddr>() {
            return Some(ip);
        }
    }
    name.parse::<IpAddr>().ok()
}

/// The resolver validation asks: `acme.validation.dns_server` when set, else the system's;
/// uncached, so a record just published is seen.
fn resolver(engine: &Engine) -> Result<hickory_resolver::TokioResolver, Failure> {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    let mut builder = match engine.settings.acme.validation.dns_server.as_deref().filter(|s| !s.is_empty()) {
        Some(server) => {
            let addr: SocketAddr = server
                .parse()
                .or_else(|_| format!("{server}:53").parse())
                .map_err(|_| ("serverInternal", format!("acme.validation.dns_server {server:?} is not host:port")))?;
            let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
            udp.port = addr.port();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => hickory_resolver::Resolver::builder_tokio().map_err(|e| ("dns", format!("no system resolver: {e}")))?,
    };
    builder.options_mut().cache_size = 0;
    builder.options_mut().timeout = timeout(engine);
    builder.build().map_err(|e| ("dns", format!("resolver: {e}")))
}

/// The address http-01 and tls-alpn-01 connect to: a static entry, an IP identifier, or the
/// name's first A/AAAA record.
async fn resolve_ip(engine: &Engine, name: &str) -> Result<IpAddr, Failure> {
    if let Some(ip) = static_host(engine, name) {
        return Ok(ip);
    }
    let r = resolver(engine)?;
    let found = r.lookup_ip(format!("{name}.")).await.map_err(|e| ("dns", format!("cannot resolve {name}: {e}")))?;
    found.iter().next().ok_or_else(|| ("dns", format!("{name} has no A or AAAA record")))
}

/// Resolves a redirect's host in a blocking context: static entries, then the system resolver.
fn resolve_blocking(engine: &Engine, name: &str) -> Option<IpAddr> {
    static_host(engine, name).or_else(|| (name, 0).to_socket_addrs().ok()?.next().map(|a| a.ip()))
}

fn timeout(engine: &Engine) -> Duration {
    Duration::from_secs(engine.settings.acme.validation.timeout_s.max(1))
}

fn connect(engine: &Engine, ip: IpAddr, port: u16) -> Result<TcpStream, Failure> {
    let addr = SocketAddr::new(ip, port);
    let s = TcpStream::connect_timeout(&addr, timeout(engine))
        .map_err(|e| ("connection", format!("cannot connect to {addr}: {e}")))?;
    s.set_read_timeout(Some(timeout(engine))).ok();
    s.set_write_timeout(Some(timeout(engine))).ok();
    Ok(s)
}

/// One HTTP/1.0 GET; returns the status and the body (at most 16 KiB read).
fn http_get(
    engine: &Engine,
    ip: IpAddr,
    host: &str,
    port: u16,
    path: &str,
) -> Result<(u16, Option<String>, String), Failure> {
    let mut s = connect(engine, ip, port)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: renewgate-validation\r\nConnection: close\r\n\r\n")
        .map_err(|e| ("connection", e.to_string()))?;
    let mut buf = Vec::new();
    s.take(16 * 1024).read_to_end(&mut buf).map_err(|e| ("connection", format!("reading the answer: {e}")))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| ("incorrectResponse", "the answer is not HTTP".to_string()))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let location = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("location")))
        .map(|(_, v)| v.trim().to_string());
    Ok((status, location, body.to_string()))
}

/// http-01 (RFC 8555 §8.3): GET http://name:port/.well-known/acme-challenge/<token>; the body,
/// trailing whitespace trimmed, must be the key authorization. Redirects to other http URLs on
/// the same validation port are followed (at most 10).
fn http01(engine: &Engine, ip: IpAddr, name: &str, token: &str, key_authorization: &str) -> Result<(), Failure> {
    let port = engine.settings.acme.validation.http01_port;
    let (mut ip, mut host, mut path) = (ip, name.to_string(), format!("/.well-known/acme-challenge/{token}"));
    for _ in 0..=10 {
        let (status, location, body) = http_get(engine, ip, &host, port, &path)?;
        match (status, location) {
            (200, _) => {
                return if body.trim_end() == key_authorization {
                    Ok(())
                } else {
                    Err((
                        "incorrectResponse",
                        format!("the key authorization served for {name} is not the expected one"),
                    ))
                };
            }
            (301 | 302 | 303 | 307 | 308, Some(loc)) => {
                if let Some(rest) = loc.strip_prefix("http://") {
                    let (h, p) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
                    let next = h.split(':').next().unwrap_or(h).to_string();
                    if next != host {
                        ip = resolve_blocking(engine, &next)
                            .ok_or_else(|| ("dns", format!("cannot resolve {next}, the redirect's host")))?;
                    }
                    host = next;
                    path = p;
                } else if loc.starts_with('/') {
                    path = loc;
                } else {
                    return Err((
                        "connection",
                        format!("http://{host}:{port}{path} redirects to {loc}, which is not followed"),
                    ));
                }
            }
            (s, _) => return Err(("incorrectResponse", format!("http://{host}:{port}{path} answered {s}"))),
        }
    }
    Err(("connection", format!("too many redirects validating {name}")))
}

/// base64url(SHA-256(key authorization)): the TXT value dns-01 looks for.
pub fn dns01_value(key_authorization: &str) -> String {
    B64U.encode(openssl::sha::sha256(key_authorization.as_bytes()))
}

/// dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.<name>` (a wildcard's base name)
/// holds base64url(SHA-256(key authorization)). Asked uncached, of `acme.validation.dns_server`
/// or the system's resolvers.
async fn dns01(engine: &Engine, name: &str, key_authorization: &str) -> Result<(), Failure> {
    use hickory_resolver::proto::rr::RData;

    let resolver = resolver(engine)?;
    let fqdn = format!("_acme-challenge.{name}.");
    let expected = dns01_value(key_authorization);
    let lookup =
        resolver.txt_lookup(fqdn.as_str()).await.map_err(|e| ("dns", format!("no TXT record at {fqdn}: {e}")))?;
    let mut seen = 0;
    for rec in lookup.answers() {
        if let RData::TXT(t) = &rec.data {
            seen += 1;
            let value: String = t.txt_data.iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect();
            if value == expected {
                return Ok(());
            }
        }
    }
    Err((
        "incorrectResponse",
        format!("none of the {seen} TXT records at {fqdn} is the expected digest of the key authorization"),
    ))
}

/// The OID of the acmeIdentifier extension (RFC 8737 §3).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// tls-alpn-01 (RFC 8737): TLS to name:port with SNI = name and ALPN `acme-tls/1`, no chain
/// check; the certificate has exactly one SAN, the name, and a critical acmeIdentifier extension
/// holding OCTET STRING(SHA-256(key authorization)).
fn tls_alpn01(engine: &Engine, ip_addr: IpAddr, name: &str, key_authorization: &str) -> Result<(), Failure> {
    let port = engine.settings.acme.validation.tlsalpn01_port;
    let ip = name.parse::<IpAddr>().ok();
    // RFC 8738 §6: an IP address is sent in SNI as its reverse-DNS name.
    let sni = match ip {
        Some(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Some(IpAddr::V6(v6)) => {
            let hex: String = v6.octets().iter().map(|b| format!("{b:02x}")).collect();
            let mut nibbles: Vec<String> = hex.chars().rev().map(|c| c.to_string()).collect();
            nibbles.push("ip6.arpa".into());
            nibbles.join(".")
        }
        None => name.to_string(),
    };
    let tcp = connect(engine, ip_addr, port)?;
    let internal = fail("serverInternal");
    let tls = fail("tls");
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| internal(e.to_string()))?;
    b.set_verify(SslVerifyMode::NONE);
    b.set_alpn_protos(b"\x0aacme-tls/1").map_err(|e| internal(e.to_string()))?;
    let cfg = b.build().configure().map_err(|e| internal(e.to_string()))?.verify_hostname(false);
    let stream = cfg.connect(&sni, tcp).map_err(|e| {
        let _ = openssl::error::ErrorStack::get();
        tls(format!("TLS handshake with {name}:{port} failed: {e}"))
    })?;
    if stream.ssl().selected_alpn_protocol() != Some(b"acme-tls/1") {
        return Err(tls(format!("{name}:{port} did not negotiate the acme-tls/1 protocol")));
    }
    let cert = stream.ssl().peer_certificate().ok_or_else(|| tls(format!("{name}:{port} sent no certificate")))?;
    let sans: Vec<String> = cert
        .subject_alt_names()
        .map(|s| {
            s.iter()
                .map(|g| match (g.dnsname(), g.ipaddress()) {
                    (Some(d), _) => d.to_lowercase(),
                    (_, Some(b)) if b.len() == 4 => {
                        IpAddr::from(<[u8; 4]>::try_from(b).unwrap_or_default()).to_string()
                    }
                    (_, Some(b)) if b.len() == 16 => {
                        IpAddr::from(<[u8; 16]>::try_from(b).unwrap_or_default()).to_string()
                    }
                    _ => String::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let want = ip.map(|i| i.to_string()).unwrap_or_else(|| name.to_lowercase());
    if sans != [want.clone()] {
        return Err((
            "incorrectResponse",
            format!("the tls-alpn-01 certificate must name exactly {want}, it names {sans:?}"),
        ));
    }
    let (critical, value) = acme_identifier(&cert)
        .ok_or_else(|| ("incorrectResponse", "the certificate has no acmeIdentifier extension".to_string()))?;
    if !critical {
        return Err(("incorrectResponse", "the acmeIdentifier extension is not critical".into()));
    }
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(&openssl::sha::sha256(key_authorization.as_bytes()));
    if value != expected {
        return Err((
            "incorrectResponse",
            "the acmeIdentifier extension does not hold the digest of the key authorization".into(),
        ));
    }
    Ok(())
}

/// The acmeIdentifier extension's criticality and DER value. The openssl crate has no getter
/// for an arbitrary extension, so this reads it through openssl-sys.
fn acme_identifier(cert: &X509Ref) -> Option<(bool, Vec<u8>)> {
    let oid = Asn1Object::from_str(ACME_IDENTIFIER_OID).ok()?;
    // SAFETY: `cert` and `oid` are live for the whole block; the extension and its data are
    // borrowed from `cert` and copied out before it ends.
    unsafe {
        let idx = openssl_sys::X509_get_ext_by_OBJ(cert.as_ptr(), oid.as_ptr(), -1);
        if idx < 0 {
            return None;
        }
        let ext = openssl_sys::X509_get_ext(cert.as_ptr(), idx);
        if ext.is_null() {
            return None;
        }
        let critical = openssl_sys::X509_EXTENSION_get_critical(ext) == 1;
        let data = openssl_sys::X509_EXTENSION_get_data(ext);
        if data.is_null() {
            return None;
        }
        let p = openssl_sys::ASN1_STRING_get0_data(data as *const _);
        let n = openssl_sys::ASN1_STRING_length(data as *const _);
        Some((critical, std::slice::from_raw_parts(p, n.max(0) as usize).to_vec()))
    }
}
