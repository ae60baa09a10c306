//! The master key and sealing of secrets at rest (CA keys, service-generated private keys, store
//! passwords, ACME EAB keys; the columns are listed in [`crate::db::sealed::SEALED`]).
//!
//! Sealed blob layout: `b"RG2" || key_id(8) || nonce(12) || ciphertext || tag(16)`, AES-256-GCM,
//! with the header (`RG2` and the key id) and the purpose string as additional data, so a blob can
//! be moved neither to another purpose nor to another key id. The key id names the master key a
//! blob was sealed under (see [`MasterKey::key_id`]): a blob of another key fails with both ids,
//! and the master key can be rotated (`renewgate master-key rotate`). Blobs written before key ids
//! (`b"RG1" || nonce || ciphertext || tag`, the purpose alone as additional data) still open.
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
pub struct MasterKey {
    key: [u8; 32],
    /// [`MasterKey::key_id`], computed once.
    id: KeyId,
}

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
    #[error("a stored secret is sealed under master key {sealed}; the configured master key is {configured}")]
    WrongKey { sealed: KeyId, configured: KeyId },
    #[error("a stored secret does not authenticate under the master key it names: damaged, or moved from elsewhere")]
    Corrupt,
    #[error("a stored secret is not a sealed blob (unknown format)")]
    Format,
    #[error("crypto: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// Legacy blobs: no key id.
const MAGIC_V1: &[u8] = b"RG1";
/// Blobs that name their master key.
const MAGIC_V2: &[u8] = b"RG2";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A master key's public name: the first 8 bytes of a key derived from it (HMAC-SHA256 of a fixed
/// label), printed as 16 hex digits. It tells keys apart and reveals nothing about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KeyId::LEN]);

impl KeyId {
    pub const LEN: usize = 8;
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The key id a sealed blob names: `None` for a legacy (`RG1`) blob or something that is no blob.
pub fn sealed_key_id(sealed: &[u8]) -> Option<KeyId> {
    if sealed.len() < MAGIC_V2.len() + KeyId::LEN || &sealed[..MAGIC_V2.len()] != MAGIC_V2 {
        return None;
    }
    let mut id = [0u8; KeyId::LEN];
    id.copy_from_slice(&sealed[MAGIC_V2.len()..MAGIC_V2.len() + KeyId::LEN]);
    Some(KeyId(id))
}

/// Where the master key came from (see [`MasterKey::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `RENEWGATE_MASTER_KEY_FILE` (or `master_key_file` in the configuration file).
    File(std::path::PathBuf),
    /// `RENEWGATE_MASTER_KEY`.
    Env,
    /// `<data dir>/master.key`, the default.
    DefaultFile(std::path::PathBuf),
}

impl MasterKey {
    pub fn from_base64(s: &str) -> Result<MasterKey, SecretError> {
        let raw = B64.decode(s.trim()).map_err(|_| SecretError::Key("not valid base64".into()))?;
        let arr: [u8; 32] =
            raw.try_into().map_err(|_| SecretError::Key("must be exactly 32 bytes (base64-encoded)".into()))?;
        MasterKey::from_bytes(arr)
    }

    pub fn generate() -> Result<MasterKey, SecretError> {
        let mut k = [0u8; 32];
        rand_bytes(&mut k)?;
        MasterKey::from_bytes(k)
    }

    fn from_bytes(key: [u8; 32]) -> Result<MasterKey, SecretError> {
        let mut k = MasterKey { key, id: KeyId([0; KeyId::LEN]) };
        let derived = k.derive(KEY_ID_LABEL)?;
        k.id.0.copy_from_slice(&derived[..KeyId::LEN]);
        Ok(k)
    }

    /// Reads a key file: base64 of 32 bytes (surrounding white space ignored).
    pub fn from_file(path: &Path) -> Result<MasterKey, SecretError> {
        let s =
            fs::read_to_string(path).map_err(|e| SecretError::Key(format!("cannot read {}: {e}", path.display())))?;
        MasterKey::from_base64(&s).map_err(|e| SecretError::Key(format!("{}: {e}", path.display())))
    }

