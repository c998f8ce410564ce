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
//!
//! Client certificate (for servers whose `pg_hba.conf` says `cert` or `clientcert=`):
//! `sslcert` + `sslkey` (PEM files; else `PGSSLCERT` / `PGSSLKEY`; else
//! `~/.postgresql/postgresql.crt` and `.key` when they exist, as in libpq). Unlike libpq, a
//! certificate or key file that is named but missing is an error, not silently skipped; like
//! libpq, a key that others can read is refused, and encrypted keys (`sslpassword`) are not
//! supported.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use super::conninfo::{extract, param};

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

/// The TLS keys of a connection string, as written (percent-decoding and unquoting done).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode`.
    pub mode: Option<String>,
    /// `sslrootcert`.
    pub root_cert: Option<String>,
    /// `sslcert`.
    pub cert: Option<String>,
    /// `sslkey`.
    pub key: Option<String>,
}

impl TlsParams {
    /// Fills what the string did not give from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and
    /// `PGSSLKEY`, as libpq does (empty values count as unset).
    pub fn or_env(self, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        TlsParams {
            mode: self.mode.or_else(|| env("PGSSLMODE")),
            root_cert: self.root_cert.or_else(|| env("PGSSLROOTCERT")),
            cert: self.cert.or_else(|| env("PGSSLCERT")),
            key: self.key.or_else(|| env("PGSSLKEY")),
        }
    }
}

/// A client certificate chain and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// `sslcert`.
    pub cert: PathBuf,
    /// `sslkey`.
    pub key: PathBuf,
}

/// Validated TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The mode.
    pub mode: SslMode,
    /// Roots named by `sslrootcert`, if any.
    pub root_cert: Option<RootCert>,
    /// The client certificate to present, if any.
    pub client: Option<ClientCert>,
}

impl TlsSettings {
    /// From the values found in the URL, else in the environment (empty values count as
    /// unset); `home` holds libpq's defaults (`.postgresql/root.crt`, `postgresql.crt`,
    /// `postgresql.key`), each used only when it exists.
    pub fn new(p: &TlsParams, home: Option<&Path>) -> Result<Self, String> {
        let mode = match p.mode.as_deref() {
            Some(m) => SslMode::parse(m)?,
            None => SslMode::Prefer,
        };
        let given = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
        let default = |file: &str| {
            home.map(|h| h.join(".postgresql").join(file))
                .filter(|f| f.exists())
        };
        let verify = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
        let root_cert = match given(&p.root_cert) {
            Some(r) if r == "system" => Some(RootCert::System),
            Some(r) => Some(RootCert::File(r.into())),
            None if verify => match default("root.crt") {
                Some(f) => Some(RootCert::File(f)),
                None => {
                    return Err(format!(
                        "sslmode={} needs the server's root certificate: add sslrootcert=<PEM file> to the URL (or set PGSSLROOTCERT), or sslrootcert=system for the system's trusted roots",
                        mode.name()
                    ));
                }
            },
            None => None,
        };
        let cert = given(&p.cert).map(PathBuf::from);
        let key = given(&p.key).map(PathBuf::from);
        let named = cert.is_some() || key.is_some();
        let cert = cert.or_else(|| default("postgresql.crt"));
        let key = key.or_else(|| default("postgresql.key"));
        let client = match (cert, key) {
            _ if mode == SslMode::Disable => None,
            (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
            (Some(cert), None) if named => {
                return Err(format!(
                    "sslcert `{}` is given but no sslkey: add sslkey=<PEM file> (or set PGSSLKEY)",
                    cert.display()
                ));
            }
            (None, Some(key)) if named => {
                return Err(format!(
                    "sslkey `{}` is given but no sslcert: add sslcert=<PEM file> (or set PGSSLCERT)",
                    key.display()
                ));
            }
            // Only one of libpq's default files exists: libpq would fail reading the other.
            (Some(only), None) | (None, Some(only)) => {
                return Err(format!(
                    "`{}` exists but its pair does not: add both sslcert and sslkey, or remove it",
                    only.display()
                ));
            }
            (None, None) => None,
        };
        Ok(TlsSettings {
            mode,
            root_cert,
            client,
        })
    }

    /// The connector, or `None` for `sslmode=disable`. Reads the certificate files, so a
    /// missing or unreadable one is reported here, before any connection.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, String> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = self.root_cert.as_ref().map(load_roots).transpose()?;
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
        let builder = match chain {
            Some(webpki) if self.mode == SslMode::VerifyFull => {
                builder.with_webpki_verifier(webpki)
            }
            chain => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient { chain, algorithms })),
        };
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let (certs, key) = load_client_cert(c)?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    format!(
                        "sslcert `{}` / sslkey `{}`: {e}",
                        c.cert.display(),
                        c.key.display()
                    )
                })?
            }
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
        if let Some(c) = &self.client {
            v.push(("PGSSLCERT", c.cert.display().to_string()));
            v.push(("PGSSLKEY", c.key.display().to_string()));
        }
        v
    }
}

