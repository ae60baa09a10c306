//! Output formats, independent of any dialect: a certificate bundle in, file bytes out.
pub mod der;
pub mod jks;
pub mod password;
pub mod pem;
pub mod pkcs12;
pub mod pkcs7;

use crate::engine::inventory::CertBundle;

/// The formats Venafi's `Format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Base64,
    Base64Pkcs8,
    Der,
    Pkcs7,
    Pkcs12,
    Jks,
}

impl OutputFormat {
    /// Matched case-insensitively with spaces, `#`, parentheses and punctuation optional.
    pub fn parse(s: &str) -> Option<OutputFormat> {
        let n: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        match n.as_str() {
            "base64" | "pem" => Some(OutputFormat::Base64),
            "base64pkcs8" | "pkcs8" => Some(OutputFormat::Base64Pkcs8),
            "der" => Some(OutputFormat::Der),
            "pkcs7" | "p7b" => Some(OutputFormat::Pkcs7),
            "pkcs12" | "pfx" | "p12" => Some(OutputFormat::Pkcs12),
            "jks" => Some(OutputFormat::Jks),
            _ => None,
        }
    }

    /// The vendor's spelling, echoed back in `Format`.
    pub fn vendor_name(self) -> &'static str {
        match self {
            OutputFormat::Base64 => "Base64",
            OutputFormat::Base64Pkcs8 => "Base64 (PKCS #8)",
            OutputFormat::Der => "DER",
            OutputFormat::Pkcs7 => "PKCS #7",
            OutputFormat::Pkcs12 => "PKCS #12",
            OutputFormat::Jks => "JKS",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Base64 | OutputFormat::Base64Pkcs8 => "application/x-pem-file",
            OutputFormat::Der => "application/x-x509-ca-cert",
            OutputFormat::Pkcs7 => "application/x-pkcs7-certificates",
            OutputFormat::Pkcs12 => "application/x-pkcs12",
            OutputFormat::Jks => "application/octet-stream",
        }
    }

    /// Formats that can carry a private key.
    pub fn can_carry_key(self) -> bool {
        matches!(self, OutputFormat::Base64 | OutputFormat::Base64Pkcs8 | OutputFormat::Pkcs12 | OutputFormat::Jks)
    }
}

/// PKCS#12 encryption profile (see pkcs12.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkcs12Profile {
    Modern,
    Legacy,
}

impl Pkcs12Profile {
    pub fn parse(s: &str) -> Option<Pkcs12Profile> {
        match s.trim().to_ascii_lowercase().as_str() {
            "modern" => Some(Pkcs12Profile::Modern),
            "legacy" => Some(Pkcs12Profile::Legacy),
            _ => None,
        }
    }
}

/// What the caller asked for.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    pub format: OutputFormat,
    pub include_chain: bool,
    pub root_first: bool,
    pub include_private_key: bool,
    pub password: Option<String>,
    pub keystore_password: Option<String>,
    pub friendly_name: Option<String>,
    pub pkcs12_profile: Pkcs12Profile,
}

/// A rendered file.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub filename: String,
    pub format: OutputFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Invalid(String),
    #[error("crypto: {0}")]
    Crypto(String),
}

impl From<openssl::error::ErrorStack> for FormatError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        FormatError::Crypto(e.to_string())
    }
}