    /// The key file's contents: base64 and a newline.
    pub fn to_file_contents(&self) -> String {
        format!("{}\n", B64.encode(self.key))
    }

    /// `RENEWGATE_MASTER_KEY_FILE`, else `RENEWGATE_MASTER_KEY`, else `<data dir>/master.key`
    /// (generated 0600 when absent).
    pub fn load(settings: &Settings) -> Result<MasterKey, SecretError> {
        match MasterKey::load_existing(settings)? {
            Some((key, _)) => Ok(key),
            None => {
                let path = settings.data_dir.join("master.key");
                let key = MasterKey::generate()?;
                write_private_file(&path, key.to_file_contents().as_bytes())
                    .map_err(|e| SecretError::Key(format!("cannot write {}: {e}", path.display())))?;
                Ok(key)
            }
        }
    }

    /// The configured key and where it came from, as [`MasterKey::load`] finds it, without
    /// generating one: `None` when no key is configured and `<data dir>/master.key` is absent.
    pub fn load_existing(settings: &Settings) -> Result<Option<(MasterKey, KeySource)>, SecretError> {
        if let Some(path) = &settings.master_key_file {
            return Ok(Some((MasterKey::from_file(path)?, KeySource::File(path.clone()))));
        }
        if let Some(s) = &settings.master_key {
            let key = MasterKey::from_base64(s).map_err(|e| SecretError::Key(format!("RENEWGATE_MASTER_KEY: {e}")))?;
            return Ok(Some((key, KeySource::Env)));
        }
        let path = settings.data_dir.join("master.key");
        if path.exists() {
            return Ok(Some((MasterKey::from_file(&path)?, KeySource::DefaultFile(path))));
        }
        Ok(None)
    }

