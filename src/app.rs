//! Builds the gateway: storage, CA, first admin, TLS identity, workers, and the actix App with
//! every dialect's scope.
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Uri;
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use utoipa_swagger_ui::SwaggerUi;

use crate::ca::KeySpec;
use crate::db::{self, Backend};
use crate::engine::{Engine, policy};
use crate::secrets::{MasterKey, write_private_file};
use crate::settings::Settings;

pub struct AppState {
    pub engine: Arc<Engine>,
}

/// Opens the database, applies migrations, creates or loads the CAs, the root policy folder and
/// the first admin. Returns the engine and, on the very first start, the admin's password.
pub fn bootstrap(settings: Settings) -> anyhow::Result<(Arc<Engine>, Option<String>)> {
    crate::secrets::secure_data_dir(&settings.data_dir)
        .map_err(|e| anyhow::anyhow!("data directory {}: {e}", settings.data_dir.display()))?;
    let url = settings.database_url();
    let backend = Backend::from_url(&url);
    let master = MasterKey::load(&settings)?;
    let pool = db::build_pool(&url, settings.db.pool_size.max(2))
        .map_err(|e| anyhow::anyhow!("cannot open the {} database: {e}", backend.name()))?;
    let mut conn = pool.get()?;
    let applied = db::run_migrations(&mut conn)?;
    if applied > 0 {
        tracing::info!(applied, backend = backend.name(), "database migrations applied");
    }
    // Before anything opens a secret: an instance holding another key than the database's (after
    // `renewgate master-key rotate`, say) stops here, naming both key ids.
    match db::sealed::check_master_key(&mut conn, &master).map_err(|e| anyhow::anyhow!("{e}"))? {
        db::sealed::KeyCheck::Matches => {}
        db::sealed::KeyCheck::Recorded => {
            tracing::info!(key_id = %master.key_id(), "master key id recorded in the database");
        }
        db::sealed::KeyCheck::Unverified(what) => {
            tracing::warn!(key_id = %master.key_id(), %what, "the master key does not open a stored secret; its id is not recorded");
        }
    }
    let mut engine = Engine::new(pool.clone(), backend, master, settings)?;
    engine.writer =
        db::WriterConn::open(&url).map_err(|e| anyhow::anyhow!("cannot open the {} database: {e}", backend.name()))?;
    let settings = &engine.settings;
    let spec = KeySpec::parse_config(&settings.ca.key_type)?;
    let created =
        engine.ca.initialise(&mut conn, spec, &settings.ca.organization).map_err(|e| anyhow::anyhow!("{e}"))?;
    if created {
        tracing::info!(key_type = %settings.ca.key_type, "created the root and issuing CAs");
    }
    // Under a lock: two instances starting together on an empty database both get here.
    db::write_tx(&mut conn, Some(7262005), |c| policy::ensure_folder(c, policy::ROOT_DN))?;
    // Stores that predate store folders go to the deepest folder covering their certificates.
    let placed = db::write_tx(&mut conn, Some(7262006), crate::engine::stores::place_unplaced_stores)
        .map_err(|e| anyhow::anyhow!("placing stores in folders: {e}"))?;
    if placed > 0 {
        tracing::info!(placed, "existing certificate stores placed in policy folders");
    }
    // The configuration file wins, at each start, for the folders and keys it names.
    if let Some(path) = &settings.config_file {
        for fp in crate::settings::file_policies(path)? {
            let unlock: Vec<String> = fp.settings.keys().filter(|k| !fp.locked.contains(k)).cloned().collect();
            db::write_tx(&mut conn, None, |c| {
                policy::merge_folder(c, &fp.dn, &fp.settings, &fp.locked, &unlock)
                    .map_err(|e| anyhow::anyhow!("{}: [policy.'{}']: {e}", path.display(), fp.dn))
            })?;
        }
    }
    db::write_tx(&mut conn, Some(7262004), |c| {
        crate::engine::templates::ensure_default(c).map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    // Certificates stored before the name index existed get their names once.
    match crate::engine::inventory::backfill_names(&mut conn) {
        Ok(0) => {}
        Ok(n) => tracing::info!(certificates = n, "certificate names indexed for search"),
        Err(e) => {
            tracing::warn!(error = %e, "indexing certificate names failed; search by name may miss older certificates")
        }
    }
    let password = crate::auth::create_first_admin(&mut conn).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(pw) = &password {
        write_private_file(&settings.initial_password_path(), format!("{pw}\n").as_bytes())?;
    }
    let bundle = crate::ca::BuiltinCa::bundle_pem(&mut conn).map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(settings.ca_bundle_path(), bundle)?;
    drop(conn);
    Ok((Arc::new(engine), password))
}

/// Vendor routes are case-insensitive with an optional trailing slash: lower-case the path of
/// /vedsdk, /vedauth, /cmsapi and /keyfactorapi requests and trim the slash before routing.
/// (ACME and native paths keep their case: ACME ids are case-sensitive.)
async fn normalize_vendor_path(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path();
    let lower = path.to_ascii_lowercase();
    let vendor = ["/vedsdk", "/vedauth", "/cmsapi", "/keyfactorapi"]
        .iter()
        .any(|p| lower == *p || lower.starts_with(&format!("{p}/")));
    if vendor {
        let trimmed = lower.trim_end_matches('/');
        let new_path = if trimmed.is_empty() { "/" } else { trimmed };
        if new_path != path {
            let pq = match req.query_string() {
                "" => new_path.to_string(),
                q => format!("{new_path}?{q}"),
            };
            let mut parts = req.head().uri.clone().into_parts();
            parts.path_and_query = pq.parse().ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                req.head_mut().uri = uri.clone();
                req.match_info_mut().get_mut().update(&uri);
            }
        }
    }
    let res = next.call(req).await;
    // Keep this worker thread's OpenSSL error queue clean: a stale entry left by a failed crypto
    // call in a handler would make the next TLS read on the thread fail and drop a connection.
    let _ = openssl::error::ErrorStack::get();
    res
}

async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    let p = req.path();
    let body = if p.starts_with("/vedsdk") || p.starts_with("/vedauth") {
        serde_json::json!({"Error": format!("The requested resource {p} was not found."), "Success": false})
    } else {
        serde_json::json!({"error": "not_found", "message": format!("No route for {p}")})
    };
    HttpResponse::NotFound().content_type("application/json; charset=utf-8").body(body.to_string())
}

