//! Validation and normalization of every name that can end up in a certificate request.
//!
//! Everything here is a gate in front of a CA: a value that passes must not be able to smuggle a
//! second name (NUL, CR LF), an IP address disguised as a DNS name, or a wildcard over a suffix
//! that nobody owns. Error messages quote the offending value escaped, so they are safe to log.

use std::fmt;
use std::net::IpAddr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::ca::SanSet;
use crate::engine::renew::SubjectSpec;

/// Which kind of name a [`NameError`] is about, so callers can map it to their own error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    Dns,
    Ip,
    Email,
    Uri,
    Upn,
    CommonName,
    FolderDn,
    /// O, OU, L, ST or C of a subject.
    SubjectField,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Dns => "DNS name",
            NameKind::Ip => "IP address",
            NameKind::Email => "e-mail address",
            NameKind::Uri => "URI",
            NameKind::Upn => "UPN",
            NameKind::CommonName => "common name",
            NameKind::FolderDn => "folder DN",
            NameKind::SubjectField => "subject field",
        })
    }
}

/// A refused name. `Display` escapes the value, so the message never holds a raw control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    kind: NameKind,
    value: String,
    reason: String,
}

impl NameError {
    fn new(kind: NameKind, value: &str, reason: impl Into<String>) -> Self {
        NameError { kind, value: value.to_owned(), reason: reason.into() }
    }

    pub fn kind(&self) -> NameKind {
        self.kind
    }

    /// The offending value exactly as given (raw: escape it before logging it yourself).
    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Longest prefix of the value quoted in a message, so a huge input cannot flood the logs.
const SHOWN_CHARS: usize = 256;

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.value.chars().take(SHOWN_CHARS).collect();
        let more = if shown.len() < self.value.len() { "…" } else { "" };
        write!(f, "invalid {} \"{}\"{more}: {}", self.kind, shown.escape_debug(), self.reason)
    }
}

impl std::error::Error for NameError {}

/// Cc controls plus the separators and bidi overrides that break log lines or fake display order.
pub fn is_control_like(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn reject_controls(kind: NameKind, s: &str) -> Result<(), NameError> {
    if s.chars().any(is_control_like) {
        return Err(NameError::new(kind, s, "contains a control character"));
    }
    Ok(())
}

/// Validates a DNS name and returns it in lower-case A-label form without a trailing dot.
///
/// Decisions beyond the RFCs: underscores are allowed anywhere in a label (internal names and
/// `_acme-challenge`-style labels use them), but a label may not start or end with a hyphen.
/// A name whose last label is numeric (`1.2.3.4`, `127.1`, `x.0x7f`) is refused, because resolvers
/// and browsers read it as an IPv4 address: IPs go through [`parse_ip`].
pub fn normalize_dns_name(name: &str, allow_wildcard: bool) -> Result<String, NameError> {
    let err = |reason: &str| NameError::new(NameKind::Dns, name, reason);
    reject_controls(NameKind::Dns, name)?;
    // UTS #46 drops some code points (soft hyphen...), so bound the input before the output check.
    if name.len() > 1024 {
        return Err(err("is far longer than 253 characters"));
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(err("is empty"));
    }
    let base = trimmed.strip_prefix("*.").unwrap_or(trimmed);
    let wildcard = base.len() < trimmed.len();
    if trimmed == "*" || base.contains('*') {
        return Err(err("'*' is only allowed as the whole leftmost label"));
    }
    if wildcard && !allow_wildcard {
        return Err(err("wildcards are not allowed here"));
    }
    // No deny list: the ASCII rules are checked below, on the output, which also catches
    // non-ASCII characters that UTS #46 maps to ASCII punctuation (U+2100 -> "a/c").
    let ascii = Uts46::new()
        .to_ascii(base.as_bytes(), AsciiDenyList::EMPTY, Hyphens::Allow, DnsLength::Ignore)
        .map_err(|_| err("is not a valid internationalized name (bad xn-- label or disallowed character)"))?;
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(err("has an empty label"));
        }
        if let Some(c) = label.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_')) {
            return Err(NameError::new(NameKind::Dns, name, format!("contains the forbidden character {c:?}")));
        }
        if label.len() > 63 {
            return Err(err("has a label longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(err("has a label that starts or ends with a hyphen"));
        }
        if label.starts_with("xn--") && !a_label_round_trips(label) {
            return Err(err("has an xn-- label that does not round-trip through Unicode"));
        }
    }
    let last = ascii.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit())
        || last.strip_prefix("0x").is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(err("looks like an IP address (numeric last label); use an IP address entry"));
    }
    if wildcard && is_public_suffix(&ascii) {
        return Err(err("a wildcard may not cover a single label or a public suffix"));
    }
    let out = if wildcard { format!("*.{ascii}") } else { ascii.into_owned() };
    if out.len() > 253 {
        return Err(err("is longer than 253 characters"));
    }
    Ok(out)
}

