//! Endpoint identities: the secret key file each endpoint is built from, and
//! the endpoint ids users write into TunnelBindings and `--allow-gateway`.

use std::{io::Write, path::Path};

use iroh::{PublicKey, SecretKey};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the secret key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("creating the secret key file {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("the secret key file {path} is malformed: {len} bytes, want 32 raw bytes or 64 hex digits (it is left as it is)")]
    Malformed { path: String, len: usize },
}

/// The secret key in `path`; when there is no such file, a new random key is
/// written there first (mode 0600, never overwriting). A file that exists but
/// is not a key is an error: it may be someone's key in another format.
pub fn load_or_create(path: &Path) -> Result<SecretKey, KeyError> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => parse_secret(&bytes).ok_or(KeyError::Malformed { path: name, len: bytes.len() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let create = |source| KeyError::Create { path: name.clone(), source };
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(create)?;
            file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(create)?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(source) => Err(KeyError::Read { path: name, source }),
    }
}

/// 32 raw bytes, or 64 hex digits (as a Kubernetes Secret made with `--from-literal` holds it).
fn parse_secret(bytes: &[u8]) -> Option<SecretKey> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(SecretKey::from_bytes(&raw));
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut raw = [0u8; 32];
    for (i, out) in raw.iter_mut().enumerate() {
        *out = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(SecretKey::from_bytes(&raw))
}

/// An endpoint id in any encoding iroh prints: 64 hex digits, base32 or z-base-32.
pub fn parse_endpoint_id(text: &str) -> Result<PublicKey, String> {
    let text = text.trim();
    text.parse::<PublicKey>().or_else(|_| PublicKey::from_z32(text)).map_err(|e| format!("{text:?} is not an endpoint id: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_file_is_created_private_and_then_read_back_as_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let first = load_or_create(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(load_or_create(&path).unwrap().public(), first.public());
    }

    #[test]
    fn a_malformed_key_file_is_an_error_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, b"not a key").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("malformed") && err.contains("9 bytes"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
    }

    #[test]
    fn hex_keys_and_every_id_encoding_parse() {
        let key = SecretKey::from_bytes(&[7; 32]);
        let hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_secret(format!("{hex}\n").as_bytes()).unwrap().public(), key.public());
        let id = key.public();
        assert_eq!(parse_endpoint_id(&id.to_string()).unwrap(), id);
        assert_eq!(parse_endpoint_id(&id.to_z32()).unwrap(), id);
        assert!(parse_endpoint_id("zz").is_err());
    }
}
