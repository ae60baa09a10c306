//! Row types, one per table. Ids are database-generated integers; GUIDs are text beside them.
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::*;
use crate::vocab::{CsrOrigin, JobState, ManagementType, ObjectState, StoreJobState};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub guid: String,
    pub name: String,
    pub name_lower: String,
    pub password_hash: String,
    pub max_scope: String,
    pub folders: String,
    pub created_at: NaiveDateTime,
    pub disabled: bool,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub guid: &'a str,
    pub name: &'a str,
    pub name_lower: &'a str,
    pub password_hash: &'a str,
    pub max_scope: &'a str,
    pub folders: &'a str,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tokens)]
pub struct Token {
    pub id: i64,
    pub user_id: i64,
    pub access_hash: String,
    pub refresh_hash: Option<String>,
    pub scope: String,
    pub client_id: String,
    pub kind: String,
    pub issued_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub refresh_until: Option<NaiveDateTime>,
    pub revoked: bool,
    pub client_machine: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = tokens)]
pub struct NewToken<'a> {
    pub user_id: i64,
    pub access_hash: &'a str,
    pub refresh_hash: Option<&'a str>,
    pub scope: &'a str,
    pub client_id: &'a str,
    pub kind: &'a str,
    pub issued_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub refresh_until: Option<NaiveDateTime>,
    pub revoked: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = policy_folders)]
pub struct PolicyFolder {
    pub id: i64,
    pub guid: String,
    pub dn: String,
    pub dn_lower: String,
    pub settings: String,
    pub locked: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = policy_folders)]
pub struct NewPolicyFolder<'a> {
    pub guid: &'a str,
    pub dn: &'a str,
    pub dn_lower: &'a str,
    pub settings: &'a str,
    pub locked: &'a str,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cas)]
pub struct CaRow {
    pub id: i64,
    pub name: String,
    pub name_lower: String,
    pub cert_pem: String,
    pub key_enc: Vec<u8>,
    pub parent_id: Option<i64>,
    pub is_root: bool,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = cas)]
pub struct NewCa<'a> {
    pub name: &'a str,
    pub name_lower: &'a str,
    pub cert_pem: &'a str,
    pub key_enc: &'a [u8],
    pub parent_id: Option<i64>,
    pub is_root: bool,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cert_objects)]
pub struct CertObject {
    pub id: i64,
    pub guid: String,
    pub dn: String,
    pub dn_lower: String,
    pub policy_dn: String,
    pub name: String,
    pub state: ObjectState,
    pub disabled: bool,
    pub management_type: ManagementType,
    pub csr_origin: CsrOrigin,
    pub key_spec: String,
    pub current_cert_id: Option<i64>,
    pub pending_job_id: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = cert_objects)]
pub struct NewCertObject<'a> {
    pub guid: &'a str,
    pub dn: &'a str,
    pub dn_lower: &'a str,
    pub policy_dn: &'a str,
    pub name: &'a str,
    pub state: ObjectState,
    pub disabled: bool,
    pub management_type: ManagementType,
    pub csr_origin: CsrOrigin,
    pub key_spec: &'a str,
    pub current_cert_id: Option<i64>,
    pub pending_job_id: Option<i64>,
    pub last_error: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = certificates)]
pub struct CertVersion {
    pub id: i64,
    pub guid: String,
    pub object_id: i64,
    pub issuer_ca_id: Option<i64>,
    pub der: Vec<u8>,
    pub chain_pem: String,
    pub serial: String,
    pub thumbprint: String,
    pub common_name: String,
    pub issuer_dn: String,
    pub not_before: NaiveDateTime,
    pub not_after: NaiveDateTime,
    pub public_key_sha256: String,
    pub key_enc: Option<Vec<u8>>,
    pub job_id: Option<i64>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = certificates)]
// None binds NULL (the columns' default) instead of writing DEFAULT: the statement's text is then
// the same for every row, so diesel keeps it prepared (it is on every renewal's path).
#[diesel(treat_none_as_default_value = false)]
pub struct NewCertVersion<'a> {
    pub guid: &'a str,
    pub object_id: i64,
    pub issuer_ca_id: Option<i64>,
    pub der: &'a [u8],
    pub chain_pem: &'a str,
    pub serial: &'a str,
    pub thumbprint: &'a str,
    pub common_name: &'a str,
    pub issuer_dn: &'a str,
    pub not_before: NaiveDateTime,
    pub not_after: NaiveDateTime,
    pub public_key_sha256: &'a str,
    pub key_enc: Option<&'a [u8]>,
    pub job_id: Option<i64>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: i64,
    pub guid: String,
    pub kind: String,
    pub object_id: i64,
    pub payload: String,
    pub state: JobState,
    pub attempts: i32,
    pub run_after: NaiveDateTime,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub result_cert_id: Option<i64>,
    pub error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub issuer_state: Option<String>,
    pub key_enc: Option<Vec<u8>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = jobs)]
// None binds NULL (the columns' default) instead of writing DEFAULT: the statement's text is then
// the same for every row, so diesel keeps it prepared (it is on every renewal's path).
#[diesel(treat_none_as_default_value = false)]
pub struct NewJob<'a> {
    pub guid: &'a str,
    pub kind: &'a str,
    pub object_id: i64,
    pub payload: &'a str,
    pub state: JobState,
    pub attempts: i32,
    pub run_after: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub lease_owner: Option<&'a str>,
    pub lease_until: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = templates)]
pub struct Template {
    pub id: i64,
    pub name: String,
    pub name_lower: String,
    pub policy_dn: String,
    pub validity: Option<String>,
    pub ekus: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = stores)]
pub struct Store {
    pub id: i64,
    pub guid: String,
    pub client_machine: String,
    pub client_machine_lower: String,
    pub store_path: String,
    pub store_type: String,
    pub alias: Option<String>,
    pub password_enc: Option<Vec<u8>>,
    pub include_keys: bool,
    pub created_at: NaiveDateTime,
    /// The policy folder the store belongs to (`None`: not placed yet, read as the root).
    pub folder_dn: Option<String>,
}

impl Store {
    /// The folder whose permissions govern this store.
    pub fn folder(&self) -> &str {
        self.folder_dn.as_deref().unwrap_or(crate::engine::policy::ROOT_DN)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = store_jobs)]
pub struct StorePushJob {
    pub id: i64,
    pub guid: String,
    pub store_id: i64,
    pub certificate_id: Option<i64>,
    pub operation: String,
    pub alias: Option<String>,
    pub overwrite: bool,
    pub state: StoreJobState,
    pub attempts: i32,
    pub run_after: NaiveDateTime,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub message: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = store_job_runs)]
pub struct StoreJobRun {
    pub id: i64,
    pub job_id: i64,
    pub status: i32,
    pub result: i32,
    pub message: String,
    pub operation_start: NaiveDateTime,
    pub operation_end: Option<NaiveDateTime>,
}
