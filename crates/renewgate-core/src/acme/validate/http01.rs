//! http-01 (RFC 8555 §8.3): `GET http://<identifier>/.well-known/acme-challenge/<token>` on
//! `acme.validation.http01_port`; a 200 whose body, trailing whitespace trimmed, is the key
//! authorization proves control.
//!
//! A small HTTP/1.1 client of its own rather than a library: it only ever sends one GET, reads at
//! most [`READ_LIMIT`] bytes, and must put every address it connects to (including each
//! redirect's) through the target policy, which a general client's connector would hide.
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::targets::{self, Host, Lookup};
use super::{Failure, FailureKind};

/// Redirects followed before giving up (as Let's Encrypt).
const MAX_REDIRECTS: usize = 10;
/// Bytes read of an answer, head and body together: a key authorization is about a hundred
/// bytes, and a validated server must not be able to make the gateway buffer more.
const READ_LIMIT: usize = 16 * 1024;
/// Redirect URLs longer than this are shown cut in failure details.
const SHOWN_URL_CHARS: usize = 120;

/// Where one request goes: the host (for resolution and the Host header), the port written in
/// the URL (80 when none) and the path with its query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    host: Host,
    url_port: u16,
    path: String,
}

impl Url {
    /// The URL for failure details. Every part was checked to be printable ASCII.
    fn shown(&self) -> String {
        let port = if self.url_port == 80 { String::new() } else { format!(":{}", self.url_port) };
        cut(&format!("http://{}{port}{}", self.host.authority(), self.path))
    }

    fn host_header(&self) -> String {
        match self.url_port {
            80 => self.host.authority(),
            p => format!("{}:{p}", self.host.authority()),
        }
    }
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(SHOWN_URL_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

pub(super) async fn validate(
    lookup: &mut Lookup<'_>,
    host: &Host,
    token: &str,
    key_authorization: &str,
    deadline: Instant,
) -> Result<(), Failure> {
    let port = lookup.settings().http01_port;
    let mut url = Url { host: host.clone(), url_port: 80, path: format!("/.well-known/acme-challenge/{token}") };
    let mut addresses = lookup.addresses(&url.host).await?;
    let mut redirects = 0;
    loop {
        let mut stream = targets::connect(&url.host.to_string(), &addresses, port, deadline).await?;
        let answer = exchange(&mut stream, &url).await?;
        match answer.status {
            200 => {
                return if answer.body.trim_ascii_end() == key_authorization.as_bytes() {
                    Ok(())
                } else {
                    Err(Failure::new(
                        FailureKind::IncorrectResponse,
                        format!("the key authorization served for {host} at {} is not the expected one", url.shown()),
                    ))
                };
            }
            301 | 302 | 303 | 307 | 308 => {
                if redirects == MAX_REDIRECTS {
                    return Err(Failure::new(
                        FailureKind::Connection,
                        format!("more than {MAX_REDIRECTS} redirects validating {host}"),
                    ));
                }
                redirects += 1;
                let location = answer.location.ok_or_else(|| {
                    Failure::new(
                        FailureKind::IncorrectResponse,
                        format!("{} answered {} without a Location", url.shown(), answer.status),
                    )
                })?;
                let next = follow(&url, &location, port)?;
                if next.host != url.host {
                    addresses = lookup.addresses(&next.host).await?;
                }
                url = next;
            }
            status => {
                return Err(Failure::new(FailureKind::IncorrectResponse, format!("{} answered {status}", url.shown())));
            }
        }
    }
}

/// The next URL of a redirect: an absolute `http://host[:port]/path` (also `//host/path`) or an
/// absolute path on the same host. The port written in the URL must be 80 or
/// `acme.validation.http01_port`; the connection always goes to the latter, like the first one
/// (the redirect may pick the host, not the service). https is not followed: validation speaks
/// plain HTTP only, and the redirect is then a connection failure the client can act on.
fn follow(current: &Url, location: &str, http01_port: u16) -> Result<Url, Failure> {
    let location = location.trim();
    let refused = |why: &str| {
        Failure::new(
            FailureKind::Connection,
            format!("{} redirects to {}: {why}, not followed", current.shown(), cut(location)),
        )
    };
    // Nothing that could end up in the request line or the Host header beyond a plain URL.
    if location.is_empty() || !location.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::new(
            FailureKind::Connection,
            format!("{} redirects to a Location that is not a plain URL, not followed", current.shown()),
        ));
    }
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    let lower = location.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &location["http://".len()..]
    } else if let Some(rest) = location.strip_prefix("//") {
        rest
    } else if location.starts_with('/') {
        return Ok(Url { path: location.to_string(), ..current.clone() });
    } else if lower.starts_with("https://") {
        return Err(refused("an https URL"));
    } else {
        return Err(refused("neither an absolute http URL nor an absolute path"));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    if authority.contains('@') {
        return Err(refused("a URL with credentials"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, after) = v6.split_once(']').ok_or_else(|| refused("a malformed host"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| refused("a malformed host"))?),
        };
        match inner.parse() {
            Ok(std::net::IpAddr::V6(ip)) => (Host::Ip(ip.into()), port),
            _ => return Err(refused("a malformed host")),
        }
    } else {
        let (h, p) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        // An IPv6 address only counts in brackets, as in any URL.
        let host = Host::from_text(h).filter(|h| !matches!(h, Host::Ip(std::net::IpAddr::V6(_))));
        (host.ok_or_else(|| refused("a malformed host"))?, p)
    };
    let url_port = match port {
        None | Some("") => 80,
        Some(p) => p.parse::<u16>().map_err(|_| refused("a malformed port"))?,
    };
    if url_port != 80 && url_port != http01_port {
        return Err(refused(&format!("port {url_port} is neither 80 nor the validation port {http01_port}")));
    }
    Ok(Url { host, url_port, path })
}

