//! Secrets: schema-role passwords derived from the control secret, and the SCRAM verifier
//! sent to the server instead of the password itself (so no plaintext password ever appears
//! in a statement, a server log or our output).

/// The password of `role`: keyed blake3 of the role name under a key derived from the
/// control secret. Deterministic, so nothing per tenant needs storing.
pub fn role_password(secret: &[u8; 32], role: &str) -> String {
    let key = blake3::derive_key("wasmig 2026-11 schema role password", secret);
    format!("wm1_{}", blake3::keyed_hash(&key, role.as_bytes()).to_hex())
}

/// MAC of a ledger row: keyed blake3 (key derived from the control secret) over its
/// length-prefixed fields. Rows not written through a host-issued grant do not verify.
pub fn ledger_mac(secret: &[u8; 32], f: &crate::control::LedgerMacFields<'_>) -> String {
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

/// `SCRAM-SHA-256$...` verifier for `password` (what `ALTER ROLE ... PASSWORD` stores).
pub fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
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
        assert!(v.starts_with("SCRAM-SHA-256$"));
        assert!(!v.contains(&a));
    }
}
