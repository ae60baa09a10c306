//! The http-01 solver's plain-HTTP listeners (`ca add … --solver http-01 --http-listen ADDR`):
//! they answer `/.well-known/acme-challenge/<token>` for the orders this gateway places upstream,
//! from the database (so any instance's listener answers for any instance's order), and nothing
//! else. Listeners for issuers added while the gateway runs start within a few seconds.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};

use crate::engine::Engine;

async fn answer(engine: web::Data<Arc<Engine>>, token: web::Path<String>) -> HttpResponse {
    let e = engine.get_ref().clone();
    let token = token.into_inner();
    let found = web::block(move || -> anyhow::Result<Option<String>> {
        let mut c = e.pool.get()?;
        crate::ca::upstream::admin::http01_answer(&mut c, &token)
    })
    .await;
    match found {
        Ok(Ok(Some(key_authorization))) => {
            HttpResponse::Ok().content_type("application/octet-stream").body(key_authorization)
        }
        Ok(Ok(None)) => HttpResponse::NotFound().finish(),
        _ => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// Starts the listeners of every http-01 issuer now, and those of issuers added later.
pub fn supervise(engine: Arc<Engine>) {
    actix_web::rt::spawn(async move {
        let mut bound: HashSet<String> = HashSet::new();
        let mut warned: HashSet<String> = HashSet::new();
        loop {
            let e = engine.clone();
            let wanted = web::block(move || -> anyhow::Result<Vec<String>> {
                let mut c = e.pool.get()?;
                crate::ca::upstream::admin::http_listen_addresses(&mut c)
            })
            .await;
            if let Ok(Ok(addrs)) = wanted {
                let new: Vec<String> = addrs.into_iter().filter(|a| !bound.contains(a)).collect();
                for addr in new {
                    let data = web::Data::new(engine.clone());
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .route("/.well-known/acme-challenge/{token}", web::get().to(answer))
                            .default_service(web::to(HttpResponse::NotFound))
                    })
                    .workers(1)
                    .disable_signals()
                    .bind(addr.as_str());
                    match server {
                        Ok(s) => {
                            tracing::info!(addr = %addr, "http-01 solver listening");
                            actix_web::rt::spawn(s.run());
                            bound.insert(addr);
                        }
                        // Another instance on this host holds it, or the address is wrong: its
                        // issuer's validations fail with the upstream CA's own message.
                        Err(err) => {
                            if warned.insert(addr.clone()) {
                                tracing::warn!(addr = %addr, error = %err, "http-01 solver cannot listen (retrying)");
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    });
}