/// Prints the start banner: URLs and paths only; the password itself stays in its 0600 file.
fn banner(settings: &Settings, first_start: bool) {
    let url = settings.public_url();
    let bundle = settings.ca_bundle_path();
    let pwfile = settings.initial_password_path();
    println!("Renewgate {} listening on {url}", env!("CARGO_PKG_VERSION"));
    println!("  CA bundle (trust this in clients): {}", bundle.display());
    println!("  OpenAPI: {url}/openapi.json   Swagger UI: {url}/docs/");
    if let Some(bind) = settings.crl_http_bind() {
        println!("  CRLs and CA certificates over plain HTTP on {bind}: {}/crl/<CA>.crl", settings.crl_base_url());
    }
    if first_start {
        println!("  First start: user 'admin' created; its password is in {}", pwfile.display());
    }
    if pwfile.exists() {
        println!("  Get a token:");
        println!(
            "    curl --cacert {} -H 'Content-Type: application/json' \\\n      -d \"{{\\\"username\\\":\\\"admin\\\",\\\"password\\\":\\\"$(cat {})\\\",\\\"client_id\\\":\\\"renewgate\\\",\\\"scope\\\":\\\"certificate:manage\\\"}}\" \\\n      {url}/vedauth/authorize/oauth",
            bundle.display(),
            pwfile.display()
        );
    }
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    // SQLite: one gateway per data directory, and `renewgate restore` must see it running. The
    // lock lives as long as this function, i.e. the process. (PostgreSQL instances may share a
    // data directory: no lock.)
    let _data_dir_lock = match Backend::from_url(&settings.database_url()) {
        Backend::Sqlite => Some(db::backup::DataDirLock::acquire(&settings.data_dir).map_err(|e| match e {
            db::backup::LockError::Held(path) => anyhow::anyhow!(
                "another gateway is running on the data directory {} (it holds {}): one SQLite database serves one \
                 gateway (several instances need PostgreSQL)",
                settings.data_dir.display(),
                path.display()
            ),
            other => anyhow::anyhow!("{other}"),
        })?),
        Backend::Postgres => None,
    };
    let bootstrap_settings = settings.clone();
    let (engine, password) = web::block(move || bootstrap(bootstrap_settings)).await??;
    let issuing = {
        let e = engine.clone();
        web::block(move || -> anyhow::Result<_> {
            let mut c = e.pool.get()?;
            e.ca.load_by_name(&mut c, crate::ca::builtin::ISSUING_CA).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .await??
    };
    let identity = crate::tls::server_identity(&settings, &issuing)?;
    let acceptor = crate::tls::acceptor(&identity)?;
    engine.start_workers()?;
    crate::acme::jobs::start(engine.clone());
    crate::api::http01::supervise(engine.clone());
    engine.start_scheduler()?;
    let state = web::Data::new(AppState { engine: engine.clone() });
    let doc = crate::openapi::document();
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                crate::api::admin::error::NativeError::bad_request(format!("invalid query: {e}")).into()
            }))
            // Request id, access log, metrics and audit records (api::observe); inside the vendor
            // path normalisation so routes are matched (and counted) by their template.
            .wrap(from_fn(crate::api::observe::middleware))
            .wrap(from_fn(normalize_vendor_path));
        utoipa_actix_web::UtoipaApp::from(app)
            .configure(crate::api::routes)
            .into_app()
            .route(
                "/docs",
                web::get().to(|| async { HttpResponse::Found().insert_header(("Location", "/docs/")).finish() }),
            )
            .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", doc.clone()))
            .default_service(web::to(not_found))
    })
    .keep_alive(std::time::Duration::from_secs(75))
    // Without it a response written in two parts (a console page, a certificate list) waits for
    // the client's delayed ACK: 40 ms added to each, on every keep-alive connection.
    .tcp_nodelay(true)
    .bind_openssl(&settings.bind, acceptor)
    .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
    if settings.http.workers > 0 {
        server = server.workers(settings.http.workers);
    }
    // Relying parties fetch CRLs over plain HTTP (RFC 5280 §4.2.1.13): a listener that serves the
    // CRL and CA-certificate paths and nothing else.
    let plain = match settings.crl_http_bind() {
        Some(bind) => {
            let state = web::Data::new(AppState { engine: engine.clone() });
            let s = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .wrap(from_fn(crate::api::observe::middleware))
                    .configure(crate::api::pki::configure)
                    .default_service(web::to(crate::api::pki::plain_not_found))
            })
            .workers(2)
            .bind(bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {bind} (crl.http_bind): {e}"))?;
            tracing::info!(bind, "CRL listener (plain HTTP) started");
            Some(s.run())
        }
        None => None,
    };
    banner(&settings, password.is_some());
    tracing::info!(bind = %settings.bind, backend = engine.backend.name(), workers = settings.queue.workers, "gateway started");
    match plain {
        Some(plain) => {
            tokio::try_join!(server.run(), plain)?;
        }
        None => server.run().await?,
    }
    Ok(())
}
