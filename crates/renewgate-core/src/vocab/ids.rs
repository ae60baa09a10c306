//! Row ids as distinct types, so that an object id cannot be passed where a certificate id is
//! meant. Each is the database's BIGINT underneath (diesel-derive-newtype maps it both ways).
use diesel_derive_newtype::DieselNewType;

macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, DieselNewType, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )+};
}

id_type! {
    /// A certificate object (`cert_objects.id`).
    ObjectId;
    /// One issued certificate version (`certificates.id`).
    CertificateId;
    /// An issuance job (`jobs.id`).
    JobId;
    /// A certificate store (`stores.id`).
    StoreId;
    /// A store push job (`store_jobs.id`).
    StoreJobId;
    /// A user (`users.id`).
    UserId;
    /// A built-in CA (`cas.id`).
    CaId;
}
