//! The dns-01 solver of upstream issuers: `_acme-challenge` TXT records published by RFC 2136
//! dynamic update signed with TSIG (BIND, Windows DNS, PowerDNS, Infoblox…), checked on the zone's
//! authoritative servers before the challenge is answered, and removed again — only the values
//! the job added — before the job ends.
//!
//! Messages are built, signed and parsed by hickory-proto (`update_message`, `TSigner`); this
//! module only carries their bytes over UDP.
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType, TSigner};
use serde::{Deserialize, Serialize};

/// Where the authoritative answer is checked before the challenge is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropagationCheck {
    /// Every server the zone's NS records name (asked on the port of `--dns-server`).
    #[serde(rename = "ns")]
    Ns,
    /// `--dns-server` alone.
    #[serde(rename = "server")]
    Server,
}

impl PropagationCheck {
    pub fn parse(s: &str) -> Option<PropagationCheck> {
        match s.to_ascii_lowercase().as_str() {
            "ns" => Some(PropagationCheck::Ns),
            "server" => Some(PropagationCheck::Server),
            _ => None,
        }
    }
}

/// The dns-01 settings of an issuer (the TSIG secret is sealed beside them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dns01Config {
    pub server: String,
    pub tsig_name: String,
    pub tsig_algorithm: String,
    #[serde(default)]
    pub zone: Option<String>,
    pub propagation: PropagationCheck,
}

/// A TSIG key as `tsig-keygen` writes it: `key "name" { algorithm hmac-sha256; secret "…"; };`.
#[derive(Debug, Clone, PartialEq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: String,
    pub secret: Vec<u8>,
}

impl TsigKey {
    pub fn parse(text: &str) -> Result<TsigKey, String> {
        let bad = || {
            "the TSIG key file is not in the format tsig-keygen writes (key \"name\" { algorithm …; secret \"…\"; };)"
                .to_string()
        };
        let rest = text.trim().strip_prefix("key").ok_or_else(bad)?.trim_start();
        let (name, rest) = quoted(rest).ok_or_else(bad)?;
        let body = rest.trim_start().strip_prefix('{').ok_or_else(bad)?;
        let body = body.split('}').next().ok_or_else(bad)?;
        let (mut algorithm, mut secret) = (None, None);
        for stmt in body.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = stmt.split_once(char::is_whitespace).ok_or_else(bad)?;
            let v = v.trim();
            match k {
                "algorithm" => algorithm = Some(v.trim_matches('"').to_ascii_lowercase()),
                "secret" => secret = Some(quoted(v).ok_or_else(bad)?.0),
                _ => return Err(bad()),
            }
        }
        let algorithm = algorithm.ok_or_else(bad)?;
        tsig_algorithm(&algorithm)?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.ok_or_else(bad)?)
            .map_err(|_| "the TSIG secret is not base64".to_string())?;
        if name.is_empty() || secret.is_empty() {
            return Err(bad());
        }
        Ok(TsigKey { name, algorithm, secret })
    }
}

fn quoted(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('"')?;
    let end = s.find('"')?;
    Some((s[..end].to_string(), &s[end + 1..]))
}

fn tsig_algorithm(name: &str) -> Result<TsigAlgorithm, String> {
    match name {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        other => Err(format!("TSIG algorithm {other} is not supported (hmac-sha256, hmac-sha384, hmac-sha512)")),
    }
}

/// Why a dns-01 step failed: the cause names what an operator fixes.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns01Error {
    pub cause: String,
    pub detail: String,
    /// Worth another attempt (a timeout, an unreachable server).
    pub transient: bool,
}

impl Dns01Error {
    fn new(cause: &str, detail: impl Into<String>) -> Self {
        Dns01Error { cause: cause.into(), detail: detail.into(), transient: false }
    }
    fn transient(cause: &str, detail: impl Into<String>) -> Self {
        Dns01Error { cause: cause.into(), detail: detail.into(), transient: true }
    }
}

/// One TXT value the job published: kept with the job until it is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub name: String,
    pub zone: String,
    pub value: String,
}

/// How long one DNS exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
const TTL: u32 = 60;

pub struct Dns01Solver {
    server: SocketAddr,
    signer: TSigner,
    zone: Option<Name>,
    propagation: PropagationCheck,
}

