//! The master key and sealing of secrets at rest (CA keys, service-generated private keys).
//!
//! Sealed blob layout: `b"RG1" || nonce(12) || ciphertext || tag(16)`, AES-256-GCM, with the
//! purpose string as additional data so a blob cannot be moved to another purpose.
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::rand::rand_bytes;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

use crate::settings::Settings;

#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("master key: {0}")]
    Key(String),
    #[error("cannot decrypt a stored secret: the master key does not match the one it was sealed with")]
    Open,
    #[error("crypto: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

const MAGIC: &[u8] = b"RG1";

impl MasterKey {
    pub fn from_base64(s: &str) -> Result<MasterKey, SecretError> {
        let raw = B64.decode(s.trim()).map_err(|_| SecretError::Key("not valid base64".into()))?;
        let arr: [u8; 32] =
            raw.try_into().map_err(|_| SecretError::Key("must be exactly 32 bytes (base64-encoded)".into()))?;
        Ok(MasterKey(arr))
    }

    pub fn generate() -> Result<MasterKey, SecretError> {
        let mut k = [0u8; 32];
        rand_bytes(&mut k)?;
        Ok(MasterKey(k))
    }

    /// `RENEWGATE_MASTER_KEY_FILE`, else `RENEWGATE_MASTER_KEY`, else `<data dir>/master.key`
    /// (generated 0600 when absent).
    pub fn load(settings: &Settings) -> Result<MasterKey, SecretError> {
        if let Some(path) = &settings.master_key_file {
            let s = fs::read_to_string(path)
                .map_err(|e| SecretError::Key(format!("cannot read {}: {e}", path.display())))?;
            return MasterKey::from_base64(&s).map_err(|e| SecretError::Key(format!("{}: {e}", path.display())));
        }
        if let Some(s) = &settings.master_key {
            return MasterKey::from_base64(s).map_err(|e| SecretError::Key(format!("RENEWGATE_MASTER_KEY: {e}")));
        }
        let path = settings.data_dir.join("master.key");
        if path.exists() {
            let s = fs::read_to_string(&path)
                .map_err(|e| SecretError::Key(format!("cannot read {}: {e}", path.display())))?;
            return MasterKey::from_base64(&s).map_err(|e| SecretError::Key(format!("{}: {e}", path.display())));
        }
        let key = MasterKey::generate()?;
        write_private_file(&path, format!("{}\n", B64.encode(key.0)).as_bytes())
            .map_err(|e| SecretError::Key(format!("cannot write {}: {e}", path.display())))?;
        Ok(key)
    }

    /// A key for `purpose` derived from the master key (HMAC-SHA256): every instance sharing
    /// the master key derives the same one, and it reveals nothing about the master key.
    pub fn derive(&self, purpose: &str) -> Result<[u8; 32], SecretError> {
        let key = openssl::pkey::PKey::hmac(&self.0)?;
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)?;
        signer.update(purpose.as_bytes())?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&signer.sign_to_vec()?);
        Ok(out)
    }

    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; 12];
        rand_bytes(&mut nonce)?;
        let mut tag = [0u8; 16];
        let ct = encrypt_aead(Cipher::aes_256_gcm(), &self.0, Some(&nonce), purpose.as_bytes(), plaintext, &mut tag)?;
        let mut out = Vec::with_capacity(MAGIC.len() + 12 + ct.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < MAGIC.len() + 12 + 16 || &sealed[..MAGIC.len()] != MAGIC {
            return Err(SecretError::Open);
        }
        let body = &sealed[MAGIC.len()..];
        let (nonce, rest) = body.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        decrypt_aead(Cipher::aes_256_gcm(), &self.0, Some(nonce), purpose.as_bytes(), ct, tag)
            .map_err(|_| SecretError::Open)
    }
}

/// Creates (or replaces) a file readable by its owner only.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Random token bytes, base64 (a TPP-shaped access token is 16 bytes: 24 characters ending in `==`).
pub fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand_bytes(&mut b).expect("OpenSSL RNG");
    B64.encode(b)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(data))
}

/// Makes the data directory private at each start: the directory (and any below it) 0700, every
/// file in it 0600 — it holds password hashes, CSRs, sealed keys and the audit trail. Links are
/// not followed. Creates the directory when missing.
pub fn secure_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            secure_data_dir(&path)?;
        } else if meta.is_file() && meta.permissions().mode() & 0o777 != 0o600 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_purpose_binding() {
        let k = MasterKey::generate().unwrap();
        let s = k.seal("ca-key", b"secret").unwrap();
        assert_eq!(k.open("ca-key", &s).unwrap(), b"secret");
        assert!(k.open("other", &s).is_err());
        let k2 = MasterKey::generate().unwrap();
        assert!(matches!(k2.open("ca-key", &s), Err(SecretError::Open)));
    }

    #[test]
    fn tpp_shaped_tokens() {
        let t = random_b64(16);
        assert_eq!(t.len(), 24);
        assert!(t.ends_with("=="));
    }
}