/// Punycode decoders accept non-canonical encodings; only the canonical one may pass.
fn a_label_round_trips(label: &str) -> bool {
    let Some(unicode) = idna::punycode::decode_to_string(&label[4..]) else { return false };
    Uts46::new()
        .to_ascii(unicode.as_bytes(), AsciiDenyList::EMPTY, Hyphens::Allow, DnsLength::Ignore)
        .is_ok_and(|again| again == label)
}

/// True if nobody can register directly under this name: every single label (including unknown
/// TLDs and `localhost`), and every multi-label entry of the Public Suffix List, ICANN and private
/// sections (`co.uk`, `github.io`). Expects the A-label form that [`normalize_dns_name`] returns.
pub fn is_public_suffix(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    // psl finds no registrable domain exactly when the whole name is a suffix (its default
    // rule makes any last label one).
    !name.is_empty() && psl::domain(name.as_bytes()).is_none()
}

/// Parses an IPv4 or IPv6 address (std rules: no leading zeros, no zone id, no brackets).
pub fn parse_ip(s: &str) -> Result<IpAddr, NameError> {
    reject_controls(NameKind::Ip, s)?;
    s.parse().map_err(|_| NameError::new(NameKind::Ip, s, "is not an IPv4 or IPv6 address"))
}

/// Validates an rfc822Name and returns it with the domain in lower-case A-label form.
///
/// The local part must be an unquoted dot-atom of ASCII: the SAN field is an IA5String, and
/// quoted or UTF-8 local parts are not supported.
pub fn check_email(s: &str) -> Result<String, NameError> {
    let err = |reason: &str| NameError::new(NameKind::Email, s, reason);
    reject_controls(NameKind::Email, s)?;
    let (local, domain) = split_at_sign(NameKind::Email, s)?;
    if local.len() > 64 {
        return Err(err("has a local part longer than 64 characters"));
    }
    if let Some(c) = local.chars().find(|&c| !(c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))) {
        return Err(NameError::new(NameKind::Email, s, format!("local part contains the forbidden character {c:?}")));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(err("local part has a leading, trailing or doubled dot"));
    }
    let domain = domain_part(NameKind::Email, s, domain)?;
    let out = format!("{local}@{domain}");
    if out.len() > 254 {
        return Err(err("is longer than 254 characters"));
    }
    Ok(out)
}

/// Validates a user principal name: `user@domain`, with a DNS domain and no whitespace.
pub fn check_upn(s: &str) -> Result<(), NameError> {
    reject_controls(NameKind::Upn, s)?;
    let (user, domain) = split_at_sign(NameKind::Upn, s)?;
    if user.chars().any(char::is_whitespace) {
        return Err(NameError::new(NameKind::Upn, s, "contains whitespace"));
    }
    domain_part(NameKind::Upn, s, domain).map(drop)
}

fn split_at_sign(kind: NameKind, s: &str) -> Result<(&str, &str), NameError> {
    let err = |reason: &str| NameError::new(kind, s, reason);
    let (local, domain) = s.split_once('@').ok_or_else(|| err("has no '@'"))?;
    if domain.contains('@') {
        return Err(err("has more than one '@'"));
    }
    if local.is_empty() {
        return Err(err("has an empty part before the '@'"));
    }
    Ok((local, domain))
}

fn domain_part(kind: NameKind, s: &str, domain: &str) -> Result<String, NameError> {
    normalize_dns_name(domain, false).map_err(|e| NameError::new(kind, s, format!("domain part {}", e.reason)))
}