/// Checks options before anything is queued or rendered (a Renew with bad ones renews nothing).
pub fn validate(opts: &OutputOptions) -> Result<(), FormatError> {
    if opts.include_private_key {
        if !opts.format.can_carry_key() {
            return Err(FormatError::Invalid(format!(
                "The {} format cannot carry a private key: set IncludePrivateKey to false or choose Base64, Base64 (PKCS #8), PKCS #12 or JKS.",
                opts.format.vendor_name()
            )));
        }
        match &opts.password {
            None => {
                return Err(FormatError::Invalid("Password is required when IncludePrivateKey is true.".into()));
            }
            Some(p) => password::check_strength("Password", p)?,
        }
    }
    match opts.format {
        OutputFormat::Jks => {
            if opts.friendly_name.is_none() {
                return Err(FormatError::Invalid(
                    "FriendlyName is required for the JKS format (it is the key alias).".into(),
                ));
            }
            match &opts.keystore_password {
                None => {
                    return Err(FormatError::Invalid("KeystorePassword is required for the JKS format.".into()));
                }
                Some(p) => password::check_strength("KeystorePassword", p)?,
            }
        }
        OutputFormat::Pkcs12 => match opts.password.as_ref().or(opts.keystore_password.as_ref()) {
            None => {
                return Err(FormatError::Invalid("Password is required for the PKCS #12 format.".into()));
            }
            Some(p) => password::check_strength("Password", p)?,
        },
        _ => {}
    }
    Ok(())
}

/// File name from the CN (unsafe characters replaced) with the format's extension.
pub fn filename(cn: &str, ext: &str) -> String {
    let base: String = cn
        .chars()
        .map(|c| match c {
            '*' => '_',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' => c,
            _ => '_',
        })
        .collect();
    let base = if base.is_empty() { "certificate".to_string() } else { base };
    format!("{base}.{ext}")
}

pub fn render(bundle: &CertBundle, opts: &OutputOptions) -> Result<Rendered, FormatError> {
    validate(opts)?;
    let cn = crate::ca::common_name(bundle.leaf.subject_name());
    let alias = opts.friendly_name.clone().unwrap_or_else(|| cn.clone());
    let (bytes, ext) = match opts.format {
        OutputFormat::Base64 | OutputFormat::Base64Pkcs8 => pem::render(bundle, opts)?,
        OutputFormat::Der => (der::render(bundle)?, "cer"),
        OutputFormat::Pkcs7 => (pkcs7::render(&ordered_certs(bundle, opts))?, "p7b"),
        OutputFormat::Pkcs12 => {
            let pw = opts.password.as_deref().or(opts.keystore_password.as_deref()).unwrap_or_default();
            (pkcs12::render(bundle, opts, pw, &alias)?, "pfx")
        }
        OutputFormat::Jks => {
            let store_pw = opts.keystore_password.as_deref().unwrap_or_default();
            (jks::render(bundle, opts, &alias, store_pw)?, "jks")
        }
    };
    Ok(Rendered { bytes, filename: filename(&cn, ext), format: opts.format })
}

/// The certificates in output order: leaf then chain (root last), or the reverse.
pub fn ordered_certs(bundle: &CertBundle, opts: &OutputOptions) -> Vec<openssl::x509::X509> {
    let mut v = vec![bundle.leaf.clone()];
    if opts.include_chain {
        v.extend(bundle.chain.iter().cloned());
    }
    if opts.root_first {
        v.reverse();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_are_lenient() {
        assert_eq!(OutputFormat::parse("Base64 (PKCS #8)"), Some(OutputFormat::Base64Pkcs8));
        assert_eq!(OutputFormat::parse("base64pkcs8"), Some(OutputFormat::Base64Pkcs8));
        assert_eq!(OutputFormat::parse("BASE64"), Some(OutputFormat::Base64));
        assert_eq!(OutputFormat::parse("PKCS #12"), Some(OutputFormat::Pkcs12));
        assert_eq!(OutputFormat::parse("pkcs7"), Some(OutputFormat::Pkcs7));
        assert_eq!(OutputFormat::parse("der"), Some(OutputFormat::Der));
        assert_eq!(OutputFormat::parse("jks"), Some(OutputFormat::Jks));
        assert_eq!(OutputFormat::parse("zip"), None);
    }

    #[test]
    fn file_names() {
        assert_eq!(filename("www.example.com", "cer"), "www.example.com.cer");
        assert_eq!(filename("*.example.com", "pem"), "_.example.com.pem");
        assert_eq!(filename("", "der"), "certificate.der");
    }
}
