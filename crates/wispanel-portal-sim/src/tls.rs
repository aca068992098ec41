//! Certificates made at start with rcgen: a CA written as PEM for clients to
//! trust, and a leaf for `localhost`, `127.0.0.1` and `::1` signed by it, or
//! (to test a certificate that does not verify) by a throw-away CA.

use super::SimError;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::sync::Arc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

fn cert_err(e: rcgen::Error) -> SimError {
    SimError::Certificate(e.to_string())
}

fn make_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, SimError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(cert_err)?).map_err(cert_err)
}

/// The server's TLS configuration and the PEM of the CA clients should trust.
/// With `other_ca`, the served leaf is signed by another CA, so a client
/// trusting the returned PEM rejects it.
pub(crate) fn server_config(other_ca: bool) -> Result<(Arc<ServerConfig>, String), SimError> {
    let trusted = make_ca("wispanel-portal-sim CA")?;
    let throwaway;
    let signer = if other_ca {
        throwaway = make_ca("wispanel-portal-sim untrusted CA")?;
        &throwaway
    } else {
        &trusted
    };

    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(cert_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(cert_err)?;
    let leaf = params.signed_by(&leaf_key, signer).map_err(cert_err)?;

    let chain = vec![leaf.der().clone(), signer.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    // The server speaks HTTP/1.1 only; clients must not pick h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), trusted.pem()))
}