impl Dns01Solver {
    pub fn new(config: &Dns01Config, secret: Vec<u8>) -> Result<Dns01Solver, Dns01Error> {
        let server = config
            .server
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Dns01Error::new("server not found", format!("{} does not resolve", config.server)))?;
        let algorithm = tsig_algorithm(&config.tsig_algorithm).map_err(|e| Dns01Error::new("TSIG key", e))?;
        let name = Name::from_ascii(&config.tsig_name).map_err(|e| Dns01Error::new("TSIG key", e.to_string()))?;
        let signer =
            TSigner::new(secret, algorithm, name, 300).map_err(|e| Dns01Error::new("TSIG key", e.to_string()))?;
        let zone = match &config.zone {
            Some(z) => Some(fqdn(z).map_err(|e| Dns01Error::new("zone not found", e))?),
            None => None,
        };
        Ok(Dns01Solver { server, signer, zone, propagation: config.propagation })
    }

    /// `_acme-challenge.<name>` (a wildcard's record is its base name's).
    pub fn record_name(identifier: &str) -> String {
        format!("_acme-challenge.{}", identifier.trim_start_matches("*.").trim_end_matches('.'))
    }

    /// The zone the record goes into: `--zone`, else the zone whose SOA answers for the name.
    pub fn zone_of(&self, record: &str) -> Result<String, Dns01Error> {
        let name = fqdn(record).map_err(|e| Dns01Error::new("zone not found", e))?;
        if let Some(z) = &self.zone {
            if !z.zone_of(&name) {
                return Err(Dns01Error::new("zone not found", format!("{record} is not in zone {z}")));
            }
            return Ok(z.to_ascii());
        }
        let mut candidate = name.base_name();
        while candidate.num_labels() > 0 {
            let rsp = self.query(self.server, &candidate, RecordType::SOA)?;
            if rsp.metadata.response_code == ResponseCode::NoError
                && rsp.answers.iter().any(|r| r.record_type() == RecordType::SOA && r.name == candidate)
            {
                return Ok(candidate.to_ascii());
            }
            candidate = candidate.base_name();
        }
        Err(Dns01Error::new("zone not found", format!("{} serves no zone holding {record}", self.server)))
    }

    /// Adds one TXT value (other values of the name are left alone).
    pub fn add(&self, p: &Published) -> Result<(), Dns01Error> {
        let (rrset, zone) = self.rrset(p)?;
        self.update(update_message::append(rrset, zone, false, false))
    }

    /// Removes exactly the value the job added.
    pub fn remove(&self, p: &Published) -> Result<(), Dns01Error> {
        let (rrset, zone) = self.rrset(p)?;
        self.update(update_message::delete_by_rdata(rrset, zone, false))
    }

    fn rrset(&self, p: &Published) -> Result<(RecordSet, Name), Dns01Error> {
        let name = fqdn(&p.name).map_err(|e| Dns01Error::new("zone not found", e))?;
        let zone = fqdn(&p.zone).map_err(|e| Dns01Error::new("zone not found", e))?;
        if !zone.zone_of(&name) {
            return Err(Dns01Error::new("zone not found", format!("{} is not in zone {}", p.name, p.zone)));
        }
        let mut record = Record::from_rdata(name, TTL, RData::TXT(TXT::new(vec![p.value.clone()])));
        record.dns_class = DNSClass::IN;
        Ok((RecordSet::from(record), zone))
    }

    fn update(&self, mut msg: Message) -> Result<(), Dns01Error> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        msg.finalize(&self.signer, now).map_err(|e| Dns01Error::new("TSIG key", e.to_string()))?;
        let rsp = self.exchange(self.server, &msg)?;
        let tsig_error = rsp.signature().and_then(|s| s.data.error);
        match (rsp.metadata.response_code, tsig_error) {
            (_, Some(TsigError::BadKey)) => {
                Err(Dns01Error::new("TSIG refused (BADKEY)", format!("{} does not know the key", self.server)))
            }
            (_, Some(TsigError::BadSig)) => Err(Dns01Error::new(
                "TSIG refused (BADSIG)",
                format!("{} rejected the key's signature (a wrong secret)", self.server),
            )),
            (_, Some(TsigError::BadTime)) => {
                Err(Dns01Error::new("TSIG refused (BADTIME)", "the clocks of the gateway and the DNS server differ"))
            }
            (ResponseCode::NoError, _) => Ok(()),
            (code @ (ResponseCode::Refused | ResponseCode::NotAuth), _) => Err(Dns01Error::new(
                &format!("update refused ({})", rcode_name(code)),
                format!("{} refused the update of zone {}", self.server, zone_text(&msg)),
            )),
            (ResponseCode::NotZone, _) => Err(Dns01Error::new(
                "zone not found",
                format!("{} is not authoritative for {}", self.server, zone_text(&msg)),
            )),
            (code, _) => Err(Dns01Error::new(
                &format!("update refused ({})", code.to_str().to_ascii_uppercase()),
                format!("{} answered {code}", self.server),
            )),
        }
    }

    /// Waits until the zone's authoritative servers answer the value (or `timeout` passes).
    pub fn wait_propagated(&self, p: &Published, timeout: Duration) -> Result<(), Dns01Error> {
        let name = fqdn(&p.name).map_err(|e| Dns01Error::new("zone not found", e))?;
        let servers = match self.propagation {
            PropagationCheck::Server => vec![self.server],
            PropagationCheck::Ns => self.authoritative_servers(&p.zone)?,
        };
        let deadline = Instant::now() + timeout;
        let mut pending = servers;
        loop {
            pending.retain(|s| !self.has_value(*s, &name, &p.value));
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let list: Vec<String> = pending.iter().map(|s| s.to_string()).collect();
                return Err(Dns01Error::transient(
                    "propagation timeout",
                    format!("{} not answered by {} within {}s", p.name, list.join(", "), timeout.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn has_value(&self, server: SocketAddr, name: &Name, value: &str) -> bool {
        self.query(server, name, RecordType::TXT).is_ok_and(|rsp| {
            rsp.answers.iter().any(|r| match &r.data {
                RData::TXT(t) => t.txt_data.iter().any(|d| d.as_ref() == value.as_bytes()),
                _ => false,
            })
        })
    }

    /// The addresses of the servers the zone's NS records name, on `--dns-server`'s port.
    fn authoritative_servers(&self, zone: &str) -> Result<Vec<SocketAddr>, Dns01Error> {
        let zone = fqdn(zone).map_err(|e| Dns01Error::new("zone not found", e))?;
        let rsp = self.query(self.server, &zone, RecordType::NS)?;
        let mut out = vec![];
        for ns in rsp.answers.iter().filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.clone()),
            _ => None,
        }) {
            let glue = self.query(self.server, &ns, RecordType::A).ok().map(|r| r.answers).unwrap_or_default();
            let mut ips: Vec<std::net::IpAddr> = glue
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect();
            if ips.is_empty() {
                ips = (ns.to_ascii().trim_end_matches('.'), 53)
                    .to_socket_addrs()
                    .map(|a| a.map(|s| s.ip()).collect())
                    .unwrap_or_default();
            }
            out.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, self.server.port())));
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            out.push(self.server);
        }
        Ok(out)
    }

    fn query(&self, server: SocketAddr, name: &Name, rtype: RecordType) -> Result<Message, Dns01Error> {
        let mut msg = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = false;
        msg.add_query(Query::query(name.clone(), rtype));
        self.exchange(server, &msg)
    }

    fn exchange(&self, server: SocketAddr, msg: &Message) -> Result<Message, Dns01Error> {
        let unreachable = |e: String| Dns01Error::transient("server unreachable", format!("{server}: {e}"));
        let bytes = msg.to_vec().map_err(|e| Dns01Error::new("message", e.to_string()))?;
        let bind = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let sock = UdpSocket::bind(bind).map_err(|e| unreachable(e.to_string()))?;
        sock.set_read_timeout(Some(EXCHANGE_TIMEOUT)).map_err(|e| unreachable(e.to_string()))?;
        sock.connect(server).map_err(|e| unreachable(e.to_string()))?;
        sock.send(&bytes).map_err(|e| unreachable(e.to_string()))?;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = sock.recv(&mut buf).map_err(|e| unreachable(e.to_string()))?;
            let Ok(rsp) = Message::from_vec(&buf[..n]) else { continue };
            if rsp.metadata.id == msg.metadata.id {
                return Ok(rsp);
            }
        }
    }
}

