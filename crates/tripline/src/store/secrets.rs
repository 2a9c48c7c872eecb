//! Tokens are encrypted at rest (ChaCha20-Poly1305) with a key kept apart from the
//! database: `TRIPLINE_SECRET_KEY` (32 bytes, base64), or a key file beside the
//! database created on first use, readable by its owner only.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::{Result, StoreError};

const PREFIX: &str = "v1:";

/// The key file of the database at `database`: its name with `.key` added
/// (`tripline.db.key`), so that no database name can be its own key file. A key file
/// named the earlier way (`tripline.key`) is moved to the new name.
pub(crate) fn key_file(database: &Path) -> std::path::PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".key");
    let key = std::path::PathBuf::from(name);
    let earlier = database.with_extension("key");
    if !key.exists()
        && earlier != database
        && earlier.is_file()
        && let Err(e) = std::fs::rename(&earlier, &key)
    {
        tracing::warn!("moving the key file {} to {}: {e}", earlier.display(), key.display());
        return earlier;
    }
    key
}

pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Secrets(format!("no randomness: {e}")))?;
    Ok(bytes)
}

impl SecretBox {
    pub fn from_key(key: &[u8]) -> Result<SecretBox> {
        if key.len() != 32 {
            return Err(StoreError::Secrets(format!("the secret key must be 32 bytes, not {}", key.len())));
        }
        Ok(SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(key)) })
    }

    /// The key from `TRIPLINE_SECRET_KEY` alone: a shared database is opened by
    /// several nodes, which must all hold the same key (no file is created).
    pub fn from_env() -> Result<SecretBox> {
        let text = std::env::var("TRIPLINE_SECRET_KEY").map_err(|_| {
            StoreError::Secrets(
                "set TRIPLINE_SECRET_KEY (32 random bytes in base64, e.g. from `openssl rand -base64 32`), \
                 the same on every node: tokens are encrypted with it"
                    .into(),
            )
        })?;
        let key = STANDARD
            .decode(text.trim())
            .map_err(|_| StoreError::Secrets("TRIPLINE_SECRET_KEY is not base64".into()))?;
        SecretBox::from_key(&key)
    }

    /// The key an SQLite database's tokens were sealed with: its key file when there
    /// is one (whatever `TRIPLINE_SECRET_KEY` says now), else `TRIPLINE_SECRET_KEY`.
    pub fn of_sqlite(database: &Path) -> Result<SecretBox> {
        let file = key_file(database);
        if file.is_file() {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| StoreError::Secrets(format!("secret key file {}: {e}", file.display())))?;
            let key = STANDARD
                .decode(text.trim())
                .map_err(|_| StoreError::Secrets(format!("{} is not base64", file.display())))?;
            return SecretBox::from_key(&key);
        }
        SecretBox::from_env()
    }

    /// The key from `TRIPLINE_SECRET_KEY`, else from (or newly into) `key_file`.
    pub fn load(key_file: &Path) -> Result<SecretBox> {
        let decode = |text: &str, from: &str| {
            STANDARD.decode(text.trim()).map_err(|_| StoreError::Secrets(format!("{from} is not base64")))
        };
        if let Ok(text) = std::env::var("TRIPLINE_SECRET_KEY") {
            return SecretBox::from_key(&decode(&text, "TRIPLINE_SECRET_KEY")?);
        }
        let io = |e: std::io::Error| StoreError::Secrets(format!("secret key file {}: {e}", key_file.display()));
        if key_file.exists() {
            #[cfg(unix)]
            if let Ok(meta) = std::fs::metadata(key_file) {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!("the secret key file {} can be read by others: chmod 600 it", key_file.display());
                }
            }
            let text = std::fs::read_to_string(key_file).map_err(io)?;
            return SecretBox::from_key(&decode(&text, &key_file.display().to_string())?);
        }
        let key: [u8; 32] = random()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(key_file).map_err(io)?;
        std::io::Write::write_all(&mut file, STANDARD.encode(key).as_bytes()).map_err(io)?;
        SecretBox::from_key(&key)
    }

    pub fn seal(&self, plain: &str) -> Result<String> {
        let nonce: [u8; 12] = random()?;
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| StoreError::Secrets("encryption failed".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(bytes)))
    }

    pub fn open(&self, sealed: &str) -> Result<String> {
        let wrong =
            || StoreError::Secrets("a stored token does not decrypt: wrong TRIPLINE_SECRET_KEY or key file?".into());
        let bytes = sealed.strip_prefix(PREFIX).and_then(|b| STANDARD.decode(b).ok()).ok_or_else(wrong)?;
        if bytes.len() < 12 {
            return Err(wrong());
        }
        let plain = self.cipher.decrypt(Nonce::from_slice(&bytes[..12]), &bytes[12..]).map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_the_right_key_only() {
        let a = SecretBox::from_key(&[1u8; 32]).expect("key");
        let b = SecretBox::from_key(&[2u8; 32]).expect("key");
        let sealed = a.seal("5Aep861secret").expect("seal");
        assert!(!sealed.contains("5Aep861"));
        assert_ne!(a.seal("5Aep861secret").expect("seal"), sealed, "fresh nonce each time");
        assert_eq!(a.open(&sealed).expect("open"), "5Aep861secret");
        assert!(b.open(&sealed).is_err());
        assert!(a.open("plain").is_err());
        assert!(SecretBox::from_key(&[0u8; 16]).is_err());
    }

    #[test]
    fn key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.key");
        let first = SecretBox::load(&path).expect("created");
        let sealed = first.seal("x").expect("seal");
        let again = SecretBox::load(&path).expect("read");
        assert_eq!(again.open(&sealed).expect("open"), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        }
    }
}
