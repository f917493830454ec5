//! Plugin signatures in minisign's format, so vendors sign with the
//! standard `minisign -S` tool: `FILE.minisig` beside `FILE`, checked
//! against public keys the operator trusts (`stackhost keys trust`),
//! which live as minisign `.pub` files under `<config>/trusted-keys/`.
//!
//! A minisign signature holds an Ed25519 signature of the file (or, for
//! the default `ED` algorithm, of its BLAKE2b-512 hash) and a global
//! signature over that signature plus the trusted comment, so the comment
//! cannot be altered either.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b512, Digest as _};
use ed25519_dalek::{Signature as EdSignature, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a key or signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("not a minisign public key: {0}")]
    BadKey(String),
    #[error("not a minisign signature: {0}")]
    BadSignature(String),
    #[error(
        "signed by key {0}, which is not trusted (trust the vendor's key with `stackhost keys trust FILE.pub`)"
    )]
    UntrustedKey(String),
    #[error(
        "the signature by key {0} does not match the file: the file or its signature was altered"
    )]
    Mismatch(String),
    #[error("the trusted comment of the signature by key {0} was altered")]
    CommentAltered(String),
    #[error("{0}")]
    Io(String),
}

/// A minisign public key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    id: [u8; 8],
    key: VerifyingKey,
    /// The `untrusted comment:` line, for display.
    pub comment: String,
}

impl PublicKey {
    /// Parse the two-line text of a `minisign.pub` file (or just its
    /// base64 line).
    pub fn parse(text: &str) -> Result<PublicKey, SignError> {
        let bad = |m: &str| SignError::BadKey(m.into());
        let mut comment = String::new();
        let mut b64 = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(c) = line.strip_prefix("untrusted comment:") {
                comment = c.trim().to_string();
            } else if b64.is_none() {
                b64 = Some(line);
            } else {
                return Err(bad("more than one key line"));
            }
        }
        let raw = B64
            .decode(b64.ok_or_else(|| bad("no key line"))?)
            .map_err(|e| bad(&format!("the key line is not base64 ({e})")))?;
        if raw.len() != 42 {
            return Err(bad(&format!("the key is {} bytes, not 42", raw.len())));
        }
        if &raw[..2] != b"Ed" {
            return Err(bad("the key's algorithm is not Ed25519"));
        }
        let id: [u8; 8] = raw[2..10].try_into().expect("8 bytes");
        let bytes: [u8; 32] = raw[10..].try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a valid Ed25519 key"))?;
        Ok(PublicKey { id, key, comment })
    }

    /// The key id as minisign prints it (16 upper-case hex digits).
    pub fn id(&self) -> String {
        key_id(&self.id)
    }

    /// The key in minisign's `.pub` format.
    pub fn to_file_text(&self) -> String {
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(self.key.as_bytes());
        let comment = if self.comment.is_empty() {
            format!("minisign public key {}", self.id())
        } else {
            self.comment.clone()
        };
        format!("untrusted comment: {comment}\n{}\n", B64.encode(raw))
    }
}

/// minisign prints key ids as the little-endian number of their 8 bytes.
fn key_id(id: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*id))
}

/// A key this home signs development builds with (`plugin dev`): an
/// Ed25519 key kept, mode 0600, in `<config>/dev-key`, trusted in this
/// home only. A vendor's release signing stays minisign's, explicit and
/// separate.
pub struct DevKey {
    id: [u8; 8],
    key: ed25519_dalek::SigningKey,
}

