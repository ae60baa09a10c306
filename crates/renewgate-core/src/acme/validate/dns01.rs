//! dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.<name>` (a wildcard's base name)
//! holding base64url(SHA-256(key authorization)). Only the configured (or system) resolver is
//! asked, so there is no target to filter: no connection goes where the client points.
use hickory_resolver::proto::rr::RData;

use super::targets;
use super::{Failure, FailureKind, dns01_value};
use crate::settings::AcmeValidationSettings;

pub(super) async fn validate(
    settings: &AcmeValidationSettings,
    name: &str,
    key_authorization: &str,
) -> Result<(), Failure> {
    let resolver = targets::resolver(settings)?;
    let fqdn = format!("_acme-challenge.{name}.");
    let lookup = resolver.txt_lookup(fqdn.as_str()).await.map_err(|e| {
        let detail = if e.is_nx_domain() {
            format!("{fqdn} does not exist (NXDOMAIN)")
        } else if e.is_no_records_found() {
            format!("there is no TXT record at {fqdn}")
        } else {
            format!("asking for the TXT records at {fqdn} failed: {e}")
        };
        Failure::new(FailureKind::Dns, detail)
    })?;
    let expected = dns01_value(key_authorization);
    let mut seen = 0;
    for record in lookup.answers() {
        if let RData::TXT(txt) = &record.data {
            seen += 1;
            // A TXT value may come in several character-strings; they form one value.
            let value: Vec<u8> = txt.txt_data.iter().flat_map(|d| d.iter().copied()).collect();
            if value == expected.as_bytes() {
                return Ok(());
            }
        }
    }
    if seen == 0 {
        return Err(Failure::new(FailureKind::Dns, format!("there is no TXT record at {fqdn}")));
    }
    Err(Failure::new(
        FailureKind::IncorrectResponse,
        format!("none of the {seen} TXT records at {fqdn} is the expected digest of the key authorization"),
    ))
}

/// A one-zone DNS server on 127.0.0.1 (UDP) for tests: it answers every question with the
/// records of its type from a [`fake::Zone`], whatever the name.
#[cfg(test)]
pub(super) mod fake {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    #[derive(Default, Clone)]
    pub(in crate::acme::validate) struct Zone {
        pub a: Vec<Ipv4Addr>,
        pub aaaa: Vec<Ipv6Addr>,
        pub txt: Vec<Vec<&'static str>>,
        pub nxdomain: bool,
    }

    pub(in crate::acme::validate) async fn serve(zone: Zone) -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("binding 127.0.0.1 must work");
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                if let Some(answer) = answer(&zone, &buf[..n]) {
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
        addr
    }

    fn answer(zone: &Zone, query: &[u8]) -> Option<Vec<u8>> {
        // Header (12 bytes), then one question: labels up to the root, type, class.
        let mut end = 12;
        while *query.get(end)? != 0 {
            end += 1 + *query.get(end)? as usize;
        }
        let question = query.get(12..end + 5)?;
        let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
        let rdatas: Vec<Vec<u8>> = match qtype {
            1 => zone.a.iter().map(|a| a.octets().to_vec()).collect(),
            28 => zone.aaaa.iter().map(|a| a.octets().to_vec()).collect(),
            16 => zone
                .txt
                .iter()
                .map(|strings| strings.iter().flat_map(|s| [&[s.len() as u8][..], s.as_bytes()].concat()).collect())
                .collect(),
            _ => vec![],
        };
        let rdatas = if zone.nxdomain { vec![] } else { rdatas };
        let mut out = vec![query[0], query[1], 0x81, if zone.nxdomain { 0x83 } else { 0x80 }, 0, 1];
        out.extend_from_slice(&(rdatas.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(question);
        for rdata in rdatas {
            out.extend_from_slice(&[0xc0, 0x0c]);
            out.extend_from_slice(&qtype.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(&rdata);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Zone, serve};
    use super::*;
    use crate::acme::validate::{ChallengeKind, Target, validate as validate_challenge};

    const KA: &str = "tok-en.thumbprint";

    async fn run(zone: Zone) -> Result<(), Failure> {
        let server = serve(zone).await;
        let settings =
            AcmeValidationSettings { dns_server: Some(server.to_string()), timeout_s: 5, ..Default::default() };
        let t = Target { kind: ChallengeKind::Dns01, identifier: "site.test", token: "tok-en", key_authorization: KA };
        validate_challenge(&settings, &t).await
    }

    #[tokio::test]
    async fn the_expected_txt_record_validates() {
        let value: &'static str = Box::leak(dns01_value(KA).into_boxed_str());
        assert_eq!(run(Zone { txt: vec![vec!["unrelated"], vec![value]], ..Default::default() }).await, Ok(()));
        // Split into two character-strings, it is still one value.
        let (a, b) = value.split_at(10);
        assert_eq!(run(Zone { txt: vec![vec![a, b]], ..Default::default() }).await, Ok(()));
    }

    #[tokio::test]
    async fn other_txt_records_are_an_incorrect_response() {
        let f = run(Zone { txt: vec![vec!["one"], vec!["two"]], ..Default::default() }).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::IncorrectResponse);
        assert!(f.detail.contains("none of the 2 TXT records at _acme-challenge.site.test."), "{}", f.detail);
    }

    #[tokio::test]
    async fn no_record_is_a_dns_failure() {
        let f = run(Zone::default()).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Dns);
        assert!(f.detail.contains("no TXT record"), "{}", f.detail);
        let f = run(Zone { nxdomain: true, ..Default::default() }).await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Dns);
        assert!(f.detail.contains("does not exist"), "{}", f.detail);
    }
}