/// Reads a client certificate chain and its key, refusing a key others can read (libpq's
/// rule: 0600 or stricter, or 0640 when owned by root).
fn load_client_cert(
    c: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let (cert, key) = (c.cert.display(), c.key.display());
    let certs = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| format!("sslcert `{cert}` cannot be read: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslcert `{cert}`: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "sslcert `{cert}` holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
        ));
    }
    let meta =
        std::fs::metadata(&c.key).map_err(|e| format!("sslkey `{key}` cannot be read: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o777;
        let forbidden = if meta.uid() == 0 { 0o037 } else { 0o077 };
        if mode & forbidden != 0 {
            return Err(format!(
                "sslkey `{key}` has permissions {mode:04o}, so others may read it; restrict them with `chmod 600 {key}`"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(&c.key)
        .map_err(|e| format!("sslkey `{key}` cannot be read: {e}"))?;
    if text.contains("ENCRYPTED") {
        return Err(format!(
            "sslkey `{key}` is encrypted, which wasmig does not support (no sslpassword); store it decrypted with `openssl pkey -in {key} -out <new file>` and chmod 600 the result"
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
        format!("sslkey `{key}`: no PEM private key found (PKCS#8, PKCS#1 or SEC1): {e}")
    })?;
    Ok((certs, key_der))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_tls_keys_out_of_urls_and_key_value_strings() {
        let (rest, p) = extract(
            "postgres://u:pw@h:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&sslcert=c.pem&sslkey=k.pem",
        );
        assert_eq!(rest, "postgres://u:pw@h:5432/db");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(p.cert.as_deref(), Some("c.pem"));
        assert_eq!(p.key.as_deref(), Some("k.pem"));
        let (rest, p) =
            extract("postgres://h/db?application_name=x&sslmode=require&connect_timeout=3");
        assert_eq!(rest, "postgres://h/db?application_name=x&connect_timeout=3");
        assert_eq!(p.mode.as_deref(), Some("require"));
        assert_eq!(p.root_cert, None);
        let (rest, p) = extract(
            "host=h sslrootcert='/my certs/ca.pem' user=u sslmode = verify-ca password='a b'",
        );
        assert_eq!(rest, "host=h user=u password='a b'");
        assert_eq!(p.mode.as_deref(), Some("verify-ca"));
        assert_eq!(p.root_cert.as_deref(), Some("/my certs/ca.pem"));
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
        let s = TlsSettings::new(&TlsParams::default(), None).unwrap();
        assert_eq!(s.mode, SslMode::Prefer);
        assert_eq!(s.client, None);
        assert_eq!(
            TlsSettings::new(&params(Some("require"), Some("system")), None)
                .unwrap()
                .root_cert,
            Some(RootCert::System)
        );
    }

    fn params(mode: Option<&str>, root_cert: Option<&str>) -> TlsParams {
        TlsParams {
            mode: mode.map(str::to_owned),
            root_cert: root_cert.map(str::to_owned),
            ..TlsParams::default()
        }
    }

    #[test]
    fn a_client_certificate_needs_both_halves_and_the_environment_fills_gaps() {
        let half = TlsParams {
            cert: Some("c.pem".into()),
            ..TlsParams::default()
        };
        let e = TlsSettings::new(&half, None).unwrap_err();
        assert!(e.contains("sslcert `c.pem`") && e.contains("sslkey"), "{e}");
        let half = TlsParams {
            key: Some("k.pem".into()),
            ..TlsParams::default()
        };
        let e = TlsSettings::new(&half, None).unwrap_err();
        assert!(e.contains("sslkey `k.pem`") && e.contains("sslcert"), "{e}");
        let env = |k: &str| match k {
            "PGSSLCERT" => Some("env.pem".to_owned()),
            "PGSSLKEY" => Some("env.key".to_owned()),
            "PGSSLMODE" => Some(String::new()),
            _ => None,
        };
        let p = TlsParams {
            cert: Some("url.pem".into()),
            ..TlsParams::default()
        }
        .or_env(&env);
        assert_eq!(p.cert.as_deref(), Some("url.pem"));
        assert_eq!(p.key.as_deref(), Some("env.key"));
        assert_eq!(p.mode, None);
        let s = TlsSettings::new(&p, None).unwrap();
        assert_eq!(
            s.client,
            Some(ClientCert {
                cert: "url.pem".into(),
                key: "env.key".into()
            })
        );
        let missing = s.connector().err().expect("refused");
        assert!(missing.contains("url.pem"), "{missing}");
        // `disable` sends no certificate, so it needs none.
        let off = TlsParams {
            mode: Some("disable".into()),
            ..half
        };
        assert_eq!(TlsSettings::new(&off, None).unwrap().client, None);
    }

    #[test]
    fn a_missing_root_certificate_is_refused_before_connecting() {
        let s = TlsSettings::new(
            &params(Some("verify-full"), Some("/nonexistent/ca.pem")),
            None,
        )
        .unwrap();
        let e = s.connector().err().expect("refused");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(
            TlsSettings::new(&params(Some("disable"), None), None)
                .unwrap()
                .connector()
                .unwrap()
                .is_none()
        );
        assert!(
            TlsSettings::new(&params(Some("require"), None), None)
                .unwrap()
                .connector()
                .unwrap()
                .is_some()
        );
    }
}
