//! The core's vocabulary: the closed sets of words the database keeps in text columns (object,
//! job and store-job states, CSR origin, management type, folder permissions) as enums. Every
//! word is stored exactly as before these types existed, so existing databases read unchanged on
//! both backends.
mod text;

pub use text::UnknownWord;
use text::text_enum;

text_enum! {
    /// Where a certificate object stands (`cert_objects.state`). Disabled is a separate flag.
    pub enum ObjectState ("certificate object state") {
        Active => "active",
        /// A renewal is queued or running; a second one is refused.
        Processing => "processing",
        /// The last renewal failed; cleared by a reset.
        Error => "error",
    }
}

text_enum! {
    /// An issuance job's state (`jobs.state`).
    pub enum JobState ("job state") {
        Queued => "queued",
        Running => "running",
        Done => "done",
        Failed => "failed",
    }
}

text_enum! {
    /// A store push job's state (`store_jobs.state`).
    pub enum StoreJobState ("store job state") {
        Waiting => "waiting",
        Running => "running",
        Done => "done",
        Failed => "failed",
    }
}

text_enum! {
    /// Who made the key pair of an object's certificates (`cert_objects.csr_origin`).
    pub enum CsrOrigin ("CSR origin") {
        /// The gateway generated the key (and keeps it sealed): it can renew on its own.
        Service => "service",
        /// The caller sent a CSR and keeps the key.
        User => "user",
    }
}

text_enum! {
    /// How the gateway manages an object (`cert_objects.management_type`), in the vendors' words.
    pub enum ManagementType ("management type") {
        Enrollment => "Enrollment",
        Provisioning => "Provisioning",
        /// Watched only: never renewed.
        Monitoring => "Monitoring",
        Unassigned => "Unassigned",
    }
}

impl ManagementType {
    /// The management type a caller named, in any letter case (the dialects accept `monitoring`).
    pub fn parse_any_case(s: &str) -> Option<ManagementType> {
        ManagementType::ALL.iter().copied().find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

text_enum! {
    /// A permission on a policy subtree (`users.folders` grants).
    pub enum Permission ("permission") {
        Read => "read",
        Write => "write",
        /// Private Key Read: keys of the folder's certificates may be handed out.
        Key => "key",
    }
}

#[cfg(test)]
mod tests;
