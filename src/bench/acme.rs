//! A small ACME client (RFC 8555) for the load generator: ES256 JWS, external account binding,
//! new order → (authorizations) → finalize → certificate download. The same code runs against
//! the gateway and against Pebble. Also starts Pebble.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde_json::{Value, json};

/// An ES256 account key and its JWK.
#[derive(Clone)]
pub struct AccountKey {
    pub key: PKey<Private>,
    pub jwk: Value,
}

impl AccountKey {
    pub fn generate() -> anyhow::Result<AccountKey> {
        let key = super::raw::ec_key()?;
        let ec = key.ec_key()?;
        let mut ctx = openssl::bn::BigNumContext::new()?;
        let mut x = openssl::bn::BigNum::new()?;
        let mut y = openssl::bn::BigNum::new()?;
        ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
        let jwk = json!({"crv": "P-256", "kty": "EC",
                         "x": B64U.encode(x.to_vec_padded(32)?), "y": B64U.encode(y.to_vec_padded(32)?)});
        Ok(AccountKey { key, jwk })
    }

    fn sign(&self, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        let digest = openssl::hash::hash(MessageDigest::sha256(), data)?;
        let sig = EcdsaSig::sign(&digest, self.key.ec_key()?.as_ref())?;
        let mut out = sig.r().to_vec_padded(32)?;
        out.extend(sig.s().to_vec_padded(32)?);
        Ok(out)
    }
}

pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One client connection (its own keep-alive agent and nonce) acting for one account.
pub struct AcmeClient {
    agent: ureq::Agent,
    pub dir: Value,
    key: AccountKey,
    pub kid: Option<String>,
    nonce: Option<String>,
}

impl AcmeClient {
    pub fn new(agent: ureq::Agent, directory_url: &str, key: AccountKey) -> anyhow::Result<AcmeClient> {
        let mut r = agent.get(directory_url).call()?;
        anyhow::ensure!(r.status().as_u16() == 200, "ACME directory {directory_url}: {}", r.status());
        let dir: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
        Ok(AcmeClient { agent, dir, key, kid: None, nonce: None })
    }

    fn dir_url(&self, name: &str) -> anyhow::Result<String> {
        self.dir.get(name).and_then(Value::as_str).map(str::to_string).ok_or_else(|| anyhow::anyhow!("no {name} URL"))
    }

