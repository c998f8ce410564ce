//! Secrets: schema-role passwords derived from the control secret, and the SCRAM verifier
//! sent to the server instead of the password itself (so no plaintext password ever appears
//! in a statement, a server log or our output).

/// The password of `role`: keyed blake3 of the role name under a key derived from the
/// control secret. Deterministic, so nothing per tenant needs storing.
pub fn role_password(secret: &[u8; 32], role: &str) -> String {
    let key = blake3::derive_key("wasmig 2026-11 schema role password", secret);
    format!("wm1_{}", blake3::keyed_hash(&key, role.as_bytes()).to_hex())
}

/// The ledger fields a MAC covers.
pub struct LedgerMacFields<'a> {
    /// Schema.
    pub schema: &'a str,
    /// Plugin.
    pub plugin: &'a str,
    /// Step id.
    pub step_id: &'a str,
    /// Step checksum.
    pub checksum: &'a str,
    /// Artifact checksum.
    pub artifact_checksum: &'a str,
    /// Plugin version.
    pub plugin_version: &'a str,
}

/// MAC of a ledger row: keyed blake3 (key derived from the control secret) over its
/// length-prefixed fields. Rows not written through a host-issued grant do not verify.
pub fn ledger_mac(secret: &[u8; 32], f: &LedgerMacFields<'_>) -> String {
    let key = blake3::derive_key("wasmig 2026-11 ledger row mac", secret);
    let mut h = blake3::Hasher::new_keyed(&key);
    for part in [
        f.schema,
        f.plugin,
        f.step_id,
        f.checksum,
        f.artifact_checksum,
        f.plugin_version,
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// A fresh one-time token for a step grant.
pub fn token() -> [u8; 32] {
    let mut t = [0u8; 32];
    // The OS RNG failing is not recoverable and never happens on Linux after boot.
    getrandom::fill(&mut t).expect("the operating system's random number generator failed");
    t
}

/// PBKDF2 iterations in schema-role SCRAM verifiers. Iterations slow down guessing of
/// human passwords; these passwords are 256-bit random keys that cannot be guessed, so
/// stretching would only cost every tenant login several milliseconds on both ends.
pub const SCRAM_ITERATIONS: u32 = 16;

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for `password` (RFC 5802/7677),
/// what `ALTER ROLE ... PASSWORD` stores; the server never sees the password itself.
pub fn scram_verifier(password: &str) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    type HmacSha256 = Hmac<Sha256>;
    let hmac = |key: &[u8], parts: &[&[u8]]| {
        let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes()
    };
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random number generator failed");
    // Hi(password, salt, i): PBKDF2-HMAC-SHA-256 with one output block.
    let mut u = hmac(password.as_bytes(), &[&salt, &1u32.to_be_bytes()]);
    let mut salted = u;
    for _ in 1..SCRAM_ITERATIONS {
        u = hmac(password.as_bytes(), &[&u]);
        for (s, x) in salted.iter_mut().zip(u.iter()) {
            *s ^= x;
        }
    }
    let client_key = hmac(&salted, &[b"Client Key"]);
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, &[b"Server Key"]);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_per_role_and_per_secret() {
        let a = role_password(&[1; 32], "db_acme");
        assert_eq!(a, role_password(&[1; 32], "db_acme"));
        assert_ne!(a, role_password(&[1; 32], "db_globex"));
        assert_ne!(a, role_password(&[2; 32], "db_acme"));
        let v = scram_verifier(&a);
        assert!(v.starts_with("SCRAM-SHA-256$16:"));
        assert!(!v.contains(&a));
        assert_ne!(v, scram_verifier(&a), "salted afresh each time");
    }
}
