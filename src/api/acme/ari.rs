//! ACME Renewal Information (RFC 9773): `GET renewal-info/{certID}`, certID =
//! base64url(AKI keyIdentifier) "." base64url(serial DER content octets). The suggested window
//! sits inside the folder's ACME renewal window so auto-detection keeps choosing *renew*:
//! lead = min(acme_renewal_window, validity/3), start = notAfter − lead, end = start + lead/3;
//! a revoked certificate gets a window that has already begun.
#[allow(unused_imports)]
use super::doc::*;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use serde_json::json;

use super::Problem;
use crate::acme::ari as data;
use crate::app::AppState;
use crate::db::DbError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/acme/renewal-info/{cert_id}", web::get().to(renewal_info))
        .route("/acme/renewal-info/{cert_id}", web::head().to(renewal_info));
}

/// The certID of a certificate (what clients compute).
pub fn cert_id(cert: &openssl::x509::X509Ref) -> Option<String> {
    let aki = cert.authority_key_id()?;
    let mut serial = cert.serial_number().to_bn().ok()?.to_vec();
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    Some(format!("{}.{}", B64U.encode(aki.as_slice()), B64U.encode(&serial)))
}

/// Decodes a certID leniently (padding stripped) into (AKI, serial as upper-case hex without leading zeros).
pub fn parse_cert_id(id: &str) -> Option<(Vec<u8>, String)> {
    let (a, s) = id.split_once('.')?;
    let aki = B64U.decode(a.trim_end_matches('=')).ok()?;
    let serial = B64U.decode(s.trim_end_matches('=')).ok()?;
    let hex = hex::encode_upper(&serial);
    let hex = hex.trim_start_matches('0').to_string();
    if aki.is_empty() || hex.is_empty() {
        return None;
    }
    Some((aki, hex))
}

#[utoipa::path(get, path = "/acme/renewal-info/{cert_id}", tag = "ACME", operation_id = "acme_renewal_info",
    params(("cert_id" = String, Path, description = "base64url(AKI).base64url(serial)")),
    responses((status = 200, description = "The suggested renewal window", body = RenewalInfo),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 404, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn renewal_info(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let _ = req;
    let id = path.into_inner();
    let (aki, serial) =
        parse_cert_id(&id).ok_or_else(|| Problem::malformed("the certID is not base64url(AKI).base64url(serial)"))?;
    let engine = state.engine.clone();
    let (start, end) = web::block(move || -> Result<(i64, i64), Problem> {
        let mut c = engine.pool.get()?;
        let v = data::find_version(&mut c, &aki, &serial)?
            .ok_or_else(|| Problem::new(404, "malformed", "no certificate with this certID was issued here"))?;
        let now = chrono::Utc::now().timestamp();
        let revoked = data::is_revoked(&mut c, v.id)?;
        // A revoked certificate, or one whose issuing CA has been taken out of service (a CA
        // rotation): renew at once.
        let retired_issuer = match v.issuer_ca_id {
            Some(ca) => data::issuer_retired(&mut c, ca)?,
            None => false,
        };
        if revoked || retired_issuer {
            return Ok((now - 3600, now - 1800));
        }
        let folder = crate::acme::orders::object_folder(&mut c, v.object_id)?;
        let p = crate::engine::policy::effective(&mut c, &folder).map_err(DbError::from)?;
        let window = p
            .string("acme_renewal_window")
            .and_then(|(d, _)| crate::settings::parse_duration(&d).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(32 * 86400);
        let not_after = v.not_after.and_utc().timestamp();
        let validity = (not_after - v.not_before.and_utc().timestamp()).max(3);
        let lead = window.min(validity / 3);
        let start = not_after - lead;
        Ok((start, start + (lead / 3).max(1)))
    })
    .await??;
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Retry-After", "21600"))
        .content_type("application/json")
        .body(json!({"suggestedWindow": {"start": fmt(start), "end": fmt(end)}}).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_ids_round_trip_with_the_rfc_example_serial() {
        // RFC 9773 §4.1: serial 0x87654321 encodes as AIdlQyE (leading zero kept).
        let (aki, serial) = parse_cert_id("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").unwrap();
        assert_eq!(serial, "87654321");
        assert!(!aki.is_empty());
        assert!(parse_cert_id("nodot").is_none());
        assert!(parse_cert_id(".AIdlQyE").is_none());
    }
}