/// The RFC 1035/2136 mnemonic of a response code (REFUSED, NOTAUTH, SERVFAIL…).
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        other => format!("RCODE {}", u16::from(other)),
    }
}

fn zone_text(msg: &Message) -> String {
    msg.queries.first().map(|q| q.name().to_ascii()).unwrap_or_default()
}

fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(name.trim_end_matches('.')).map_err(|e| format!("{name}: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = openssl::rand::rand_bytes(&mut b);
    u16::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_key_files_tsig_keygen_writes() {
        let k = TsigKey::parse(
            "key \"rg-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"LsdQkshbk7eWyn7GXSN/aVSuzHJ3oVsOHwlzyZWSAgU=\";\n};\n",
        )
        .unwrap();
        assert_eq!(k.name, "rg-key");
        assert_eq!(k.algorithm, "hmac-sha256");
        assert_eq!(k.secret.len(), 32);
        assert!(TsigKey::parse("secret \"abc\";").is_err());
        assert!(TsigKey::parse("key \"k\" { algorithm hmac-md5; secret \"YWJj\"; };").is_err());
        assert!(TsigKey::parse("key \"k\" { algorithm hmac-sha256; };").is_err());
    }

    #[test]
    fn the_record_of_a_wildcard_is_its_base_names() {
        assert_eq!(Dns01Solver::record_name("*.wild.example.com"), "_acme-challenge.wild.example.com");
        assert_eq!(Dns01Solver::record_name("wild.example.com."), "_acme-challenge.wild.example.com");
    }
}
