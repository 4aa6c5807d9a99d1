//! TLS termination with rustls, and the development certificates `ssogate dev-certs` makes.
//!
//! The listener offers HTTP/2 and HTTP/1.1 by ALPN. Certificate and key are read once at start; a file that is
//! missing, unreadable or holds no usable PEM is a start-up error that names the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("tls.cert {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("tls.key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("tls.cert and tls.key do not form a usable pair: {0}")]
    Pair(#[source] rustls::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Builds the rustls server config from the PEM files named in `tls`.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Pair)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(TlsError::Pair)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::Cert {
        path: path.to_owned(),
        reason,
    };
    std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no CERTIFICATE block found".to_owned()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let fail = |reason: String| TlsError::Key {
        path: path.to_owned(),
        reason,
    };
    std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| fail(format!("no usable PEM private key: {e}")))
}

/// What `ssogate dev-certs` wrote.
#[derive(Debug)]
pub struct DevCerts {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a throw-away local CA and a certificate it signs for `hosts` (plus localhost, 127.0.0.1 and ::1), and writes
/// `ca.crt`, `gateway.crt` (leaf then CA) and `gateway.key` into `dir`. The CA key is never written: nothing else can
/// be signed with it, so trusting `ca.crt` in a browser trusts only this one certificate.
pub fn make_dev_certs(dir: &Path, hosts: &[String]) -> Result<DevCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(
        DnType::CommonName,
        "ssogate development CA (do not trust in production)",
    );
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for host in hosts {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    let mut leaf_params = CertificateParams::new(names)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "ssogate development");
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let out = DevCerts {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("gateway.crt"),
        key: dir.join("gateway.key"),
    };
    write(&out.ca_cert, &ca_cert.pem())?;
    write(&out.cert, &format!("{}{}", leaf.pem(), ca_cert.pem()))?;
    write_private(&out.key, &leaf_key.serialize_pem())?;
    Ok(out)
}

fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let fail = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    use std::os::unix::fs::PermissionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    // `mode` applies only when the file is created; a key left over from an earlier run keeps its old mode otherwise.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_load_back_and_bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("ssogate-tls-test-{}", std::process::id()));
        let made =
            make_dev_certs(&dir, &["forum.test".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        let tls = TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
            cert: made.cert.clone(),
            key: made.key.clone(),
        };
        assert!(server_config(&tls).is_ok());

        let missing = TlsConfig {
            cert: dir.join("nope.crt"),
            ..tls.clone()
        };
        let text = server_config(&missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("tls.cert") && text.contains("nope.crt"),
            "{text}"
        );

        let swapped = TlsConfig {
            key: made.cert,
            ..tls
        };
        let text = server_config(&swapped)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("tls.key") && text.contains("gateway.crt"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