    fn fresh_nonce(&mut self) -> anyhow::Result<String> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let r = self.agent.head(self.dir_url("newNonce")?).call()?;
        r.headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("newNonce gave no Replay-Nonce"))
    }

    fn jws(&mut self, url: &str, payload: Option<&Value>, jwk: bool) -> anyhow::Result<Value> {
        let nonce = self.fresh_nonce()?;
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        if jwk || self.kid.is_none() {
            protected["jwk"] = self.key.jwk.clone();
        } else {
            protected["kid"] = json!(self.kid);
        }
        let p = B64U.encode(protected.to_string());
        let pl = payload.map(|v| B64U.encode(v.to_string())).unwrap_or_default();
        let sig = self.key.sign(format!("{p}.{pl}").as_bytes())?;
        Ok(json!({"protected": p, "payload": pl, "signature": B64U.encode(sig)}))
    }

    /// A signed POST (`payload` None: POST-as-GET); retried on `badNonce`.
    pub fn post(&mut self, url: &str, payload: Option<&Value>) -> anyhow::Result<Reply> {
        self.post_with(url, payload, false)
    }

    fn post_with(&mut self, url: &str, payload: Option<&Value>, jwk: bool) -> anyhow::Result<Reply> {
        for _ in 0..4 {
            let body = self.jws(url, payload, jwk)?;
            let mut r = self
                .agent
                .post(url)
                .header("Content-Type", "application/jose+json")
                .send(body.to_string().into_bytes())?;
            let h = r.headers();
            self.nonce = h.get("replay-nonce").and_then(|v| v.to_str().ok()).map(str::to_string);
            let location = h.get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_vec()?;
            let reply = Reply { status, location, body };
            if status == 400
                && reply.json().get("type").and_then(Value::as_str) == Some("urn:ietf:params:acme:error:badNonce")
            {
                continue;
            }
            return Ok(reply);
        }
        anyhow::bail!("{url}: badNonce four times")
    }

    /// newAccount, with an external account binding when `eab` = (kid, base64url HMAC key).
    pub fn register(&mut self, eab: Option<(&str, &str)>) -> anyhow::Result<()> {
        let url = self.dir_url("newAccount")?;
        let mut payload = json!({"termsOfServiceAgreed": true, "contact": ["mailto:bench@bench.example"]});
        if let Some((kid, hmac_key)) = eab {
            let p = B64U.encode(json!({"alg": "HS256", "kid": kid, "url": url}).to_string());
            let pl = B64U.encode(self.key.jwk.to_string());
            let raw = B64U.decode(hmac_key.trim_end_matches('='))?;
            let pk = PKey::hmac(&raw)?;
            let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &pk)?;
            signer.update(format!("{p}.{pl}").as_bytes())?;
            let mac = signer.sign_to_vec()?;
            payload["externalAccountBinding"] = json!({"protected": p, "payload": pl, "signature": B64U.encode(mac)});
        }
        let r = self.post_with(&url, Some(&payload), true)?;
        anyhow::ensure!(
            r.status == 200 || r.status == 201,
            "newAccount: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        self.kid = Some(r.location.ok_or_else(|| anyhow::anyhow!("newAccount without Location"))?);
        Ok(())
    }

    /// One issuance for `name`: new order, authorizations (answered by http-01 when pending),
    /// finalize with `csr_der`, wait for `valid`, download. Returns the chain as downloaded
    /// (PEM, leaf first), its leaf checked readable (see [`Issued`]).
    pub fn issue(&mut self, name: &str, csr_der: &[u8]) -> anyhow::Result<Issued> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = self.dir_url("newOrder")?;
        let r = self.post(&url, Some(&json!({"identifiers": [{"type": "dns", "value": name}]})))?;
        anyhow::ensure!(r.status == 201, "newOrder: {} {}", r.status, excerpt(&r.body));
        let order_url = r.location.clone().ok_or_else(|| anyhow::anyhow!("newOrder without Location"))?;
        let mut order = r.json();
        let authzs: Vec<String> = order["authorizations"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for az in authzs {
            let mut a = self.post(&az, None)?.json();
            if a["status"] == "pending" {
                let ch = a["challenges"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "http-01"))
                    .and_then(|c| c["url"].as_str())
                    .map(str::to_string)
                    .ok_or_else(|| anyhow::anyhow!("no http-01 challenge: {a}"))?;
                let r = self.post(&ch, Some(&json!({})))?;
                anyhow::ensure!(r.status == 200, "challenge: {} {}", r.status, excerpt(&r.body));
                while a["status"] == "pending" && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                    a = self.post(&az, None)?.json();
                }
            }
            anyhow::ensure!(a["status"] == "valid", "authorization not valid: {a}");
        }
        if order["status"] != "ready" {
            order = self.post(&order_url, None)?.json();
        }
        anyhow::ensure!(order["status"] == "ready", "order not ready: {order}");
        let fin = order["finalize"].as_str().ok_or_else(|| anyhow::anyhow!("no finalize URL"))?.to_string();
        let r = self.post(&fin, Some(&json!({"csr": B64U.encode(csr_der)})))?;
        anyhow::ensure!(r.status == 200, "finalize: {} {}", r.status, excerpt(&r.body));
        order = r.json();
        while order["status"] == "processing" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            order = self.post(&order_url, None)?.json();
        }
        anyhow::ensure!(order["status"] == "valid", "order not valid: {order}");
        let cert_url = order["certificate"].as_str().ok_or_else(|| anyhow::anyhow!("no certificate URL"))?.to_string();
        let r = self.post(&cert_url, None)?;
        anyhow::ensure!(r.status == 200, "certificate: {} {}", r.status, excerpt(&r.body));
        let leaf = super::client::first_der(&r.body).ok_or_else(|| anyhow::anyhow!("no certificate"))?;
        let serial = super::client::serial_of_der(&leaf).ok_or_else(|| anyhow::anyhow!("an unreadable certificate"))?;
        Ok(Issued { pem: r.body, serial })
    }
}

/// A downloaded chain: every one has a readable leaf whose serial the load generator compares
/// with the previous order's; it decodes the whole chain with OpenSSL (and verifies it) for a
/// sample only.
pub struct Issued {
    pub pem: Vec<u8>,
    pub serial: String,
}

