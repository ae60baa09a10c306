// One portable schema for both backends: BigInt ids (INTEGER on SQLite, BIGSERIAL on PostgreSQL),
// GUIDs as Text, timestamps as naive UTC `Timestamp`, binary as `Binary` (BLOB / BYTEA).
diesel::table! {
    meta (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        guid -> Text,
        name -> Text,
        name_lower -> Text,
        password_hash -> Text,
        max_scope -> Text,
        folders -> Text,
        created_at -> Timestamp,
        disabled -> Bool,
    }
}

diesel::table! {
    tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        access_hash -> Text,
        refresh_hash -> Nullable<Text>,
        scope -> Text,
        client_id -> Text,
        kind -> Text,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        refresh_until -> Nullable<Timestamp>,
        revoked -> Bool,
        client_machine -> Nullable<Text>,
    }
}

diesel::table! {
    templates (id) {
        id -> BigInt,
        name -> Text,
        name_lower -> Text,
        policy_dn -> Text,
        validity -> Nullable<Text>,
        ekus -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    certificate_info (certificate_id) {
        certificate_id -> BigInt,
        template -> Nullable<Text>,
        ca_name -> Nullable<Text>,
        metadata -> Text,
    }
}

diesel::table! {
    stores (id) {
        id -> BigInt,
        guid -> Text,
        client_machine -> Text,
        client_machine_lower -> Text,
        store_path -> Text,
        store_type -> Text,
        alias -> Nullable<Text>,
        password_enc -> Nullable<Binary>,
        include_keys -> Bool,
        created_at -> Timestamp,
        folder_dn -> Nullable<Text>,
    }
}

diesel::table! {
    store_jobs (id) {
        id -> BigInt,
        guid -> Text,
        store_id -> BigInt,
        certificate_id -> Nullable<BigInt>,
        operation -> Text,
        alias -> Nullable<Text>,
        overwrite -> Bool,
        state -> Text,
        attempts -> Integer,
        run_after -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        message -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    store_job_runs (id) {
        id -> BigInt,
        job_id -> BigInt,
        status -> Integer,
        result -> Integer,
        message -> Text,
        operation_start -> Timestamp,
        operation_end -> Nullable<Timestamp>,
    }
}

diesel::joinable!(store_jobs -> stores (store_id));
diesel::joinable!(store_job_runs -> store_jobs (job_id));

diesel::table! {
    policy_folders (id) {
        id -> BigInt,
        guid -> Text,
        dn -> Text,
        dn_lower -> Text,
        settings -> Text,
        locked -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    cas (id) {
        id -> BigInt,
        name -> Text,
        name_lower -> Text,
        cert_pem -> Text,
        key_enc -> Binary,
        parent_id -> Nullable<BigInt>,
        is_root -> Bool,
        disabled -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    cert_objects (id) {
        id -> BigInt,
        guid -> Text,
        dn -> Text,
        dn_lower -> Text,
        policy_dn -> Text,
        name -> Text,
        state -> Text,
        disabled -> Bool,
        management_type -> Text,
        csr_origin -> Text,
        key_spec -> Text,
        current_cert_id -> Nullable<BigInt>,
        pending_job_id -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    certificates (id) {
        id -> BigInt,
        guid -> Text,
        object_id -> BigInt,
        issuer_ca_id -> Nullable<BigInt>,
        der -> Binary,
        chain_pem -> Text,
        serial -> Text,
        thumbprint -> Text,
        common_name -> Text,
        issuer_dn -> Text,
        not_before -> Timestamp,
        not_after -> Timestamp,
        public_key_sha256 -> Text,
        key_enc -> Nullable<Binary>,
        job_id -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    revocations (certificate_id) {
        certificate_id -> BigInt,
        reason -> Integer,
        comments -> Text,
        revoked_at -> Timestamp,
    }
}

diesel::table! {
    /// The keys (SPKI SHA-256) of certificates revoked for key compromise: never issued again.
    compromised_keys (public_key_sha256) {
        public_key_sha256 -> Text,
        certificate_id -> BigInt,
        revoked_at -> Timestamp,
    }
}

diesel::table! {
    csrs (id) {
        id -> BigInt,
        object_id -> BigInt,
        job_id -> BigInt,
        der -> Binary,
        created_at -> Timestamp,
    }
}

diesel::table! {
    jobs (id) {
        id -> BigInt,
        guid -> Text,
        kind -> Text,
        object_id -> BigInt,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        run_after -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        result_cert_id -> Nullable<BigInt>,
        error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        issuer_state -> Nullable<Text>,
        key_enc -> Nullable<Binary>,
    }
}

diesel::table! {
    issuers (id) {
        id -> BigInt,
        name -> Text,
        name_lower -> Text,
        kind -> Text,
        directory_url -> Text,
        config -> Text,
        eab_hmac_enc -> Nullable<Binary>,
        account_key_enc -> Nullable<Binary>,
        account_url -> Nullable<Text>,
        last_error -> Nullable<Text>,
        removed -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        tsig_secret_enc -> Nullable<Binary>,
    }
}

diesel::table! {
    http01_answers (token) {
        token -> Text,
        key_authorization -> Text,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(tokens -> users (user_id));
diesel::joinable!(certificates -> cert_objects (object_id));

diesel::allow_tables_to_appear_in_same_query!(
    meta,
    users,
    tokens,
    policy_folders,
    cas,
    cert_objects,
    certificates,
    csrs,
    revocations,
    jobs,
    issuers,
    http01_answers,
    templates,
    certificate_info,
    stores,
    store_jobs,
    store_job_runs,
    acme_eab_keys,
    acme_accounts,
    acme_nonces,
    acme_orders,
    acme_authz,
    acme_challenges,
    acme_objects,
    acme_dry_run_certs,
    acme_assignments,
    audit_log
);

diesel::table! {
    acme_eab_keys (id) {
        id -> BigInt,
        kid -> Text,
        hmac_enc -> Binary,
        policy_dn -> Text,
        prevalidated -> Bool,
        created_at -> Timestamp,
        folder_orders -> Bool,
    }
}

diesel::table! {
    acme_accounts (id) {
        id -> BigInt,
        thumbprint -> Text,
        jwk -> Text,
        status -> Text,
        contact -> Text,
        eab_kid -> Nullable<Text>,
        policy_dn -> Text,
        prevalidated -> Bool,
        created_at -> Timestamp,
        created_from -> Nullable<Text>,
    }
}

diesel::table! {
    acme_nonces (nonce) {
        nonce -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    acme_orders (id) {
        id -> BigInt,
        account_id -> BigInt,
        status -> Text,
        identifiers -> Text,
        action -> Text,
        target_object_id -> Nullable<BigInt>,
        expires -> Timestamp,
        job_id -> Nullable<BigInt>,
        object_id -> Nullable<BigInt>,
        certificate_id -> Nullable<BigInt>,
        error -> Nullable<Text>,
        created_at -> Timestamp,
        replaces -> Nullable<Text>,
        dry_run -> Bool,
    }
}

diesel::table! {
    acme_authz (id) {
        id -> BigInt,
        order_id -> BigInt,
        identifier -> Text,
        wildcard -> Bool,
        status -> Text,
        expires -> Timestamp,
    }
}

diesel::table! {
    acme_challenges (id) {
        id -> BigInt,
        authz_id -> BigInt,
        kind -> Text,
        token -> Text,
        status -> Text,
        validated -> Nullable<Timestamp>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    acme_objects (object_id) {
        object_id -> BigInt,
        account_id -> BigInt,
        duplicate_of -> Nullable<BigInt>,
        created_at -> Timestamp,
        coverage_end -> Nullable<Timestamp>,
        match_name -> Nullable<Text>,
        owner -> Nullable<Text>,
    }
}

diesel::table! {
    acme_assignments (eab_kid, object_id) {
        eab_kid -> Text,
        object_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    acme_dry_run_certs (order_id) {
        order_id -> BigInt,
        pem -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        guid -> Text,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        target -> Text,
        certificate_id -> Nullable<BigInt>,
        outcome -> Text,
        detail -> Text,
        source -> Text,
        request_id -> Nullable<Text>,
    }
}

diesel::table! {
    /// The current CRL of each built-in CA (`ca::crl`).
    crls (ca_id) {
        ca_id -> BigInt,
        crl_number -> BigInt,
        der -> Binary,
        this_update -> Timestamp,
        next_update -> Timestamp,
        stale -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// One row (id = 1): the id of the master key the sealed secrets are under (db::sealed).
    master_key (id) {
        id -> BigInt,
        key_id -> Text,
        recorded_at -> Timestamp,
        rotated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Console sessions (`auth::sessions`): the cookie's secret only as SHA-256.
    console_sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        user_id -> BigInt,
        user_stamp -> Text,
        created_at -> Timestamp,
        last_seen -> Timestamp,
    }
}

diesel::table! {
    /// When each store agent last asked for its jobs.
    agent_contacts (client_machine_lower) {
        client_machine_lower -> Text,
        client_machine -> Text,
        last_contact -> Timestamp,
    }
}

diesel::table! {
    /// Every name (CN, SANs; lower-case) a certificate carries, for search by name.
    certificate_names (certificate_id, name) {
        certificate_id -> BigInt,
        object_id -> BigInt,
        name -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(console_sessions, users);
diesel::allow_tables_to_appear_in_same_query!(certificate_names, cert_objects);
diesel::allow_tables_to_appear_in_same_query!(certificate_names, certificates);
