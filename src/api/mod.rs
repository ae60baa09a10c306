//! HTTP dialects: thin adapters that parse, authenticate, call the engine and map errors to
//! each dialect's own shape.
pub mod acme;
pub mod admin;
pub mod body;
pub mod console;
pub mod http01;
pub mod keyfactor;
pub mod observe;
pub mod pki;
pub mod venafi;

/// Every route, registered once: the same registration serves them and, for the handlers that
/// carry `#[utoipa::path]` over their actix route macro, generates the OpenAPI paths and schemas
/// (`openapi::document`). Order matters where a template could shadow a fixed path
/// (`/vedsdk/certificates/{guid}` comes after `/vedsdk/certificates/renew`).
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    venafi::configure(cfg);
    keyfactor::configure(cfg);
    admin::configure(cfg);
    acme::configure(cfg);
    cfg.map(|c| {
        pki::configure(c);
        console::configure(c);
        c
    });
}

/// The client's address for login throttling: the TCP peer, or behind `http.trusted_proxies` the
/// last `X-Forwarded-For` hop that is not a trusted proxy.
pub fn client_ip(req: &actix_web::HttpRequest, settings: &crate::settings::Settings) -> std::net::IpAddr {
    let peer = req.peer_addr().map(|a| a.ip()).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let trusted = settings.trusted_proxies().unwrap_or_default();
    if trusted.is_empty() {
        return peer;
    }
    let xff: Vec<&str> = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    let joined = xff.join(",");
    crate::auth::throttle::client_source(peer, (!joined.is_empty()).then_some(joined.as_str()), &trusted)
}