impl DevKey {
    /// The key in `config`, made on first use; true when it was new.
    pub fn load_or_create(config: &Path) -> Result<(DevKey, bool), SignError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let path = config.join("dev-key");
        match std::fs::read_to_string(&path) {
            Ok(text) => return DevKey::parse(&text).map(|k| (k, false)),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&path, e)),
            Err(_) => {}
        }
        let mut raw = [0u8; 40];
        rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| SignError::Io(format!("no randomness for a key: {e}")))?;
        let text = format!(
            "# stackhost development signing key: trusted in this home only\n{}\n",
            hex::encode(raw)
        );
        std::fs::create_dir_all(config).map_err(|e| io_err(config, e))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| io_err(&path, e))?;
        DevKey::parse(&text).map(|k| (k, true))
    }

    fn parse(text: &str) -> Result<DevKey, SignError> {
        let bad = || SignError::BadKey("the development key file is damaged".into());
        let line = text.lines().find(|l| !l.starts_with('#')).ok_or_else(bad)?;
        let raw = hex::decode(line.trim()).map_err(|_| bad())?;
        let raw: [u8; 40] = raw.try_into().map_err(|_| bad())?;
        let seed: [u8; 32] = raw[8..].try_into().expect("32 bytes");
        Ok(DevKey {
            id: raw[..8].try_into().expect("8 bytes"),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Its public key, as `keys trust` takes it.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
            comment: format!("stackhost development key {}", key_id(&self.id)),
        }
    }

    /// A minisign signature (prehashed, `ED`) of `data`, as the text of a
    /// `.minisig` file, with `trusted_comment`.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        use ed25519_dalek::Signer as _;
        let signature = self.key.sign(&Blake2b512::digest(data)).to_bytes();
        let mut raw = b"ED".to_vec();
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&signature);
        let mut global_msg = signature.to_vec();
        global_msg.extend_from_slice(trusted_comment.as_bytes());
        let global = self.key.sign(&global_msg).to_bytes();
        format!(
            "untrusted comment: signature from stackhost development key {}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            key_id(&self.id),
            B64.encode(raw),
            B64.encode(global)
        )
    }
}

/// A parsed `.minisig` file.
#[derive(Debug, Clone)]
pub struct Signature {
    key_id: [u8; 8],
    /// `ED`: the signature covers the file's BLAKE2b-512 hash.
    prehashed: bool,
    signature: [u8; 64],
    trusted_comment: String,
    global: [u8; 64],
}

impl Signature {
    pub fn parse(text: &str) -> Result<Signature, SignError> {
        let bad = |m: &str| SignError::BadSignature(m.into());
        let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
        let first = lines.next().ok_or_else(|| bad("the file is empty"))?;
        if !first.starts_with("untrusted comment:") {
            return Err(bad("the first line is not an untrusted comment"));
        }
        let sig_line = lines.next().ok_or_else(|| bad("no signature line"))?;
        let trusted = lines
            .next()
            .and_then(|l| l.strip_prefix("trusted comment: "))
            .ok_or_else(|| bad("no trusted comment line"))?;
        let global_line = lines
            .next()
            .ok_or_else(|| bad("no global signature line"))?;
        let raw = B64
            .decode(sig_line.trim())
            .map_err(|e| bad(&format!("the signature line is not base64 ({e})")))?;
        if raw.len() != 74 {
            return Err(bad(&format!(
                "the signature is {} bytes, not 74",
                raw.len()
            )));
        }
        let prehashed = match &raw[..2] {
            b"ED" => true,
            b"Ed" => false,
            _ => return Err(bad("unknown signature algorithm")),
        };
        let global = B64
            .decode(global_line.trim())
            .map_err(|e| bad(&format!("the global signature is not base64 ({e})")))?;
        Ok(Signature {
            key_id: raw[2..10].try_into().expect("8 bytes"),
            prehashed,
            signature: raw[10..].try_into().expect("64 bytes"),
            trusted_comment: trusted.to_string(),
            global: global
                .try_into()
                .map_err(|_| bad("the global signature is not 64 bytes"))?,
        })
    }

    /// The id of the key that made this signature.
    pub fn key_id(&self) -> String {
        key_id(&self.key_id)
    }

