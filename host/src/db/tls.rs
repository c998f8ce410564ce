//! TLS to PostgreSQL, with libpq's meaning of `sslmode` and `sslrootcert`: read from the URL
//! or key/value string (else `PGSSLMODE` / `PGSSLROOTCERT`), validated before any I/O, and
//! turned into a rustls connector used by every session of a run (the operator's and each
//! schema role's).
//!
//! | sslmode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | when the server offers TLS | only if `sslrootcert` is given |
//! | `require` | always | only if `sslrootcert` is given (chain, as libpq does) |
//! | `verify-ca` | always | chain up to a trusted root |
//! | `verify-full` | always | chain, and the host name (or IP) the certificate names |
//!
//! Trusted roots: `sslrootcert=<PEM file>`, `sslrootcert=system` (the system's store), else
//! `~/.postgresql/root.crt` as libpq does; `verify-*` without any of them is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it (wasmig tries TLS first, as for `prefer`).
    Allow,
    /// TLS when the server offers it.
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS, with the server's certificate chain checked.
    VerifyCa,
    /// TLS, with the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq `sslmode` value.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    /// The libpq name.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The driver's own mode: it negotiates, the connector decides what is checked.
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self {
            SslMode::Disable => D::Disable,
            SslMode::Allow | SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more certificates.
    File(PathBuf),
    /// The operating system's trusted roots.
    System,
}

/// Validated TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The mode.
    pub mode: SslMode,
    /// Roots named by `sslrootcert`, if any.
    pub root_cert: Option<RootCert>,
}

impl TlsSettings {
    /// From the values found in the URL, else in the environment.
    pub fn new(mode: Option<&str>, root_cert: Option<&str>) -> Result<Self, String> {
        let mode = match mode {
            Some(m) => SslMode::parse(m)?,
            None => SslMode::Prefer,
        };
        let root_cert = root_cert.filter(|r| !r.is_empty()).map(|r| {
            if r == "system" {
                RootCert::System
            } else {
                RootCert::File(PathBuf::from(r))
            }
        });
        Ok(TlsSettings { mode, root_cert })
    }

    /// The connector, or `None` for `sslmode=disable`. Reads the root certificates, so a
    /// missing or unreadable file is reported here, before any connection.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, String> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verify = matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull);
        let roots = match (&self.root_cert, verify) {
            (Some(r), _) => Some(load_roots(r)?),
            (None, true) => {
                let default = std::env::var_os("HOME")
                    .map(|h| Path::new(&h).join(".postgresql/root.crt"))
                    .filter(|p| p.exists());
                match default {
                    Some(p) => Some(load_roots(&RootCert::File(p))?),
                    None => {
                        return Err(format!(
                            "sslmode={} needs the server's root certificate: add sslrootcert=<PEM file> to the URL (or set PGSSLROOTCERT), or sslrootcert=system for the system's trusted roots",
                            self.mode.name()
                        ));
                    }
                }
            }
            (None, false) => None,
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let algorithms = provider.signature_verification_algorithms;
        let chain = match roots {
            None => None,
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("TLS root certificates: {e}"))?,
            ),
        };
        let config = match chain {
            Some(webpki) if self.mode == SslMode::VerifyFull => {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            }
            chain => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient { chain, algorithms }))
                .with_no_client_auth(),
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }

    /// `PGSSLMODE` / `PGSSLROOTCERT` for a libpq child program (pg_dump, pg_restore).
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("PGSSLMODE", self.mode.name().to_owned())];
        match &self.root_cert {
            Some(RootCert::File(p)) => v.push(("PGSSLROOTCERT", p.display().to_string())),
            Some(RootCert::System) => v.push(("PGSSLROOTCERT", "system".to_owned())),
            None => {}
        }
        v
    }
}

fn load_roots(r: &RootCert) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match r {
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("sslrootcert=system: no trusted root certificates found on this system; name a PEM file instead".into());
            }
        }
        RootCert::File(path) => {
            let shown = path.display();
            let iter = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert `{shown}` cannot be read: {e}"))?;
            for cert in iter {
                let cert = cert.map_err(|e| format!("sslrootcert `{shown}`: {e}"))?;
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert `{shown}`: {e}"))?;
            }
            if store.is_empty() {
                return Err(format!(
                    "sslrootcert `{shown}` holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
                ));
            }
        }
    }
    Ok(store)
}