    /// This key's id (written into every blob it seals, and recorded in the database): the first
    /// 8 bytes of [`MasterKey::derive`] for a fixed label, a one-way function of the key.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// A key for `purpose` derived from the master key (HMAC-SHA256): every instance sharing
    /// the master key derives the same one, and it reveals nothing about the master key. Derived
    /// keys change when the master key is rotated (ACME's stateless nonces are refused once).
    pub fn derive(&self, purpose: &str) -> Result<[u8; 32], SecretError> {
        let key = openssl::pkey::PKey::hmac(&self.key)?;
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key)?;
        signer.update(purpose.as_bytes())?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&signer.sign_to_vec()?);
        Ok(out)
    }

    /// Seals `plaintext` for `purpose` in the current format (`RG2`, naming this key's id).
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand_bytes(&mut nonce)?;
        let mut out = Vec::with_capacity(MAGIC_V2.len() + KeyId::LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(MAGIC_V2);
        out.extend_from_slice(&self.id.0);
        let aad = [&out[..], purpose.as_bytes()].concat();
        let mut tag = [0u8; TAG_LEN];
        let ct = encrypt_aead(Cipher::aes_256_gcm(), &self.key, Some(&nonce), &aad, plaintext, &mut tag)?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a blob sealed for `purpose`: the current format (its key id must be this key's) or
    /// the legacy one (no key id).
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        let header = MAGIC_V2.len() + KeyId::LEN;
        if let Some(id) = sealed_key_id(sealed) {
            let mine = self.id;
            if id != mine {
                return Err(SecretError::WrongKey { sealed: id, configured: mine });
            }
            if sealed.len() < header + NONCE_LEN + TAG_LEN {
                return Err(SecretError::Format);
            }
            let aad = [&sealed[..header], purpose.as_bytes()].concat();
            // The right key: a failure is damage (or a blob moved to another purpose).
            return self.decrypt(&aad, &sealed[header..]).map_err(|_| SecretError::Corrupt);
        }
        if sealed.len() >= MAGIC_V1.len() + NONCE_LEN + TAG_LEN && &sealed[..MAGIC_V1.len()] == MAGIC_V1 {
            return self.decrypt(purpose.as_bytes(), &sealed[MAGIC_V1.len()..]);
        }
        Err(SecretError::Format)
    }

    /// `nonce || ciphertext || tag` under `aad`.
    fn decrypt(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>, SecretError> {
        let (nonce, rest) = body.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        decrypt_aead(Cipher::aes_256_gcm(), &self.key, Some(nonce), aad, ct, tag).map_err(|_| SecretError::Open)
    }
}

/// The label [`MasterKey::key_id`] derives the id from (distinct from every other derived key's).
const KEY_ID_LABEL: &str = "renewgate-master-key-id";

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
#[expect(clippy::expect_used, reason = "a failing OpenSSL RNG leaves nothing safe to do but stop")]
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
        assert!(matches!(k2.open("ca-key", &s), Err(SecretError::WrongKey { .. })));
    }

    /// A blob in the legacy format, as the build before key ids wrote it.
    fn seal_v1(k: &MasterKey, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = [7u8; NONCE_LEN];
        let mut tag = [0u8; TAG_LEN];
        let ct =
            encrypt_aead(Cipher::aes_256_gcm(), &k.key, Some(&nonce), purpose.as_bytes(), plaintext, &mut tag).unwrap();
        [MAGIC_V1, &nonce[..], &ct, &tag[..]].concat()
    }

    #[test]
    fn blobs_name_their_key_and_legacy_blobs_still_open() {
        let k = MasterKey::generate().unwrap();
        let s = k.seal("certificate-key", b"pkcs8").unwrap();
        assert_eq!(&s[..3], b"RG2");
        assert_eq!(sealed_key_id(&s), Some(k.key_id()));
        assert_eq!(s.len(), 3 + 8 + 12 + 5 + 16);
        // Legacy RG1: no key id, still opens (and keeps its purpose binding).
        let v1 = seal_v1(&k, "certificate-key", b"old secret");
        assert_eq!(sealed_key_id(&v1), None);
        assert_eq!(k.open("certificate-key", &v1).unwrap(), b"old secret");
        assert!(matches!(k.open("ca-key", &v1), Err(SecretError::Open)));
        let other = MasterKey::generate().unwrap();
        assert!(matches!(other.open("certificate-key", &v1), Err(SecretError::Open)));
        // Another key's blob: an error naming both ids.
        let e = other.open("certificate-key", &s).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&k.key_id().to_string()) && text.contains(&other.key_id().to_string()), "{text}");
        assert!(
            matches!(e, SecretError::WrongKey { sealed, configured } if sealed == k.key_id() && configured == other.key_id())
        );
        // A relabelled blob (another key's ciphertext under this key's id), a damaged one, or one
        // moved to another purpose fails authentication.
        let mut forged = other.seal("certificate-key", b"x").unwrap();
        forged[3..11].copy_from_slice(&k.key_id().0);
        assert!(matches!(k.open("certificate-key", &forged), Err(SecretError::Corrupt)));
        let mut damaged = s.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(matches!(k.open("certificate-key", &damaged), Err(SecretError::Corrupt)));
        assert!(matches!(k.open("ca-key", &s), Err(SecretError::Corrupt)));
        // Neither format, or cut short.
        assert!(matches!(k.open("certificate-key", b"nonsense"), Err(SecretError::Format)));
        assert!(matches!(k.open("certificate-key", &s[..20]), Err(SecretError::Format)));
        assert!(matches!(k.open("certificate-key", b""), Err(SecretError::Format)));
    }

    #[test]
    fn key_ids_are_stable_distinct_and_not_the_key() {
        let k = MasterKey::generate().unwrap();
        let same = MasterKey::from_base64(&k.to_file_contents()).unwrap();
        assert_eq!(k.key_id(), same.key_id());
        assert_ne!(k.key_id(), MasterKey::generate().unwrap().key_id());
        let hex_id = k.key_id().to_string();
        assert_eq!(hex_id.len(), 16);
        assert_eq!(hex_id, hex::encode(k.key_id().0));
        assert!(!hex::encode(k.key).contains(&hex_id));
        // Not a prefix of any other derived key (the ACME nonce key among them).
        assert_ne!(&k.derive("acme-nonce-v1").unwrap()[..8], &k.key_id().0);
    }

    #[test]
    fn tpp_shaped_tokens() {
        let t = random_b64(16);
        assert_eq!(t.len(), 24);
        assert!(t.ends_with("=="));
    }
}