    /// Verify `data` with `key`, which must be the signing key.
    pub fn verify(&self, key: &PublicKey, data: &[u8]) -> Result<(), SignError> {
        let id = self.key_id();
        if key.id != self.key_id {
            return Err(SignError::UntrustedKey(id));
        }
        let signature = EdSignature::from_bytes(&self.signature);
        let checked = if self.prehashed {
            key.key.verify(&Blake2b512::digest(data), &signature)
        } else {
            key.key.verify(data, &signature)
        };
        checked.map_err(|_| SignError::Mismatch(id.clone()))?;
        let mut global_msg = self.signature.to_vec();
        global_msg.extend_from_slice(self.trusted_comment.as_bytes());
        key.key
            .verify(&global_msg, &EdSignature::from_bytes(&self.global))
            .map_err(|_| SignError::CommentAltered(id))
    }
}

/// Who signed a plugin, as kept with the installed plugin and shown by
/// `plugin info`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    /// The signing key's id.
    pub key_id: String,
    /// The trusted key's comment (who the operator trusted it as).
    pub key_comment: String,
    /// The signature's trusted comment (what the vendor signed it as).
    pub trusted_comment: String,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {} ({})",
            self.key_id,
            shown_comment(&self.trusted_comment)
        )
    }
}

/// A signature's comment for display: minisign's default trusted comment
/// separates its fields with tabs (`timestamp:…<TAB>file:…<TAB>hashed`),
/// which a terminal would turn into gaps; they read as `, `.
pub fn shown_comment(comment: &str) -> String {
    comment.split('\t').collect::<Vec<_>>().join(", ")
}

/// The operator's trusted keys: `<config>/trusted-keys/ID.pub`.
pub struct TrustedKeys {
    dir: PathBuf,
}

impl TrustedKeys {
    pub fn new(config: &Path) -> TrustedKeys {
        TrustedKeys {
            dir: config.join("trusted-keys"),
        }
    }