impl Issued {
    /// The chain decoded, leaf first.
    pub fn chain(&self) -> anyhow::Result<Vec<X509>> {
        let chain = X509::stack_from_pem(&self.pem)?;
        anyhow::ensure!(!chain.is_empty(), "empty certificate chain");
        Ok(chain)
    }
}

fn excerpt(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
}

/// A running Pebble.
pub struct Pebble {
    pub child: Child,
    pub directory: String,
    pub management: String,
    /// The PEM that Pebble's HTTPS certificate chains to.
    pub tls_ca_pem: Vec<u8>,
    pub eab_kid: String,
    pub eab_hmac: String,
    pub log: PathBuf,
}

/// Starts `pebble` with validation sleeps off, every validation succeeding, no random nonce
/// rejection and EAB required (like the gateway), on random loopback ports.
pub fn start_pebble(bin: &Path, root: &Path) -> anyhow::Result<Pebble> {
    anyhow::ensure!(bin.exists(), "pebble not found at {} (Debian: apt-get install -y pebble)", bin.display());
    std::fs::create_dir_all(root)?;
    // Its HTTPS certificate: a small CA and a leaf for localhost, made here.
    let ca_key = super::raw::ec_key()?;
    let ca = super::raw::self_signed_ca(&ca_key)?;
    let key = super::raw::ec_key()?;
    let mut name = openssl::x509::X509Name::builder()?;
    name.append_entry_by_nid(openssl::nid::Nid::COMMONNAME, "localhost")?;
    let name = name.build();
    let pubkey = PKey::public_key_from_der(&key.public_key_to_der()?)?;
    let leaf = X509::from_der(&super::raw::build_leaf(&ca, &ca_key, &name, &pubkey, "localhost", Some("127.0.0.1"))?)?;
    let cert_path = root.join("pebble-cert.pem");
    let key_path = root.join("pebble-key.pem");
    std::fs::write(&cert_path, leaf.to_pem()?)?;
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8()?)?;
    let port = super::gateway::free_port()?;
    let mport = super::gateway::free_port()?;
    let eab_kid = "bench-kid".to_string();
    let mut raw = [0u8; 32];
    openssl::rand::rand_bytes(&mut raw)?;
    let eab_hmac = B64U.encode(raw);
    let cfg = json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": format!("127.0.0.1:{mport}"),
        "certificate": cert_path.canonicalize()?.display().to_string(),
        "privateKey": key_path.canonicalize()?.display().to_string(),
        "httpPort": super::gateway::free_port()?,
        "tlsPort": super::gateway::free_port()?,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": true,
        "externalAccountMACKeys": {eab_kid.clone(): eab_hmac.clone()},
    }});
    let cfg_path = root.join("pebble-config.json");
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
    let log = root.join("pebble.log");
    let child = Command::new(bin)
        .arg("-config")
        .arg(cfg_path.canonicalize()?)
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_VA_ALWAYS_VALID", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "100")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(root.join("pebble.err"))?)
        .spawn()?;
    let mut p = Pebble {
        child,
        directory: format!("https://127.0.0.1:{port}/dir"),
        management: format!("https://127.0.0.1:{mport}"),
        tls_ca_pem: ca.to_pem()?,
        eab_kid,
        eab_hmac,
        log,
    };
    let agent = super::client::agent_for_pem(&p.tls_ca_pem)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = p.child.try_wait()? {
            anyhow::bail!("pebble exited with {st}: {}", super::gateway::tail(&root.join("pebble.err")));
        }
        if let Ok(r) = agent.get(&p.directory).call()
            && r.status().as_u16() == 200
        {
            return Ok(p);
        }
        if Instant::now() > deadline {
            super::gateway::stop(&mut p.child);
            anyhow::bail!("pebble not ready after 30 s: {}", super::gateway::tail(&p.log));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Pebble {
    /// Pebble's issuing root (its management interface), for the sampled chain checks.
    pub fn root_pem(&self) -> anyhow::Result<Vec<u8>> {
        let agent = super::client::agent_for_pem(&self.tls_ca_pem)?;
        let mut r = agent.get(format!("{}/roots/0", self.management)).call()?;
        anyhow::ensure!(r.status().as_u16() == 200, "pebble /roots/0: {}", r.status());
        Ok(r.body_mut().read_to_vec()?)
    }
}
