//! The TLS of every outgoing connection (the portal client, `doctor`'s
//! probe, `update download`): the crypto provider, the certificate verifier
//! (the system's trust store plus `ca_file`) and the client configuration.
//!
//! Each program installs its provider at its start, and nothing else in the
//! library names one, so the linker keeps only that program's crypto code
//! (issue 22, docs/PERFORMANCE.md). Both offer the post-quantum hybrid
//! X25519MLKEM768 first, with a plain X25519 share beside it for a server
//! that does not know it:
//!
//! - the daemon: [`use_aws_lc_rs`], rustls's aws-lc-rs provider;
//! - the CLI: [`use_ring_with_mlkem`], ring, with X25519MLKEM768 made of
//!   RustCrypto's ML-KEM-768 and ring's X25519 ([`super::mlkem`]: ring has
//!   no ML-KEM, and aws-lc-rs's brings most of aws-lc with it). The CLI
//!   sends the licence key too (`update download`'s check-update and token
//!   requests), so its traffic gets the same protection against being
//!   recorded now and decrypted later, at a fraction of aws-lc's size.
//!
//! rustls's aws-lc-rs provider lists X25519MLKEM768 last unless its
//! `prefer-post-quantum` feature is on, which our dependencies leave off:
//! both providers here put it first whatever the features say.

use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::crypto::{CryptoProvider, SupportedKxGroup};
use tokio_rustls::rustls::pki_types::CertificateDer;

/// The daemon's provider: aws-lc-rs, X25519MLKEM768 first.
pub fn use_aws_lc_rs() {
    install(aws_lc_rs_with_mlkem());
}

/// The provider [`use_aws_lc_rs`] installs.
pub fn aws_lc_rs_with_mlkem() -> CryptoProvider {
    mlkem_first(
        rustls::crypto::aws_lc_rs::default_provider(),
        rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768,
    )
}

/// The CLI's provider: ring, with X25519MLKEM768 first (ML-KEM-768 from
/// `ml-kem`) and ring's classical groups after it.
pub fn use_ring_with_mlkem() {
    install(ring_with_mlkem());
}

/// The provider [`use_ring_with_mlkem`] installs.
pub fn ring_with_mlkem() -> CryptoProvider {
    mlkem_first(
        rustls::crypto::ring::default_provider(),
        ring_x25519mlkem768(),
    )
}

/// `p` with `pq` as its first key exchange group (and not again further
/// down).
fn mlkem_first(mut p: CryptoProvider, pq: &'static dyn SupportedKxGroup) -> CryptoProvider {
    p.kx_groups.retain(|g| g.name() != pq.name());
    p.kx_groups.insert(0, pq);
    p
}

/// The CLI's X25519MLKEM768: ML-KEM-768 from `ml-kem`, X25519 and random
/// numbers from ring ([`super::mlkem`]).
fn ring_x25519mlkem768() -> &'static dyn SupportedKxGroup {
    static GROUP: std::sync::OnceLock<super::mlkem::X25519MlKem768> = std::sync::OnceLock::new();
    GROUP.get_or_init(|| super::mlkem::X25519MlKem768 {
        classical: rustls::crypto::ring::kx_group::X25519,
        random: rustls::crypto::ring::default_provider().secure_random,
    })
}

/// Makes `p` this process's provider; a second call keeps the first.
fn install(p: CryptoProvider) {
    let _ = p.install_default();
}

/// The provider this program installed at its start. In the library's own
/// tests and the test harness none may have been: there it is aws-lc-rs.
pub fn provider() -> Result<Arc<CryptoProvider>, rustls::Error> {
    if let Some(p) = CryptoProvider::get_default() {
        return Ok(p.clone());
    }
    #[cfg(any(test, feature = "test-util"))]
    {
        use_aws_lc_rs();
        if let Some(p) = CryptoProvider::get_default() {
            return Ok(p.clone());
        }
    }
    Err(rustls::Error::General(
        "no TLS crypto provider installed (the program must call net::tls::use_… at its start)"
            .into(),
    ))
}

/// The system's trust store (as `rustls-platform-verifier` reads it) plus
/// `extra`, the certificates of `ca_file`.
pub fn platform_verifier(
    extra: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls_platform_verifier::Verifier, rustls::Error> {
    rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
}

/// A client configuration with `provider`: TLS 1.2 and 1.3, certificates
/// checked by `verifier`, no client certificate, HTTP/1.1 by ALPN.
pub fn client_config(
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificates of a PEM file's content (`ca_file`): at least one, and
/// every `CERTIFICATE` block well formed.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e:?}"))?;
    if certs.is_empty() {
        return Err("no certificate found in the file".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::NamedGroup;

    #[test]
    fn both_providers_offer_the_post_quantum_group_first_and_once() {
        for p in [ring_with_mlkem(), aws_lc_rs_with_mlkem()] {
            let names: Vec<NamedGroup> = p.kx_groups.iter().map(|g| g.name()).collect();
            assert_eq!(names[0], NamedGroup::X25519MLKEM768, "{names:?}");
            let pq = names.iter().filter(|n| **n == NamedGroup::X25519MLKEM768);
            assert_eq!(pq.count(), 1, "{names:?}");
            assert!(names.contains(&NamedGroup::X25519), "{names:?}");
        }
    }

    /// A handshake with the portal simulator (rustls on aws-lc-rs, as the
    /// portal may be): the group both ends agreed on.
    async fn negotiated_group(provider: CryptoProvider) -> Option<NamedGroup> {
        use wispanel_portal_sim::{self as sim, SimOptions, TlsMode};
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let opts = SimOptions {
            tls: TlsMode::SelfCa { ca_out: ca.clone() },
            ..SimOptions::plain()
        };
        let s = sim::start(opts).await.unwrap();
        let provider = Arc::new(provider);
        let extra = pem_certificates(&std::fs::read(&ca).unwrap()).unwrap();
        let verifier = platform_verifier(extra, provider.clone()).unwrap();
        let config = client_config(provider, Arc::new(verifier)).unwrap();
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        conn.get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|g| g.name())
    }

    #[tokio::test]
    async fn both_programs_agree_on_the_post_quantum_group_with_the_portal() {
        assert_eq!(
            negotiated_group(ring_with_mlkem()).await,
            Some(NamedGroup::X25519MLKEM768)
        );
        assert_eq!(
            negotiated_group(aws_lc_rs_with_mlkem()).await,
            Some(NamedGroup::X25519MLKEM768)
        );
        // So the check can fail: rustls's aws-lc-rs provider as our features
        // leave it (X25519MLKEM768 last) agrees on X25519 with this server,
        // and ring alone has no ML-KEM.
        assert_eq!(
            negotiated_group(rustls::crypto::aws_lc_rs::default_provider()).await,
            Some(NamedGroup::X25519)
        );
        assert_eq!(
            negotiated_group(rustls::crypto::ring::default_provider()).await,
            Some(NamedGroup::X25519)
        );
    }

    #[test]
    fn pem_without_a_certificate_is_refused() {
        assert_eq!(
            pem_certificates(b"not a certificate").err().as_deref(),
            Some("no certificate found in the file")
        );
    }
}
