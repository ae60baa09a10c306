//! ACME orders, authorizations, challenges, finalize, certificates and revocation: each handler
//! verifies the JWS, calls the ACME domain (`crate::acme`) with the signing account, and renders
//! its answer as RFC 8555 JSON.
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, post, web};

use super::problem::JwsProblems;
use super::requests;
use super::{Action, Problem, acme_response, base_url, blocking, jws, verify_request, with_account};
use crate::acme::orders::{self as domain, NewOrderRequest, OrderView, RevocationProof};
use crate::acme::wire::{
    AcmeAuthorization, AcmeChallenge, AcmeOrder, AcmeProblem, FlattenedJws, OrderList, PemCertificateChain,
};
use crate::acme::{OrderAction, OrderStatus};
use crate::app::AppState;

fn path_id(s: &str) -> Result<i64, Problem> {
    s.parse().map_err(|_| Problem::new(404, "malformed", "no such resource"))
}

fn link(base: &str) -> (&'static str, String) {
    ("Link", format!("<{base}/directory>;rel=\"index\""))
}

fn order_response(o: &OrderView, base: &str, mut r: actix_web::HttpResponseBuilder) -> HttpResponse {
    if o.status == OrderStatus::Processing {
        r.insert_header(("Retry-After", "2"));
    }
    r.insert_header(("Location", format!("{base}/order/{}", o.id)))
        .insert_header(link(base))
        .json(AcmeOrder::new(o, base))
}

#[utoipa::path(post, path = "/acme/acct/{id}/orders", tag = "ACME", operation_id = "acme_orders_list", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, description = "The account's orders", body = OrderList),
        JwsProblems))]
#[post("/acme/acct/{id}/orders")]
pub async fn orders_list(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let path = path.into_inner();
        let base = base_url(&req, &state);
        let ids = with_account(&req, &state, payload, move |_, c, _, account| {
            if account.id.to_string() != path {
                return Err(Problem::unauthorized("this orders list is not the signer's"));
            }
            Ok(crate::acme::accounts::order_ids(c, &account)?)
        })
        .await?;
        let urls: Vec<String> = ids.iter().map(|i| format!("{base}/order/{i}")).collect();
        Ok(HttpResponse::Ok().json(OrderList { orders: urls }))
    }
    .await;
    acme_response(&state, r).await
}

/// revokeCert (RFC 8555 §7.6): signed by the account that ordered the certificate (`kid`) or by
/// the certificate's own key (`jwk`).
#[utoipa::path(post, path = "/acme/revoke-cert", tag = "ACME", operation_id = "acme_revoke", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    responses((status = 200, description = "Revoked"),
        JwsProblems))]
#[post("/acme/revoke-cert")]
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let v = verify_request(&req, &state, payload, true).await?;
        let requests::Revoke { certificate_der: der, reason } = requests::Revoke::parse(&v.jws)?;
        let cert = openssl::x509::X509::from_der(&der)
            .map_err(|_| Problem::malformed("certificate is not a DER certificate"))?;
        if let Some(jwk) = v.jws.jwk() {
            let k = jws::key_from_jwk(jwk)?;
            let pk = cert.public_key().map_err(|e| Problem::server(e.to_string()))?;
            if !k.public_eq(&pk) {
                return Err(Problem::unauthorized("the JWS key is not the certificate's key"));
            }
        }
        let account = v.account;
        blocking(&state, move |e, c| {
            let proof = match &account {
                Some(a) => RevocationProof::Account(a),
                None => RevocationProof::CertificateKey,
            };
            Ok(domain::revoke(e, c, &der, reason, &proof)?)
        })
        .await?;
        Ok(HttpResponse::Ok().finish())
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/new-order", tag = "ACME", operation_id = "acme_new_order", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    description = "Creates an order. The same operation answers at `/acme/o/{action}/{orderId}/new-order`, \
        `/acme/o/enroll/new-order` and under `/acme/dry-run/`, as the directory lists them.",
    responses((status = 201, description = "Order created", body = AcmeOrder),
        JwsProblems,
        (status = 409, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 429, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
#[post("/acme/new-order")]
pub async fn new_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    create_order(req, state, payload).await
}

/// newOrder at every URL a directory may list: the action comes from the path
/// (`o/{action}/{orderId}/`, `o/enroll/`), and `/acme/dry-run/` makes it a dry run.
pub(super) async fn create_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let base = base_url(&req, &state);
        // Read from the URL now, refused (in this order) after the JWS and its payload.
        let action =
            Action::from_url_part(req.path().replacen("/acme/dry-run/", "/acme/", 1).trim_start_matches("/acme/"));
        let dry_run = req.path().starts_with("/acme/dry-run/");
        let o = with_account(&req, &state, payload, move |e, c, jws, account| {
            let requests::NewOrder { identifiers, replaces } = requests::NewOrder::parse(&jws)?;
            let new = NewOrderRequest { identifiers, action: action?, replaces, dry_run };
            Ok(domain::create(e, c, &account, new)?)
        })
        .await?;
        Ok(order_response(&o, &base, HttpResponse::Created()))
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/order/{id}", tag = "ACME", operation_id = "acme_order", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The order (POST-as-GET)", body = AcmeOrder),
        JwsProblems))]