/// An answer as far as validation cares.
#[derive(Debug)]
struct Answer {
    status: u16,
    location: Option<String>,
    /// Only read for a 200.
    body: Vec<u8>,
}

/// How a 200's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// Neither: the body ends when the peer closes.
    Close,
}

/// The status line and the headers validation uses.
#[derive(Debug)]
struct Head {
    status: u16,
    location: Option<String>,
    framing: Framing,
}

/// Sends the GET and reads the answer: up to the end of the head for anything but a 200, for a
/// 200 up to its Content-Length, the end of its chunks or the connection's close, and never more
/// than [`READ_LIMIT`] bytes. A peer that does not stop is cut short by the validation's deadline.
async fn exchange(stream: &mut TcpStream, url: &Url) -> Result<Answer, Failure> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: renewgate-acme-validation\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path,
        url.host_header()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| Failure::new(FailureKind::Connection, format!("sending the request for {}: {e}", url.shown())))?;
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        // Only the new bytes (and the three before them) can complete the blank line.
        let scanned = buf.len().saturating_sub(3);
        match read_more(stream, &mut buf).await {
            Ok(true) => {}
            Ok(false) => return Err(not_http(url)),
            Err(e) => {
                return Err(Failure::new(
                    FailureKind::Connection,
                    format!("reading the answer of {}: {e}", url.shown()),
                ));
            }
        }
        if let Some(i) = buf[scanned..].windows(4).position(|w| w == b"\r\n\r\n") {
            break scanned + i;
        }
    };
    let head = parse_head(&buf[..head_end], url)?;
    if head.status != 200 {
        return Ok(Answer { status: head.status, location: head.location, body: Vec::new() });
    }
    let body_start = head_end + 4;
    loop {
        let complete = match head.framing {
            Framing::Length(n) => buf.len() - body_start >= n,
            Framing::Chunked => dechunk(&buf[body_start..]).1,
            Framing::Close => false,
        };
        // The end of the stream, the read limit or a reset end the body: a truncated body is
        // simply not the key authorization.
        if complete || !matches!(read_more(stream, &mut buf).await, Ok(true)) {
            break;
        }
    }
    let body = &buf[body_start..];
    let body = match head.framing {
        Framing::Length(n) => body[..n.min(body.len())].to_vec(),
        Framing::Chunked => dechunk(body).0,
        Framing::Close => body.to_vec(),
    };
    Ok(Answer { status: head.status, location: head.location, body })
}

/// Reads what the peer sent next onto `buf`; `false` at the end of the stream or when `buf`
/// holds [`READ_LIMIT`] bytes.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let room = READ_LIMIT.saturating_sub(buf.len());
    if room == 0 {
        return Ok(false);
    }
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk[..room.min(4096)]).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn not_http(url: &Url) -> Failure {
    Failure::new(FailureKind::IncorrectResponse, format!("{} did not answer with an HTTP response", url.shown()))
}

fn parse_head(head: &[u8], url: &Url) -> Result<Head, Failure> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") && code.len() == 3 => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| not_http(url))?;
    let (mut location, mut length, mut chunked) = (None, None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "location" => location = location.or(Some(value.to_string())),
            "content-length" => length = length.or(value.parse::<usize>().ok()),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().split(',').any(|c| c.trim() == "chunked"),
            _ => {}
        }
    }
    // As in RFC 9112 §6.3: chunked wins over a Content-Length.
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Close,
    };
    Ok(Head { status, location, framing })
}

