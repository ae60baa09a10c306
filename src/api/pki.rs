//! What the built-in CAs publish, without authentication (`ca::crl`): `GET /crl/<CA>.crl`, the
//! CA's current CRL, and `GET /ca/<CA>.crt`, its certificate — both DER, the CA name
//! case-insensitive. Issued certificates point at them (CRL distribution point, AIA caIssuers).
//! Served on the HTTPS port and, when `crl.http_bind` is set, alone on a plain-HTTP listener.
use actix_web::{HttpResponse, web};

use crate::api::admin::error::NativeError;
use crate::api::observe::block;
use crate::app::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/crl/{file}", web::get().to(crl)).route("/ca/{file}", web::get().to(ca_certificate));
}

/// `NAME.<ext>` → NAME (the extension matched case-insensitively).
fn ca_name(file: &str, ext: &str) -> Option<String> {
    let (name, e) = file.rsplit_once('.')?;
    (e.eq_ignore_ascii_case(ext) && !name.trim().is_empty()).then(|| name.to_string())
}

/// Runs a core lookup on a pooled connection; `None` is a 404 naming `what`.
async fn serve_der<F>(
    state: web::Data<AppState>,
    what: String,
    content_type: &'static str,
    f: F,
) -> Result<HttpResponse, NativeError>
where
    F: FnOnce(&crate::engine::Engine, &mut crate::db::DbConn) -> Result<Option<Vec<u8>>, crate::ca::builtin::CaError>
        + Send
        + 'static,
{
    let engine = state.engine.clone();
    let der = block(move || -> Result<Option<Vec<u8>>, String> {
        let mut c = engine.pool.get().map_err(|e| e.to_string())?;
        f(&engine, &mut c).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| NativeError::unavailable(e.to_string()))?
    .map_err(NativeError::unavailable)?
    .ok_or_else(|| NativeError::not_found(format!("No {what}.")))?;
    Ok(HttpResponse::Ok().content_type(content_type).body(der))
}

/// `GET /crl/{CA}.crl`: the CA's current CRL (made anew when a revocation made it stale or half
/// its validity has passed).
pub async fn crl(file: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, NativeError> {
    let name = ca_name(&file, "crl").ok_or_else(|| NativeError::not_found("A CRL path is /crl/<CA name>.crl."))?;
    let what = format!("CRL of a CA named {name}");
    serve_der(state, what, "application/pkix-crl", move |e, c| {
        Ok(crate::ca::crl::current(&e.ca, c, &name)?.map(|crl| crl.der))
    })
    .await
}

/// `GET /ca/{CA}.crt`: the CA's certificate.
pub async fn ca_certificate(file: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, NativeError> {
    let name = ca_name(&file, "crt").ok_or_else(|| NativeError::not_found("A CA path is /ca/<CA name>.crt."))?;
    let what = format!("CA named {name}");
    serve_der(state, what, "application/pkix-cert", move |_, c| crate::ca::crl::ca_certificate_der(c, &name)).await
}

/// Everything else on the plain-HTTP listener.
pub async fn plain_not_found() -> HttpResponse {
    HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("Not found\n")
}

#[cfg(test)]
mod tests {
    use super::ca_name;

    #[test]
    fn file_names() {
        assert_eq!(ca_name("Issuing.CRL", "crl").as_deref(), Some("Issuing"));
        assert_eq!(ca_name("my.ca.crt", "crt").as_deref(), Some("my.ca"));
        assert_eq!(ca_name("issuing.crt", "crl"), None);
        assert_eq!(ca_name("issuing", "crl"), None);
        assert_eq!(ca_name(".crl", "crl"), None);
    }
}
