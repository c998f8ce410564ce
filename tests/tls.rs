//! TLS to PostgreSQL: a server of its own that refuses every connection not made over TLS
//! (`hostnossl ... reject`), with a certificate for `localhost` signed by a test CA made with
//! the `openssl` tool. A run that succeeds there used TLS for every session it opened (the
//! operator's and each schema role's). Database `tls_mtls` also demands a client certificate
//! signed by that CA (`clientcert=verify-ca`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tokio_postgres::NoTls;

use crate::support::pg::{ADMIN_PASSWORD, ADMIN_USER, Durability, Server, give_to_postgres};
use crate::support::{PluginDir, Run, wasmig_command};
use wasmig::Exit;

struct TlsServer {
    server: Server,
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn chmod(mode: &str, path: &Path) {
    let st = Command::new("chmod")
        .arg(mode)
        .arg(path)
        .status()
        .expect("chmod");
    assert!(st.success());
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_server() -> &'static TlsServer {
    static S: OnceLock<TlsServer> = OnceLock::new();
    S.get_or_init(|| {
        let server = Server::start(Durability::Fast);
        let dir = server.dir.join("tls");
        std::fs::create_dir_all(&dir).expect("tls dir");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (ca, subject) in [("ca", "/CN=wasmig test CA"), ("other_ca", "/CN=another CA")] {
            let key = format!("{ca}.key");
            let pem = format!("{ca}.pem");
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-subj", subject]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&dir, &args);
        }
        for (name, subject, ext) in [
            (
                "server",
                "/CN=localhost",
                "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            ),
            (
                "client",
                "/CN=wasmig-operator",
                "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
            ),
        ] {
            let (key, csr, pem, cnf) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.cnf"),
            );
            let mut args = vec!["req", "-nodes"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
            openssl(&dir, &args);
            std::fs::write(dir.join(&cnf), ext).expect("extensions file");
            openssl(
                &dir,
                &[
                    "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-days", "2", "-out", &pem, "-extfile", &cnf,
                ],
            );
            chmod("600", &dir.join(&key));
        }
        let data = server.dir.join("data");
        for f in ["server.pem", "server.key", "ca.pem"] {
            std::fs::copy(dir.join(f), data.join(f)).expect("copy into the data dir");
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostnossl all all 0.0.0.0/0 reject\n\
             hostssl tls_mtls all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("pg_hba.conf");
        std::fs::write(
            data.join("postgresql.auto.conf"),
            "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.pem'\n",
        )
        .expect("postgresql.auto.conf");
        give_to_postgres(&data);
        chmod("600", &data.join("server.key"));
        server.restart();
        TlsServer {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other_ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            server,
        }
    })
}

/// A fresh database on the TLS server, created over the Unix socket (trusted locally).
fn tls_db(label: &str) -> String {
    let s = tls_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (c, conn) = tokio_postgres::Config::new()
            .host_path(&s.server.dir)
            .port(s.server.port)
            .user(ADMIN_USER)
            .dbname("postgres")
            .connect(NoTls)
            .await
            .expect("connect over the Unix socket");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.batch_execute(&format!("CREATE DATABASE {label}"))
            .await
            .expect("create database");
    });
    label.to_owned()
}

fn wasmig(url: &str, plugins: &Path, args: &[&str]) -> Run {
    let out = wasmig_command(url, plugins, args)
        .output()
        .expect("run wasmig");
    Run::from(out, args)
}

fn url(host: &str, db: &str, query: &str) -> String {
    format!(
        "postgres://{ADMIN_USER}:{ADMIN_PASSWORD}@{host}:{}/{db}?{query}",
        tls_server().server.port
    )
}

#[test]
fn every_session_of_a_run_goes_over_tls_when_the_server_demands_it() {
    let db = tls_db("tls_all");
    let plugins = PluginDir::new(&["carriers"]);
    // The server rejects any connection without TLS, so these succeed only if the operator
    // and every schema role's session negotiated it.
    let u = url("127.0.0.1", &db, "sslmode=require");
    wasmig(&u, plugins.path(), &["init"]).expect(Exit::Ok);
    wasmig(&u, plugins.path(), &["tenant", "create", "acme", "globex"]).expect(Exit::Ok);
    let v = wasmig(&u, plugins.path(), &["verify"]).expect(Exit::Ok);
    assert!(v.stdout.contains("2 tenant(s): 2 ok"), "{}", v.stdout);
    // The default (`prefer`) takes TLS when offered, as libpq does.
    let plain_default = url("127.0.0.1", &db, "application_name=x");
    wasmig(&plain_default, plugins.path(), &["verify"]).expect(Exit::Ok);
    // Without TLS the server's refusal is reported, and the password is not.
    let r = wasmig(
        &url("127.0.0.1", &db, "sslmode=disable"),
        plugins.path(),
        &["verify"],
    );
    assert_ne!(r.code, Exit::Ok as i32);
    assert!(r.stderr.contains("no encryption"), "{}", r.stderr);
    assert!(!r.stderr.contains(ADMIN_PASSWORD), "{}", r.stderr);
}

#[test]
fn verify_full_checks_the_chain_and_the_host_name_and_verify_ca_the_chain() {
    let s = tls_server();
    let db = tls_db("tls_verify");
    let plugins = PluginDir::new(&["carriers"]);
    let ca = s.ca.display().to_string();
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    wasmig(&url("localhost", &db, &full), plugins.path(), &["init"]).expect(Exit::Ok);
    wasmig(
        &url("localhost", &db, &full),
        plugins.path(),
        &["tenant", "create", "acme"],
    )
    .expect(Exit::Ok);
    // The certificate names `localhost`, not 127.0.0.1.
    let r = wasmig(&url("127.0.0.1", &db, &full), plugins.path(), &["verify"]);
    assert_eq!(r.code, Exit::Error as i32, "{}", r.stderr);
    assert!(r.stderr.contains("not valid for name"), "{}", r.stderr);
    // verify-ca checks the chain only.
    let chain = format!("sslmode=verify-ca&sslrootcert={ca}");
    wasmig(&url("127.0.0.1", &db, &chain), plugins.path(), &["verify"]).expect(Exit::Ok);
    // A root that did not sign the server's certificate is refused.
    let other = format!("sslmode=verify-ca&sslrootcert={}", s.other_ca.display());
    let r = wasmig(&url("127.0.0.1", &db, &other), plugins.path(), &["verify"]);
    assert_eq!(r.code, Exit::Error as i32, "{}", r.stderr);
    assert!(
        r.stderr.contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        r.stderr
    );
    // verify-full with no root certificate anywhere is refused before connecting, with the fix.
    let out = Command::new(env!("CARGO_BIN_EXE_wasmig"))
        .args(["verify"])
        .env("DATABASE_URL", url("localhost", &db, "sslmode=verify-full"))
        .env("HOME", s.server.dir.join("no-home"))
        .env("WASMIG_PLUGINS", plugins.path())
        .env_remove("PGSSLROOTCERT")
        .output()
        .expect("run wasmig");
    let r = Run::from(out, &["verify"]);
    assert_eq!(r.code, Exit::Error as i32, "{}", r.stderr);
    assert!(r.stderr.contains("sslrootcert"), "{}", r.stderr);
}

#[test]
fn a_client_certificate_is_presented_by_every_session_when_the_server_demands_one() {
    let s = tls_server();
    let db = tls_db("tls_mtls");
    let plugins = PluginDir::new(&["carriers"]);
    // Without a certificate the server refuses, and says why.
    let r = wasmig(
        &url("127.0.0.1", &db, "sslmode=require"),
        plugins.path(),
        &["init"],
    );
    assert_eq!(r.code, Exit::Error as i32, "{}", r.stderr);
    assert!(r.stderr.contains("certificate"), "{}", r.stderr);
    // With one, the operator's session and each schema role's present it.
    let with = format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        s.ca.display(),
        s.client_cert.display(),
        s.client_key.display()
    );
    let u = url("localhost", &db, &with);
    wasmig(&u, plugins.path(), &["init"]).expect(Exit::Ok);
    let create = ["tenant", "create", "--no-migrate", "acme", "globex"];
    wasmig(&u, plugins.path(), &create).expect(Exit::Ok);
    // pg_dump (libpq) gets the same certificate: the backups exist only if it connected.
    let backups = s.server.dir.join("tls/backups");
    let dir = backups.to_str().expect("utf8");
    wasmig(&u, plugins.path(), &["migrate", "--backup-dir", dir]).expect(Exit::Ok);
    let dumps = std::fs::read_dir(&backups)
        .expect("backup dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".dump"))
        })
        .count();
    assert_eq!(dumps, 2);
    let v = wasmig(&u, plugins.path(), &["verify"]).expect(Exit::Ok);
    assert!(v.stdout.contains("2 tenant(s): 2 ok"), "{}", v.stdout);
    // A key others can read is refused before connecting, naming the file and the fix.
    let loose = s.server.dir.join("tls/loose.key");
    std::fs::copy(&s.client_key, &loose).expect("copy the key");
    chmod("644", &loose);
    let loose_url = url(
        "localhost",
        &db,
        &format!(
            "sslmode=require&sslcert={}&sslkey={}",
            s.client_cert.display(),
            loose.display()
        ),
    );
    let r = wasmig(&loose_url, plugins.path(), &["verify"]);
    assert_eq!(r.code, Exit::Error as i32, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("sslkey `{}`", loose.display()))
            && r.stderr.contains("chmod 600"),
        "{}",
        r.stderr
    );
}