/// Validates a URI: `scheme ":" rest`, ASCII only (the SAN field is an IA5String), no spaces.
pub fn check_uri(s: &str) -> Result<(), NameError> {
    let err = |reason: &str| Err(NameError::new(NameKind::Uri, s, reason));
    reject_controls(NameKind::Uri, s)?;
    if s.len() > 2048 {
        return err("is longer than 2048 characters");
    }
    if !s.is_ascii() {
        return err("contains non-ASCII characters (percent-encode them)");
    }
    if s.contains(' ') {
        return err("contains a space");
    }
    if s.contains(['"', '<', '>', '\\', '^', '`', '{', '|', '}']) {
        return err("contains a character that must be percent-encoded");
    }
    let Some((scheme, rest)) = s.split_once(':') else { return err("has no scheme") };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return err("has an invalid scheme");
    }
    if rest.is_empty() {
        return err("has nothing after the scheme");
    }
    Ok(())
}

/// Validates a subject common name: 1 to 64 characters (ub-common-name), spaces allowed.
pub fn check_common_name(s: &str) -> Result<(), NameError> {
    reject_controls(NameKind::CommonName, s)?;
    match s.chars().count() {
        0 => Err(NameError::new(NameKind::CommonName, s, "is empty")),
        1..=64 => Ok(()),
        _ => Err(NameError::new(NameKind::CommonName, s, "is longer than 64 characters")),
    }
}

/// Validates a policy folder DN such as `\VED\Policy\Certificates`: it only has to be free of
/// control characters, which would split the lines it is written into.
pub fn check_folder_dn(s: &str) -> Result<(), NameError> {
    reject_controls(NameKind::FolderDn, s)
}

/// Checks every name of a request's subject: the CN by [`check_common_name`], the other fields
/// only for control characters (the policy rules their values).
pub fn check_subject(s: &SubjectSpec) -> Result<(), NameError> {
    if let Some(cn) = &s.common_name {
        check_common_name(cn)?;
    }
    let others = [&s.organization, &s.city, &s.state, &s.country];
    for v in others.into_iter().flatten().chain(s.org_units.iter()) {
        reject_controls(NameKind::SubjectField, v)?;
    }
    Ok(())
}