/// Decodes a chunked body as far as it goes; `true` once the last chunk was seen (trailers are
/// ignored).
fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else { return (out, false) };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else { return (out, false) };
        if size == 0 {
            return (out, true);
        }
        let rest = &data[line_end + 2..];
        if size.checked_add(2).is_none_or(|needed| rest.len() < needed) {
            out.extend_from_slice(&rest[..rest.len().min(size)]);
            return (out, false);
        }
        out.extend_from_slice(&rest[..size]);
        data = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::validate::{ChallengeKind, Target, validate as validate_challenge};
    use crate::settings::AcmeValidationSettings;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant as StdInstant};
    use tokio::net::TcpListener;

    const KA: &str = "tok-en.thumbprint";

    /// A server on 127.0.0.1 answering the n-th request with `answers(its port)[n]` (the last one again
    /// after that); returns its port and the request heads it received.
    async fn serve(answers: impl FnOnce(u16) -> Vec<String>) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1 must work");
        let port = listener.local_addr().unwrap().port();
        let answers = answers(port);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let n = {
                    let mut seen = seen2.lock().unwrap();
                    seen.push(String::from_utf8_lossy(&head).into_owned());
                    seen.len() - 1
                };
                let answer = answers[n.min(answers.len() - 1)].clone();
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (port, seen)
    }

    fn settings(port: u16, hosts: &[&str]) -> AcmeValidationSettings {
        AcmeValidationSettings {
            http01_port: port,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            timeout_s: 5,
            ..Default::default()
        }
    }

    async fn run(settings: &AcmeValidationSettings, identifier: &str) -> Result<(), Failure> {
        let t = Target { kind: ChallengeKind::Http01, identifier, token: "tok-en", key_authorization: KA };
        validate_challenge(settings, &t).await
    }

    fn ok(body: &str) -> String {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    }

    #[tokio::test]
    async fn the_expected_key_authorization_validates() {
        let (port, seen) = serve(|_| vec![ok(&format!("{KA}\r\n"))]).await;
        let s = settings(port, &["site.test=127.0.0.1"]);
        assert_eq!(run(&s, "site.test").await, Ok(()));
        let seen = seen.lock().unwrap();
        assert!(seen[0].starts_with("GET /.well-known/acme-challenge/tok-en HTTP/1.1\r\n"), "{}", seen[0]);
        assert!(seen[0].contains("\r\nHost: site.test\r\n"), "{}", seen[0]);
    }

    #[tokio::test]
    async fn bodies_without_length_and_chunked_bodies_are_read() {
        let (port, _) = serve(|_| vec![format!("HTTP/1.0 200 OK\r\n\r\n{KA}\n")]).await;
        assert_eq!(run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await, Ok(()));
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            &KA[..3],
            KA.len() - 3,
            &KA[3..]
        );
        let (port, _) = serve(|_| vec![chunked]).await;
        assert_eq!(run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await, Ok(()));
    }

    #[tokio::test]
    async fn a_wrong_body_fails_without_echoing_it() {
        let (port, _) = serve(|_| vec![ok("secret-internal-page-content")]).await;
        let f = run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::IncorrectResponse);
        assert!(f.detail.contains("is not the expected one"), "{}", f.detail);
        assert!(!f.detail.contains("secret-internal-page-content"), "{}", f.detail);
    }

    #[tokio::test]
    async fn an_error_status_is_named() {
        let (port, _) = serve(|_| vec!["HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here!".into()]).await;
        let f = run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::IncorrectResponse);
        assert!(f.detail.contains("answered 404") && !f.detail.contains("not here"), "{}", f.detail);
    }

    #[tokio::test]
    async fn redirects_are_followed_on_the_validation_port() {
        let (port, seen) = serve(|port| {
            vec![
                "HTTP/1.1 301 Moved\r\nLocation: /elsewhere?x=1\r\nContent-Length: 0\r\n\r\n".into(),
                "HTTP/1.1 302 Found\r\nLocation: http://other.test/final\r\n\r\n".into(),
                format!("HTTP/1.1 307 Temporary\r\nLocation: HTTP://Other.Test:{port}/last#frag\r\n\r\n"),
                ok(KA),
            ]
        })
        .await;
        let s = settings(port, &["site.test=127.0.0.1", "*.other.test=127.0.0.1"]);
        assert_eq!(run(&s, "site.test").await, Ok(()));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        assert!(seen[1].starts_with("GET /elsewhere?x=1 HTTP/1.1") && seen[1].contains("Host: site.test\r\n"));
        assert!(seen[2].starts_with("GET /final HTTP/1.1") && seen[2].contains("Host: other.test\r\n"));
        assert!(seen[3].starts_with("GET /last HTTP/1.1") && seen[3].contains(&format!("Host: other.test:{port}\r\n")));
    }

    #[tokio::test]
    async fn a_redirect_to_a_refused_address_is_not_followed() {
        let (port, seen) =
            serve(|_| vec!["HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n\r\n".into()])
                .await;
        let mut s = settings(port, &["site.test=127.0.0.1"]);
        s.allow_loopback = true;
        let f = run(&s, "site.test").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(f.detail.contains("refused") && f.detail.contains("169.254.169.254"), "{}", f.detail);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn https_other_ports_and_relative_paths_are_not_followed() {
        for (location, expected) in [
            ("https://site.test/x", "an https URL"),
            ("http://site.test:1/x", "port 1 is neither"),
            ("elsewhere/x", "neither an absolute http URL"),
            ("http://user@site.test/x", "credentials"),
            ("http://::1/x", "malformed host"),
        ] {
            let (port, _) = serve(|_| vec![format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\n\r\n")]).await;
            let f = run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await.unwrap_err();
            assert_eq!(f.kind, FailureKind::Connection, "{location}");
            assert!(f.detail.contains(expected), "{location}: {}", f.detail);
        }
    }

    #[tokio::test]
    async fn redirect_loops_stop_after_ten() {
        let (port, seen) = serve(|_| vec!["HTTP/1.1 302 Found\r\nLocation: /again\r\n\r\n".into()]).await;
        let f = run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(f.detail.contains("more than 10 redirects"), "{}", f.detail);
        assert_eq!(seen.lock().unwrap().len(), 1 + MAX_REDIRECTS);
    }

    #[tokio::test]
    async fn an_ip_identifier_is_checked_and_a_pinned_loopback_is_not() {
        let (port, _) = serve(|_| vec![ok(KA)]).await;
        let f = run(&settings(port, &[]), "127.0.0.1").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(f.detail.contains("refused") && f.detail.contains("127.0.0.1"), "{}", f.detail);
        // The same server through a pinned name, without allow_loopback.
        assert_eq!(run(&settings(port, &["pinned.test=127.0.0.1"]), "pinned.test").await, Ok(()));
        // With allow_loopback the IP identifier is allowed; its Host header is the address.
        let mut s = settings(port, &[]);
        s.allow_loopback = true;
        assert_eq!(run(&s, "127.0.0.1").await, Ok(()));
    }

    #[tokio::test]
    async fn a_trickling_server_is_cut_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1 must work");
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    for b in b"HTTP/1.1 200 OK\r\n".iter().cycle() {
                        if s.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
            }
        });
        let mut s = settings(port, &["slow.test=127.0.0.1"]);
        s.allow_loopback = true;
        s.timeout_s = 2;
        let started = StdInstant::now();
        let f = run(&s, "slow.test").await.unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(took >= Duration::from_millis(1900), "took {took:?}");
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(f.detail.contains("did not finish within 2 s"), "{}", f.detail);
    }

    #[tokio::test]
    async fn a_body_with_a_length_is_done_without_waiting_for_the_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1 must work");
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(ok(KA).as_bytes()).await;
                    // Keeps the connection open, as a server ignoring `Connection: close` would.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        let started = StdInstant::now();
        assert_eq!(run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await, Ok(()));
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_answer_that_is_not_http_is_an_incorrect_response() {
        let (port, _) = serve(|_| vec!["SSH-2.0-OpenSSH_9.6\r\n\r\n".into()]).await;
        let f = run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::IncorrectResponse);
        assert!(f.detail.contains("did not answer with an HTTP response") && !f.detail.contains("SSH"), "{}", f.detail);
        let (port, _) = serve(|_| vec!["HTTP/1.1 200 OK\r\nContent-Length: 3".into()]).await;
        let f = run(&settings(port, &["site.test=127.0.0.1"]), "site.test").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::IncorrectResponse, "{}", f.detail);
    }

    #[test]
    fn partial_chunks_decode_as_far_as_they_go() {
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n"), (b"abc".to_vec(), true));
        assert_eq!(dechunk(b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n"), (b"abcde".to_vec(), true));
        assert_eq!(dechunk(b"3\r\nab"), (b"ab".to_vec(), false));
        assert_eq!(dechunk(b"zz\r\n"), (Vec::new(), false));
        assert_eq!(dechunk(b"ffffffffffffffff\r\nab"), (b"ab".to_vec(), false));
    }
}
