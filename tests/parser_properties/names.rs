//! Names and small values clients send: SAN and subject checks (`names`), ACME identifiers,
//! the directory's `action`/`orderId` and new-order URL parts, ARI certIDs, and Keyfactor's
//! answer casing (the body's first key) and .NET camel-casing. Arbitrary text never panics;
//! normalizing is idempotent; what the gateway writes reads back.
use actix_web::test::TestRequest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use proptest::prelude::*;
use renewgate::api::keyfactor::{Casing, casing, dotnet_camel};
use renewgate_core::acme::model::{Identifier, RequestedAction};
use renewgate_core::acme::renewal_info::parse_cert_id;
use renewgate_core::names;

use crate::support::{bytes, config, parser_text, text, within_deadline};

/// Text shaped like names (labels, dots, at-signs, IP punctuation) or arbitrary.
fn name_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[a-zA-Z0-9_*.:@/\\\\=, -]{0,80}",
        1 => "(xn--)?[a-z0-9é-]{0,70}(\\.[a-zA-Z0-9ß-]{0,70}){0,6}\\.?",
        1 => text(),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Every check on arbitrary text answers; a normalized DNS name normalizes to itself.
    #[test]
    fn name_checks_never_panic(s in name_text(), wildcard in any::<bool>()) {
        within_deadline(move || {
            if let Ok(n) = names::normalize_dns_name(&s, wildcard) {
                prop_assert_eq!(names::normalize_dns_name(&n, wildcard), Ok(n.clone()));
                prop_assert!(n.len() <= 253 && !n.ends_with('.') && !n.chars().any(|c| c.is_ascii_uppercase()), "{}", n);
            }
            let _ = names::is_public_suffix(&s);
            let _ = names::parse_ip(&s);
            if let Ok(e) = names::check_email(&s) {
                prop_assert_eq!(names::check_email(&e), Ok(e.clone()));
            }
            let _ = names::check_upn(&s);
            let _ = names::check_uri(&s);
            let _ = names::check_common_name(&s);
            let _ = names::check_folder_dn(&s);
            Ok(())
        })?;
    }

    /// Every IP address reads back from its text.
    #[test]
    fn ip_addresses_round_trip(ip in any::<std::net::IpAddr>()) {
        prop_assert_eq!(names::parse_ip(&ip.to_string()), Ok(ip));
    }

    /// ACME identifiers of any type and value: an identifier or an error; a parsed one parses
    /// to itself.
    #[test]
    fn acme_identifiers_never_panic(kind in prop_oneof![Just("dns".to_string()), Just("ip".to_string()), name_text()], value in name_text()) {
        within_deadline(move || {
            if let Ok(id) = Identifier::parse(&kind, &value) {
                let again = Identifier::parse(&id.kind, &id.value).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(again, id);
            }
            Ok(())
        })?;
    }

    /// The directory query and new-order URL part: arbitrary text answers; a requested action
    /// reads back from the URL part the gateway writes for it.
    #[test]
    fn requested_actions_round_trip(
        action in prop::option::of(prop_oneof![Just("renew".to_string()), Just("enroll".to_string()), name_text()]),
        order in prop::option::of(prop_oneof!["[0-9]{1,19}", name_text()]),
        path in name_text(),
    ) {
        within_deadline(move || {
            let _ = RequestedAction::from_url_part(&path);
            if let Ok(a) = RequestedAction::parse(action.as_deref(), order.as_deref()) {
                let url = format!("{}new-order", a.url_part());
                let back = RequestedAction::from_url_part(&url).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(back, a);
            }
            Ok(())
        })?;
    }

    /// ARI certIDs: arbitrary text answers; an (AKI, serial) pair reads back.
    #[test]
    fn ari_cert_ids_round_trip(
        junk in prop_oneof![parser_text(), text()],
        aki in prop::collection::vec(any::<u8>(), 1..=32),
        serial in prop::collection::vec(any::<u8>(), 1..=20),
    ) {
        within_deadline(move || {
            let _ = parse_cert_id(&junk);
            let id = format!("{}.{}", B64U.encode(&aki), B64U.encode(&serial));
            let expected_serial = hex::encode_upper(&serial).trim_start_matches('0').to_string();
            let parsed = parse_cert_id(&id);
            if expected_serial.is_empty() {
                prop_assert_eq!(parsed, None);
            } else {
                prop_assert_eq!(parsed, Some((aki, expected_serial)));
            }
            Ok(())
        })?;
    }

    /// Keyfactor's answer casing follows the body's first key, whatever else the body holds;
    /// .NET camel-casing answers on any text and leaves the rest of an ASCII name alone.
    #[test]
    fn keyfactor_casing_never_panics(body in bytes(), first in "[a-zA-Z][a-zA-Z0-9]{0,20}", name in name_text()) {
        within_deadline(move || {
            let req = TestRequest::default().to_http_request();
            let _ = casing(&req, Some(&body));
            let json = serde_json::to_vec(&serde_json::json!({ first.clone(): 1 })).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected = if first.starts_with(|c: char| c.is_ascii_lowercase()) { Casing::Camel } else { Casing::Pascal };
            prop_assert_eq!(casing(&req, Some(&json)), expected);
            let camel = dotnet_camel(&name);
            prop_assert_eq!(camel.chars().count(), name.chars().count());
            Ok(())
        })?;
    }
}
