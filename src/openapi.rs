//! The OpenAPI 3.1 document (utoipa), printed by `renewgate openapi` and served at /openapi.json.
//! Paths and schemas come from the route registration itself (`api::routes`, through
//! utoipa-actix-web); this file adds the document's info, tags, security schemes and the
//! responses every password-checking operation shares.
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Renewgate", description = "Certificate-renewal gateway: Venafi TPP, Keyfactor Command and ACME renew APIs over one inventory and one CA."),
    tags(
        (name = "Keyfactor: classic (CMSApi)", description = "Keyfactor Command classic CMS API, `/CMSApi/CertEnroll/3/...`: renewal by lookup, PKCS#10 and PKCS#12 enrollment. Answers are always PascalCase; request keys are matched case-insensitively. Authentication: Basic (`DOMAIN\\user:password`) or a bearer token from /vedauth/authorize/oauth. Errors are `{ErrorCode, Message}`."),
        (name = "Keyfactor: enrollment", description = "Keyfactor API enrollment: PFX and CSR enrollment, renewal, renewability, deploying to and replacing in certificate stores. Answers are documented in PascalCase, as the server sends them by default; the server answers camelCase instead (the .NET rule: `KeyfactorID` becomes `keyfactorID`, dictionary keys such as Metadata are kept) when the request body's first key starts with a lower-case letter, or when a GET carries `collectionId=0` without an `x-keyfactor-api-version` header. Request keys are matched case-insensitively. Authentication: Basic (`DOMAIN\\user:password`) or a bearer token from /vedauth/authorize/oauth. Errors are `{ErrorCode, Message}`."),
        (name = "Keyfactor: certificates", description = "Keyfactor API certificates: query, get, download, recover (with the private key), revoke. Answers are documented in PascalCase, as the server sends them by default; the server answers camelCase instead (the .NET rule: `KeyfactorID` becomes `keyfactorID`, dictionary keys such as Metadata are kept) when the request body's first key starts with a lower-case letter, or when a GET carries `collectionId=0` without an `x-keyfactor-api-version` header. Request keys are matched case-insensitively. Authentication: Basic (`DOMAIN\\user:password`) or a bearer token from /vedauth/authorize/oauth. Errors are `{ErrorCode, Message}`."),
        (name = "Keyfactor: certificate stores", description = "Keyfactor API certificate stores (pushed by Renewgate store agents): create, list, inventory, add and remove entries. Answers are documented in PascalCase, as the server sends them by default; the server answers camelCase instead (the .NET rule: `KeyfactorID` becomes `keyfactorID`, dictionary keys such as Metadata are kept) when the request body's first key starts with a lower-case letter, or when a GET carries `collectionId=0` without an `x-keyfactor-api-version` header. Request keys are matched case-insensitively. Authentication: Basic (`DOMAIN\\user:password`) or a bearer token from /vedauth/authorize/oauth. Errors are `{ErrorCode, Message}`."),
        (name = "Keyfactor: orchestrator jobs", description = "Keyfactor API orchestrator jobs: the store jobs, their run history, acknowledging failed runs. Answers are documented in PascalCase, as the server sends them by default; the server answers camelCase instead (the .NET rule: `KeyfactorID` becomes `keyfactorID`, dictionary keys such as Metadata are kept) when the request body's first key starts with a lower-case letter, or when a GET carries `collectionId=0` without an `x-keyfactor-api-version` header. Request keys are matched case-insensitively. Authentication: Basic (`DOMAIN\\user:password`) or a bearer token from /vedauth/authorize/oauth. Errors are `{ErrorCode, Message}`."),
        (name = "Keyfactor: templates and CAs", description = "Keyfactor API templates (bound to policy folders), certificate authorities and the served endpoints. Answers are documented in PascalCase, as the server sends them by default; the server answers camelCase instead (the .NET rule: `KeyfactorID` becomes `keyfactorID`, dictionary keys such as Metadata are kept) when the request body's first key starts with a lower-case letter, or when a GET carries `collectionId=0` without an `x-keyfactor-api-version` header. Request keys are matched case-insensitively. Authentication: Basic (`DOMAIN\\user:password`) or a bearer token from /vedauth/authorize/oauth. Errors are `{ErrorCode, Message}`."),
    ),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        // The Venafi dialect also takes its token (or a legacy APIKey) in X-Venafi-Api-Key.
        components.add_security_scheme(
            "venafiApiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Venafi-Api-Key",
                "A token from /vedauth/authorize/oauth or an APIKey from /vedsdk/authorize",
            ))),
        );
    }
}

/// Wherever a password is checked (the two Venafi logins, every operation that takes Basic), the
/// login throttle may answer 429 with `Retry-After`, and the bound on concurrent hashes 503.
struct LoginThrottleResponses;

impl Modify for LoginThrottleResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, Type};
        let response = |description: &str, schema: &str, retry_after: bool| {
            let mut b = ResponseBuilder::new()
                .description(description)
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build());
            if retry_after {
                b = b.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Seconds until the closed user and source (or source) opens again"))
                        .build(),
                );
            }
            b.build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let venafi_login = path == "/vedauth/authorize/oauth" || path == "/vedsdk/authorize";
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                let basic = op
                    .security
                    .iter()
                    .flatten()
                    .any(|r| serde_json::to_value(r).is_ok_and(|v| v.get("basic").is_some()));
                let schema = match (venafi_login, basic) {
                    (true, _) => "OAuthErrorBody",
                    (false, true) => "KeyfactorErrorBody",
                    _ => continue,
                };
                let rs = &mut op.responses.responses;
                rs.entry("429".into()).or_insert_with(|| {
                    response(
                        "Too many failed logins from this source for this user (or from this source)",
                        schema,
                        true,
                    )
                    .into()
                });
                rs.entry("503".into()).or_insert_with(|| {
                    response("Too many password checks at once, or the database is unavailable", schema, false).into()
                });
            }
        }
    }
}

/// OpenAPI requires a description on every response; utoipa leaves it out when an annotation
/// gives none (generated clients refuse such a document). The status's reason phrase fills it.
struct ResponseDescriptions;

impl Modify for ResponseDescriptions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                for (status, resp) in op.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(r) = resp
                        && r.description.is_empty()
                    {
                        r.description = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|c| actix_web::http::StatusCode::from_u16(c).ok())
                            .and_then(|c| c.canonical_reason())
                            .unwrap_or("Response")
                            .to_string();
                    }
                }
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    // The registration of a server's App, taken apart for its document (no server is started).
    let (_, registered) =
        utoipa_actix_web::UtoipaApp::from(actix_web::App::new()).configure(crate::api::routes).split_for_parts();
    let mut doc = ApiDoc::openapi();
    doc.merge(registered);
    // Modifiers run over the whole document, so after the merge.
    for m in [&SecuritySchemes as &dyn Modify, &LoginThrottleResponses, &ResponseDescriptions] {
        m.modify(&mut doc);
    }
    doc
}

pub fn json() -> Result<String, serde_json::Error> {
    document().to_pretty_json()
}