#[post("/acme/order/{id}")]
pub async fn order(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let path = path.into_inner();
        let base = base_url(&req, &state);
        let o = with_account(&req, &state, payload, move |_, c, jws, account| {
            if !jws.payload.is_empty() {
                return Err(Problem::malformed("an order is read with POST-as-GET (an empty payload)"));
            }
            Ok(domain::get(c, &account, path_id(&path)?)?)
        })
        .await?;
        Ok(order_response(&o, &base, HttpResponse::Ok()))
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/authz/{id}", tag = "ACME", operation_id = "acme_authz", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Authorization id")),
    responses((status = 200, description = "The authorization (POST-as-GET, or deactivation)", body = AcmeAuthorization),
        JwsProblems))]
#[post("/acme/authz/{id}")]
pub async fn authz(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let path = path.into_inner();
        let base = base_url(&req, &state);
        let a = with_account(&req, &state, payload, move |_, c, jws, account| {
            let id = path_id(&path)?;
            Ok(if requests::deactivates_authz(&jws)? {
                domain::deactivate_authz(c, &account, id)?
            } else {
                domain::authz(c, &account, id)?
            })
        })
        .await?;
        Ok(HttpResponse::Ok().insert_header(link(&base)).json(AcmeAuthorization::new(&a, &base)))
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/chall/{id}", tag = "ACME", operation_id = "acme_challenge", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Challenge id")),
    responses((status = 200, description = "The challenge; `{}` starts its validation", body = AcmeChallenge),
        JwsProblems))]
#[post("/acme/chall/{id}")]
pub async fn challenge(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let path = path.into_inner();
        let base = base_url(&req, &state);
        let ch = with_account(&req, &state, payload, move |e, c, jws, account| {
            let id = path_id(&path)?;
            Ok(domain::challenge(e, c, &account, id, !jws.payload.is_empty())?)
        })
        .await?;
        Ok(HttpResponse::Ok()
            .insert_header(("Link", format!("<{base}/authz/{}>;rel=\"up\"", ch.authz_id)))
            .json(AcmeChallenge::new(&ch, &base)))
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/order/{id}/finalize", tag = "ACME", operation_id = "acme_finalize", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The order, valid or processing (Retry-After)", body = AcmeOrder),
        JwsProblems,
        (status = 429, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
#[post("/acme/order/{id}/finalize")]
pub async fn finalize(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let path = path.into_inner();
        let base = base_url(&req, &state);
        // One hop when the job ran here (a built-in issuer): the order is read back valid on the
        // same connection. Otherwise the request waits for the workers, then reads it again.
        let (o, account, waiting, renewed) = with_account(&req, &state, payload, move |e, c, jws, account| {
            let id = path_id(&path)?;
            let der = requests::Finalize::parse(&jws)?.csr_der;
            let csr = renewgate_core::engine::csr::Csr::from_der(&der)
                .map_err(|_| Problem::new(400, "badCSR", "the CSR is not a DER PKCS#10 request"))?;
            let acct_key = super::account_key(&account)?;
            let req = crate::acme::finalize::FinalizeRequest { account: &account, id, csr, account_key: &acct_key };
            let job = crate::acme::finalize::finalize(e, c, req)?;
            let o = domain::get(c, &account, id)?;
            let waiting = job.filter(|_| o.status == OrderStatus::Processing);
            // For the audit trail and the renewal metric: what this finalize did.
            let renewed = match (o.action, o.object_id) {
                // The order is finalized whatever this read says: it only names the object.
                (OrderAction::Renew | OrderAction::Reissue, Some(obj)) => Some(
                    crate::engine::lookup::find_object_dn(c, obj)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| format!("object {obj}")),
                ),
                _ => None,
            };
            Ok((o, account, waiting, renewed))
        })
        .await?;
        crate::api::observe::note_acme_finalized(&req, crate::api::observe::AcmeFinalized { renewed });
        let o = match waiting {
            None => o,
            Some(job) => {
                state
                    .engine
                    .wait_for_job(job, Duration::from_secs(10))
                    .await
                    .map_err(|e| Problem::server(e.to_string()))?;
                let id = o.id;
                blocking(&state, move |_, c| Ok(domain::get(c, &account, id)?)).await?
            }
        };
        Ok(order_response(&o, &base, HttpResponse::Ok()))
    }
    .await;
    acme_response(&state, r).await
}

/// The chain of a dry-run order (leaf and the untrusted test issuer).
pub(super) async fn dry_run_certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let path = path.into_inner();
        let pem = with_account(&req, &state, payload, move |_, c, _, account| {
            Ok(crate::acme::dry_run::certificate(c, &account, path_id(&path)?)?)
        })
        .await?;
        Ok(pem_chain(PemCertificateChain(pem.into())))
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/cert/{id}", tag = "ACME", operation_id = "acme_certificate", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Certificate id")),
    responses((status = 200, description = "Leaf and chain", body = PemCertificateChain, content_type = "application/pem-certificate-chain"),
        JwsProblems))]
#[post("/acme/cert/{id}")]
pub async fn certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let path = path.into_inner();
        let pem = with_account(&req, &state, payload, move |e, c, _, account| {
            Ok(domain::certificate_chain(e, c, &account, path_id(&path)?)?)
        })
        .await?;
        Ok(pem_chain(PemCertificateChain(pem)))
    }
    .await;
    acme_response(&state, r).await
}

/// The certificate chain answer (`application/pem-certificate-chain`, RFC 8555 §7.4.2).
fn pem_chain(chain: PemCertificateChain) -> HttpResponse {
    HttpResponse::Ok().content_type("application/pem-certificate-chain").body(chain.0)
}