/// Checks every subject alternative name and returns them as they are issued: DNS names (and
/// e-mail domains) in lower-case A-label form without a trailing dot, IP addresses canonical.
/// Wildcards pass here if well formed; whether the folder allows them is the policy's call.
pub fn normalize_sans(sans: &SanSet) -> Result<SanSet, NameError> {
    Ok(SanSet {
        dns: sans.dns.iter().map(|d| normalize_dns_name(d, true)).collect::<Result<_, _>>()?,
        ip: sans.ip.iter().map(|i| parse_ip(i).map(|ip| ip.to_string())).collect::<Result<_, _>>()?,
        email: sans.email.iter().map(|e| check_email(e)).collect::<Result<_, _>>()?,
        uri: sans.uri.iter().map(|u| check_uri(u).map(|_| u.clone())).collect::<Result<_, _>>()?,
        upn: sans.upn.iter().map(|u| check_upn(u).map(|_| u.clone())).collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(s: &str) -> Result<String, NameError> {
        normalize_dns_name(s, false)
    }

    fn wild(s: &str) -> Result<String, NameError> {
        normalize_dns_name(s, true)
    }

    /// Every case must be refused with `kind`, keep its raw value, and give a log-safe message.
    fn refuses<T: fmt::Debug>(check: impl Fn(&str) -> Result<T, NameError>, kind: NameKind, cases: &[&str]) {
        for &case in cases {
            let e = check(case).expect_err(case);
            assert_eq!((e.kind(), e.value()), (kind, case));
            let msg = e.to_string();
            assert!(!msg.chars().any(is_control_like), "{msg:?}");
            let shown: String = case.chars().take(SHOWN_CHARS).collect();
            assert!(msg.starts_with(&format!("invalid {kind} \"{}", shown.escape_debug())), "{msg:?}");
        }
    }

    #[test]
    fn dns_refuses_smuggling_characters() {
        let cases = ["attacker.com\0.example.com", "a b.com", "a/b.com", "a?b.com", "a.com\r\nb.com", "a\u{85}.com"];
        refuses(dns, NameKind::Dns, &cases);
        refuses(dns, NameKind::Dns, &["a\u{2028}b", "a\u{202e}b", "a\u{9b}b", "a\"b", "a@b.com", "a:b.com"]);
        assert_eq!(dns("exa\u{2100}mple.com").unwrap_err().reason(), "contains the forbidden character '/'");
    }

    #[test]
    fn error_message_is_escaped() {
        let msg = dns("attacker.com\0.example.com").unwrap_err().to_string();
        assert_eq!(msg, r#"invalid DNS name "attacker.com\0.example.com": contains a control character"#);
        let msg = dns("a\"b\\").unwrap_err().to_string();
        assert_eq!(msg, r#"invalid DNS name "a\"b\\": contains the forbidden character '"'"#);
        let msg = check_common_name(&format!("{}\n", "a".repeat(5000))).unwrap_err().to_string();
        assert!(msg.len() < 400 && msg.contains('…') && !msg.contains('\n'));
    }

    #[test]
    fn dns_lengths() {
        let l63 = "a".repeat(63);
        assert_eq!(dns(&format!("{l63}.com")).unwrap(), format!("{l63}.com"));
        let n253 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(dns(&n253).unwrap().len(), 253);
        assert_eq!(dns(&format!("{n253}.")).unwrap().len(), 253);
        let n254 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(62));
        let w254 = format!("*.{l63}.{l63}.{l63}.{}", "b".repeat(60));
        refuses(wild, NameKind::Dns, &[&format!("{}.com", "a".repeat(64)), &n254, &w254, &"a".repeat(5000)]);
    }

    #[test]
    fn dns_dots_case_and_labels() {
        assert_eq!(dns("Example.COM.").unwrap(), "example.com");
        refuses(dns, NameKind::Dns, &["example.com..", "a..b", ".a.b", "", ".", "..", "-a.com", "a-.com", "a.-b"]);
        assert_eq!(dns("_acme-challenge.example.com").unwrap(), "_acme-challenge.example.com");
        assert_eq!(dns("my_host_.corp").unwrap(), "my_host_.corp");
        assert_eq!(dns("localhost").unwrap(), "localhost");
        assert_eq!(dns("INTRANET").unwrap(), "intranet");
        refuses(dns, NameKind::Dns, &["1.2.3.4", "1.2.3.4.", "127.1", "10", "host.123", "a.0x7f", "::1", "[::1]"]);
        assert_eq!(dns("1.2.3.4a").unwrap(), "1.2.3.4a");
        assert_eq!(dns("123.example.com").unwrap(), "123.example.com");
    }

    #[test]
    fn dns_idn() {
        assert_eq!(dns("bücher.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(dns("BÜCHER.example.").unwrap(), "xn--bcher-kva.example");
        assert_eq!(dns("XN--BCHER-KVA.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(dns("exa\u{ad}mple.com").unwrap(), "example.com");
        assert_eq!(wild("*.bücher.example").unwrap(), "*.xn--bcher-kva.example");
        let cases = ["xn--zz.example", "xn--a.example", "xn--.example", "xn--example-.com", "xn--bcher-kva-.example"];
        refuses(dns, NameKind::Dns, &cases);
    }

    #[test]
    fn wildcards() {
        assert_eq!(wild("*.Example.com.").unwrap(), "*.example.com");
        assert_eq!(wild("*.example.co.uk").unwrap(), "*.example.co.uk");
        assert_eq!(wild("*._internal.corp").unwrap(), "*._internal.corp");
        assert_eq!(dns("*.example.com").unwrap_err().reason(), "wildcards are not allowed here");
        let misplaced =
            ["a*.example.com", "*a.example.com", "*.*.example.com", "a.*.example.com", "*", "*.", "**.a.com"];
        refuses(wild, NameKind::Dns, &misplaced);
        refuses(wild, NameKind::Dns, &["*.com", "*.localhost", "*.co.uk", "*.github.io", "*.s3.amazonaws.com"]);
    }

    #[test]
    fn public_suffixes() {
        for ps in ["com", "localhost", "corp", "co.uk", "com.au", "co.jp", "github.io", "herokuapp.com", "CO.UK."] {
            assert!(is_public_suffix(ps), "{ps}");
        }
        for not in ["example.com", "example.co.uk", "foo.internal", "user.github.io", ""] {
            assert!(!is_public_suffix(not), "{not}");
        }
    }

    #[test]
    fn ips() {
        assert_eq!(parse_ip("192.0.2.1").unwrap(), IpAddr::from([192, 0, 2, 1]));
        assert_eq!(parse_ip("2001:db8::1").unwrap(), "2001:0db8::1".parse::<IpAddr>().unwrap());
        assert!(parse_ip("::ffff:1.2.3.4").unwrap().is_ipv6());
        refuses(parse_ip, NameKind::Ip, &["", "1.2.3", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "[::1]", "fe80::1%eth0"]);
        refuses(parse_ip, NameKind::Ip, &["example.com", "1.2.3.4\0", "::1\n"]);
    }

    #[test]
    fn emails() {
        assert_eq!(check_email("John.Doe+tag@Bücher.Example").unwrap(), "John.Doe+tag@xn--bcher-kva.example");
        assert_eq!(check_email(&format!("{}@example.com", "a".repeat(64))).unwrap().len(), 76);
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("{}@{}.{}.{}.com", "a".repeat(64), "b".repeat(63), "c".repeat(63), "d".repeat(59));
        refuses(check_email, NameKind::Email, &[&long_local, &long, "", "nobody", "@example.com", "a@", "a@b@c.com"]);
        refuses(check_email, NameKind::Email, &["a b@example.com", "a@exa mple.com", "a\0@example.com", "a@1.2.3.4"]);
        refuses(check_email, NameKind::Email, &["a@example.com\r\nBcc: x@y.z", "a@*.example.com", "a@[1.2.3.4]"]);
        refuses(check_email, NameKind::Email, &[".a@example.com", "a..b@example.com", "\"a\"@e.com", "jürgen@e.com"]);
        assert_eq!(check_email("a@a..b").unwrap_err().reason(), "domain part has an empty label");
    }

    #[test]
    fn upns() {
        assert!(check_upn("jdoe@corp.example.com").is_ok());
        assert!(check_upn("j.doe$@CORP.LOCAL").is_ok());
        let cases =
            ["jdoe", "@corp.example.com", "jdoe@", "j doe@corp", "jdoe\n@corp", "jdoe@corp\0", "a@b@c", "a@c d"];
        refuses(check_upn, NameKind::Upn, &cases);
    }

    #[test]
    fn uris() {
        for ok in [
            "https://example.com/a?b=c#d",
            "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
            "spiffe://td/x",
            "a+b.c-d:x",
        ] {
            assert!(check_uri(ok).is_ok(), "{ok}");
        }
        assert!(check_uri(&format!("https://e.com/{}", "a".repeat(2048 - 14))).is_ok());
        let too_long = format!("https://e.com/{}", "a".repeat(2048 - 13));
        refuses(check_uri, NameKind::Uri, &[&too_long, "", "example.com", ":foo", "1http://x", "ht tp://x", "http:"]);
        refuses(
            check_uri,
            NameKind::Uri,
            &["https://e.com/a b", "https://e.com/\0", "https://e.com/\r\n", "http://ü.de/"],
        );
        refuses(check_uri, NameKind::Uri, &["https://e.com/<script>", "https://e.com/\"", "https://e.com/\u{2028}"]);
    }

    #[test]
    fn common_names_and_folders() {
        assert!(check_common_name("Renewgate Test CA 1").is_ok());
        assert!(check_common_name(&"ü".repeat(64)).is_ok());
        refuses(check_common_name, NameKind::CommonName, &[&"a".repeat(65), "", "a\nb", "a\0", "tab\there", "\u{7f}"]);
        refuses(check_common_name, NameKind::CommonName, &["a\u{2028}b", "a\u{202e}b", "a\u{9b}b"]);
        assert!(check_folder_dn(r"\VED\Policy\Certificates\Web Servers").is_ok());
        refuses(check_folder_dn, NameKind::FolderDn, &["\\VED\\Policy\n\\Evil", "\\VED\\Policy\r", "\\VED\0"]);
    }
}