    /// Every trusted key, by id.
    pub fn list(&self) -> Result<Vec<PublicKey>, SignError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir, e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io_err(&self.dir, e))?.path();
            if path.extension().is_some_and(|e| e == "pub") {
                let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
                let key = PublicKey::parse(&text)
                    .map_err(|e| SignError::Io(format!("trusted key {}: {e}", path.display())))?;
                keys.push(key);
            }
        }
        keys.sort_by_key(|k| k.id());
        Ok(keys)
    }

    /// Trust the key in `text`; returns it (and whether it was new).
    pub fn trust(&self, text: &str) -> Result<(PublicKey, bool), SignError> {
        let key = PublicKey::parse(text)?;
        let path = self.dir.join(format!("{}.pub", key.id()));
        let new = !path.exists();
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        let tmp = self.dir.join(format!(".{}.pub.tmp", key.id()));
        std::fs::write(&tmp, key.to_file_text()).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        Ok((key, new))
    }

    /// Stop trusting key `id`; false if it was not trusted.
    pub fn remove(&self, id: &str) -> Result<bool, SignError> {
        let id = id.trim().to_ascii_uppercase();
        if id.len() != 16 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SignError::BadKey(format!(
                "`{id}` is not a key id (16 hex digits, as `stackhost keys list` shows)"
            )));
        }
        let path = self.dir.join(format!("{id}.pub"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Verify `data` against the signature text `minisig` with the
    /// trusted keys, and say who signed it.
    pub fn verify(&self, data: &[u8], minisig: &str) -> Result<Signer, SignError> {
        let sig = Signature::parse(minisig)?;
        let key = self
            .list()?
            .into_iter()
            .find(|k| k.id == sig.key_id)
            .ok_or_else(|| SignError::UntrustedKey(sig.key_id()))?;
        sig.verify(&key, data)?;
        Ok(Signer {
            key_id: key.id(),
            key_comment: key.comment.clone(),
            trusted_comment: sig.trusted_comment.clone(),
        })
    }
}

fn io_err(path: &Path, e: std::io::Error) -> SignError {
    SignError::Io(format!("{}: {e}", path.display()))
}

/// Where the minisign signature of `file` is looked for: `FILE.minisig`
/// beside it.
pub fn signature_path(file: &std::path::Path) -> std::path::PathBuf {
    let mut sig_path = file.as_os_str().to_owned();
    sig_path.push(".minisig");
    std::path::PathBuf::from(sig_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with minisign 0.11: `minisign -G -W`, then `minisign -S -m f
    // -t "trusted: vendor"` over a file holding "hello\n".
    const PUB: &str = "untrusted comment: minisign public key DA681CFFEB2BC438\n\
                       RWQ4xCvr/xxo2iMI4B3gld4dAV5BWiLzpzMmLA0+i6Sdt4yxe9ChWYKR\n";
    const SIG: &str = "untrusted comment: signature from minisign secret key\n\
RUQ4xCvr/xxo2nulNBqilkX+f0vjr0bDzshnzCx57XdD05tW63k2WutrYm81yC98lftF+8fgTPQDibTpcJmdw26qIr5PIiEWxAo=\n\
trusted comment: trusted: vendor\n\
7FYkYoguJCfvsx5o9JP+k30FIAiH3aW1sTesBxLF5NVdzbCNHeKot4DHpo8wKDwMXJaw4hwYV5S51fdiQWSGBA==\n";

    #[test]
    fn a_development_key_signs_what_trusted_keys_verify() {
        let home = tempfile::tempdir().unwrap();
        let (key, new) = DevKey::load_or_create(home.path()).unwrap();
        assert!(new);
        let (again, new) = DevKey::load_or_create(home.path()).unwrap();
        assert!(!new);
        assert_eq!(again.public().id(), key.public().id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join("dev-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let keys = TrustedKeys::new(home.path());
        keys.trust(&key.public().to_file_text()).unwrap();
        let sig = key.sign(b"component bytes", "dev build: p 0.1.0");
        let signer = keys.verify(b"component bytes", &sig).unwrap();
        assert_eq!(signer.key_id, key.public().id());
        assert_eq!(signer.trusted_comment, "dev build: p 0.1.0");
        assert!(matches!(
            keys.verify(b"other bytes", &sig),
            Err(SignError::Mismatch(_))
        ));
    }

    #[test]
    fn a_default_trusted_comment_reads_without_tabs() {
        assert_eq!(
            shown_comment("timestamp:1700000000\tfile:x.wasm\thashed"),
            "timestamp:1700000000, file:x.wasm, hashed"
        );
        assert_eq!(
            shown_comment("test vendor: x 1.0.0"),
            "test vendor: x 1.0.0"
        );
    }

    #[test]
    fn verifies_minisign_output() {
        let key = PublicKey::parse(PUB).unwrap();
        assert_eq!(key.id(), "DA681CFFEB2BC438");
        let sig = Signature::parse(SIG).unwrap();
        assert_eq!(sig.key_id(), "DA681CFFEB2BC438");
        sig.verify(&key, b"hello\n").unwrap();
        assert!(matches!(
            sig.verify(&key, b"hellp\n"),
            Err(SignError::Mismatch(_))
        ));
        let altered = SIG.replace("trusted: vendor", "trusted: someone else");
        let sig = Signature::parse(&altered).unwrap();
        assert!(matches!(
            sig.verify(&key, b"hello\n"),
            Err(SignError::CommentAltered(_))
        ));
    }

    #[test]
    fn key_round_trips() {
        let key = PublicKey::parse(PUB).unwrap();
        let again = PublicKey::parse(&key.to_file_text()).unwrap();
        assert_eq!(again.id(), key.id());
        assert!(PublicKey::parse("untrusted comment: x\nnot base64!\n").is_err());
        assert!(Signature::parse("hello").is_err());
    }
}
