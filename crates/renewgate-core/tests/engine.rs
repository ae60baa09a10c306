//! The engine on its own, without HTTP: an in-memory SQLite (one pooled connection, so the one
//! database lives as long as the pool), the built-in CA, and the queue run by hand.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test: its helpers fail the test by panicking (clippy.toml allows this in #[test] functions only)"
)]
use std::collections::BTreeMap;

use renewgate_core::auth::{FolderAccess, FolderGrant};
use renewgate_core::ca::{EcCurve, KeySpec, SanSet};
use renewgate_core::db::{self, Backend, DbConn};
use renewgate_core::engine::inventory::{self, CertRef};
use renewgate_core::engine::renew::{EnrollRequest, RenewRequest, SubjectSpec};
use renewgate_core::engine::validate::PolicyViolation;
use renewgate_core::engine::{Engine, RenewError, policy, stores};
use renewgate_core::secrets::MasterKey;
use renewgate_core::settings::Settings;
use renewgate_core::vocab::{ObjectState, Permission};

fn engine() -> Engine {
    let pool = db::build_pool(":memory:", 1).expect("in-memory SQLite");
    let master = MasterKey::generate().expect("master key");
    let engine = Engine::new(pool, Backend::Sqlite, master, Settings::default()).expect("engine");
    let mut c = engine.pool.get().expect("connection");
    db::run_migrations(&mut c).expect("migrations");
    engine.ca.initialise(&mut c, KeySpec::Ec(EcCurve::P256), "Engine Tests").expect("CA");
    policy::ensure_folder(&mut c, policy::ROOT_DN).expect("root folder");
    engine
}

fn folder(c: &mut DbConn, dn: &str, settings: &[(&str, serde_json::Value)]) {
    let set: BTreeMap<String, serde_json::Value> = settings.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    policy::merge_folder(c, dn, &set, &[], &[]).expect("folder");
}

fn enroll_request(folder: &str, cn: &str, dns: &[&str]) -> EnrollRequest {
    EnrollRequest {
        policy_dn: folder.into(),
        object_name: Some(cn.into()),
        csr: None,
        subject: SubjectSpec { common_name: Some(cn.into()), ..Default::default() },
        sans: SanSet { dns: dns.iter().map(|d| d.to_string()).collect(), ..Default::default() },
        key_spec: Some(KeySpec::Ec(EcCurve::P256)),
        management_type: None,
        overrides: None,
        issue_as: None,
        new_object_only: false,
    }
}

/// Runs queued jobs until none is left.
fn drain(e: &Engine) {
    while e.run_one("engine-test").expect("queue") {}
}

fn renew_request(r: CertRef) -> RenewRequest {
    RenewRequest {
        certificate: r,
        csr: None,
        subject: None,
        sans: None,
        reenable: false,
        certificate_data: None,
        not_after_max: None,
        access: Default::default(),
        issue_as: None,
        object: None,
    }
}

#[test]
fn enroll_then_renew_through_the_queue() {
    let e = engine();
    let accepted = {
        let mut c = e.pool.get().unwrap();
        e.enroll(&mut c, &enroll_request(policy::ROOT_DN, "web.example.com", &["web.example.com"])).unwrap()
    };
    drain(&e);
    let dn = accepted.object.dn.clone();
    let mut c = e.pool.get().unwrap();
    let obj = inventory::find_object(&mut c, &CertRef::Dn(dn.clone())).unwrap().unwrap();
    assert_eq!(obj.state, ObjectState::Active);
    assert_eq!(inventory::versions(&mut c, obj.id).unwrap().len(), 1);
    e.renew(&mut c, &renew_request(CertRef::Dn(dn.clone()))).unwrap();
    // One renewal in flight per certificate.
    assert_eq!(
        e.renew(&mut c, &renew_request(CertRef::Dn(dn.clone()))).unwrap_err(),
        RenewError::AlreadyProcessing(dn.clone())
    );
    drop(c);
    drain(&e);
    let mut c = e.pool.get().unwrap();
    assert_eq!(inventory::versions(&mut c, obj.id).unwrap().len(), 2);
}

