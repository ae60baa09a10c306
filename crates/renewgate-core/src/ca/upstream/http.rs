//! instant-acme's HTTP client over ureq and OpenSSL: an upstream CA's directory may use a
//! certificate only the issuer's `--ca-bundle` trusts (an on-premises CA, Pebble).
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

pub struct UreqClient {
    agent: ureq::Agent,
}

/// How long one HTTP exchange with an upstream CA may take.
const TIMEOUT: Duration = Duration::from_secs(30);

impl UreqClient {
    /// Trusts `ca_bundle_pem` when given, else the system's roots.
    pub fn new(ca_bundle_pem: Option<&str>) -> Result<UreqClient, String> {
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls);
        if let Some(pem) = ca_bundle_pem {
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(pem.as_bytes())
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err("the CA bundle holds no PEM certificate".into());
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .max_redirects(0)
            .build()
            .new_agent();
        Ok(UreqClient { agent })
    }
}

impl HttpClient for UreqClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let agent = self.agent.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(never) => match never {},
            };
            // The exchange blocks: each upstream job runs on its own worker thread and
            // single-threaded runtime, so nothing else waits on it.
            let req = http::Request::from_parts(parts, body.to_vec());
            let mut rsp = agent.run(req).map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let bytes = rsp.body_mut().read_to_vec().map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let (parts, _) = rsp.into_parts();
            Ok(BytesResponse::from(http::Response::from_parts(parts, Full::new(Bytes::from(bytes)))))
        })
    }
}