/// The certificate check short of `verify-full`. With `chain`, the chain must lead to a
/// trusted root but the name in the certificate is not compared with the host (`verify-ca`,
/// or `prefer`/`require` given roots); without, the certificate is not authenticated
/// (`prefer`/`require` without roots, libpq's meaning). Handshake signatures are always
/// checked, so the session key belongs to whoever holds the certificate's key.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Takes `sslmode` and `sslrootcert` out of a URL or key/value connection string (the driver
/// knows neither `verify-*` nor `sslrootcert`). Returns the rest and the two values.
pub fn extract(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            mode = Some(value);
            true
        }
        "sslrootcert" => {
            root = Some(value);
            true
        }
        _ => false,
    };
    let rest = if url.contains("://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        !take(k, percent_decode(v))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = String::new();
        for (key, value, raw) in kv_pairs(url) {
            if !take(&key, value) {
                if !kept.is_empty() {
                    kept.push(' ');
                }
                kept.push_str(raw);
            }
        }
        kept
    };
    (rest, mode, root)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| char::from(*c).to_digit(16));
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq key/value pairs: `key = value`, a value either bare (backslash escapes) or in
/// single quotes. Yields the key, the unescaped value and the pair's raw text.
fn kv_pairs(s: &str) -> Vec<(String, String, &str)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map(|c| c.1);
    while i < chars.len() {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = chars[i].0;
        let mut key = String::new();
        while let Some(c) = at(i).filter(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
            i += 1;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) == Some('=') {
            i += 1;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            while let Some(c) = at(i) {
                i += 1;
                match c {
                    '\\' => {
                        if let Some(n) = at(i) {
                            value.push(n);
                            i += 1;
                        }
                    }
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                i += 1;
                if c == '\\' {
                    if let Some(n) = at(i) {
                        value.push(n);
                        i += 1;
                    }
                } else {
                    value.push(c);
                }
            }
        }
        let end = chars.get(i).map_or(s.len(), |c| c.0);
        out.push((key, value, &s[start..end]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_tls_keys_out_of_urls_and_key_value_strings() {
        let (rest, mode, root) =
            extract("postgres://u:pw@h:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem");
        assert_eq!(rest, "postgres://u:pw@h:5432/db");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/tmp/ca.pem"));
        let (rest, mode, root) =
            extract("postgres://h/db?application_name=x&sslmode=require&connect_timeout=3");
        assert_eq!(rest, "postgres://h/db?application_name=x&connect_timeout=3");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root, None);
        let (rest, mode, root) = extract(
            "host=h sslrootcert='/my certs/ca.pem' user=u sslmode = verify-ca password='a b'",
        );
        assert_eq!(rest, "host=h user=u password='a b'");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/my certs/ca.pem"));
        assert_eq!(extract("postgres://h/db").0, "postgres://h/db");
    }

    #[test]
    fn modes_parse_as_libpq_names_them_and_bad_ones_are_named() {
        assert_eq!(SslMode::parse("verify-full"), Ok(SslMode::VerifyFull));
        let e = SslMode::parse("verify_full").unwrap_err();
        assert!(
            e.contains("verify_full") && e.contains("verify-full"),
            "{e}"
        );
        let s = TlsSettings::new(None, None).unwrap();
        assert_eq!(s.mode, SslMode::Prefer);
        assert_eq!(
            TlsSettings::new(Some("require"), Some("system"))
                .unwrap()
                .root_cert,
            Some(RootCert::System)
        );
    }

    #[test]
    fn a_missing_root_certificate_is_refused_before_connecting() {
        let s = TlsSettings::new(Some("verify-full"), Some("/nonexistent/ca.pem")).unwrap();
        let e = s.connector().err().expect("refused");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(
            TlsSettings::new(Some("disable"), None)
                .unwrap()
                .connector()
                .unwrap()
                .is_none()
        );
        assert!(
            TlsSettings::new(Some("require"), None)
                .unwrap()
                .connector()
                .unwrap()
                .is_some()
        );
    }
}