#[test]
fn policy_and_names_are_checked_before_anything_is_queued() {
    let e = engine();
    let mut c = e.pool.get().unwrap();
    folder(&mut c, "\\VED\\Policy\\Web", &[("domains", serde_json::json!(["example.com"]))]);
    let err = e.enroll(&mut c, &enroll_request("\\VED\\Policy\\Web", "x.example.org", &["x.example.org"])).unwrap_err();
    assert!(matches!(err, RenewError::Policy(PolicyViolation::CommonNameWhitelist(_))), "{err:?}");
    for bad in ["attacker.com\0.example.com", "sp ace.example.com", "*.com", "a..example.com"] {
        let err = e.enroll(&mut c, &enroll_request("\\VED\\Policy\\Web", "ok.example.com", &[bad])).unwrap_err();
        assert!(matches!(err, RenewError::Policy(PolicyViolation::BadName(_))), "{bad:?}: {err:?}");
    }
    let queued: i64 = {
        use diesel::prelude::*;
        renewgate_core::db::schema::jobs::table.count().get_result(&mut **c).unwrap()
    };
    assert_eq!(queued, 0, "nothing queued for a refused request");
}

#[test]
fn folder_access_covers_whole_components_only() {
    let a = FolderAccess(Some(vec![FolderGrant { dn: "\\VED\\Policy\\A".into(), perms: vec![Permission::Read] }]));
    assert!(a.allows("\\VED\\Policy\\A", Permission::Read));
    assert!(a.allows("\\VED\\Policy\\A\\Deep", Permission::Read));
    assert!(!a.allows("\\VED\\Policy\\AB", Permission::Read));
    assert!(!a.allows("\\VED\\Policy\\A", Permission::Write));
    assert!(FolderAccess::default().allows("\\VED\\Policy\\Anything", Permission::Key));
}

#[test]
fn stores_belong_to_folders_and_keys_need_key_permission() {
    let e = engine();
    let mut c = e.pool.get().unwrap();
    folder(&mut c, "\\VED\\Policy\\A", &[]);
    folder(&mut c, "\\VED\\Policy\\B", &[]);
    let new = |path: &'static str, folder: &'static str, keys: bool| stores::NewStore {
        client_machine: "host",
        store_path: path,
        store_type: "pem-dir",
        alias: None,
        password: None,
        include_keys: keys,
        folder_dn: Some(folder),
    };
    let all = FolderAccess::default();
    let in_a = stores::create_store(&mut c, &e.master, &all, &new("/a", "\\VED\\Policy\\A", false)).unwrap();
    let keyed = stores::create_store(&mut c, &e.master, &all, &new("/k", "\\VED\\Policy\\A", true)).unwrap();
    let in_b = stores::create_store(&mut c, &e.master, &all, &new("/b", "\\VED\\Policy\\B", false)).unwrap();
    // (ClientMachine, StorePath) is unique.
    assert!(stores::create_store(&mut c, &e.master, &all, &new("/a", "\\VED\\Policy\\A", false)).is_err());
    let rw = FolderAccess(Some(vec![FolderGrant {
        dn: "\\VED\\Policy\\A".into(),
        perms: vec![Permission::Read, Permission::Write],
    }]));
    let cert_folder = "\\VED\\Policy\\A";
    assert_eq!(stores::check_push(&rw, &in_a, cert_folder), Ok(()));
    assert_eq!(stores::check_push(&rw, &in_b, cert_folder), Err(stores::StoreDenied::Store));
    assert_eq!(stores::check_push(&rw, &keyed, cert_folder), Err(stores::StoreDenied::Key));
    // Another folder's store answers like a missing one; lists hold the caller's only.
    assert!(stores::find_store_for(&mut c, &rw, &in_b.guid, Permission::Read).unwrap().is_none());
    let listed: Vec<String> = stores::list_stores_for(&mut c, &rw).unwrap().into_iter().map(|s| s.guid).collect();
    assert!(listed.contains(&in_a.guid) && !listed.contains(&in_b.guid));
    // A restricted caller cannot create a store outside its folders.
    assert!(matches!(
        stores::create_store(&mut c, &e.master, &rw, &new("/x", "\\VED\\Policy\\B", false)),
        Err(RenewError::PolicyDoesNotExist(_))
    ));
}
