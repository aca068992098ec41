//! The TLS handshake and its certificate chain, recorded by our own
//! verifier so that a certificate from an intercepting proxy can be named;
//! the facts and their lines (pure), then the handshake (I/O).

use super::*;

/// The leaf certificate, as much as a person needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub subject: String,
    pub issuer: String,
    pub not_after: Option<Timestamp>,
    /// Certificates the server sent, the leaf included.
    pub chain_len: usize,
}

impl Leaf {
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Option<Leaf> {
        let der = chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        Some(Leaf {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: Some(Timestamp::from_unix_secs(
                cert.validity().not_after.timestamp(),
            )),
            chain_len: chain.len(),
        })
    }
}

/// How the handshake went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsOutcome {
    Ok {
        version: String,
        leaf: Option<Leaf>,
    },
    /// The certificate did not verify.
    Rejected {
        error: String,
        kind: CertProblem,
        leaf: Option<Leaf>,
    },
    /// Any other failure (the server closed, a protocol error, no trust store).
    Failed(String),
    TimedOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertProblem {
    UnknownIssuer,
    Time,
    Name,
    Other,
}

pub fn tls_check(
    host: &str,
    outcome: &TlsOutcome,
    ca_file: Option<&Path>,
    limit: Duration,
    now: Timestamp,
) -> Check {
    let name = "portal TLS";
    let describe = |l: &Leaf| {
        let exp = l
            .not_after
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "?".into());
        format!(
            "certificate for {} issued by {}, expires {exp}, chain of {}",
            l.subject, l.issuer, l.chain_len
        )
    };
    match outcome {
        TlsOutcome::Ok { version, leaf } => {
            let Some(l) = leaf else {
                return Check::ok(name, format!("{version} handshake with {host}"));
            };
            let found = format!("{version}, {}", describe(l));
            match l.not_after {
                Some(t) if t.millis() - now.millis() < CERT_WARN_DAYS * 86_400_000 => Check::warn(
                    name,
                    found,
                    "the portal's certificate expires soon; nothing to do here unless the clock is wrong",
                ),
                _ => Check::ok(name, found),
            }
        }
        TlsOutcome::Rejected { error, kind, leaf } => {
            let seen = leaf
                .as_ref()
                .map(|l| format!("; the server sent a {}", describe(l)))
                .unwrap_or_default();
            let trust = match ca_file {
                Some(p) => format!("ca_file {} nor the system roots", p.display()),
                None => "the system roots".to_string(),
            };
            match kind {
                CertProblem::UnknownIssuer => Check::fail(
                    name,
                    format!("the certificate does not verify against {trust} ({error}){seen}"),
                    format!(
                        "an intercepting (TLS-inspecting) proxy or firewall is probably in the way: ask its admin to exempt {host}, or set ca_file to that proxy's CA{}",
                        if ca_file.is_some() {
                            "; or ca_file is not the CA of this portal"
                        } else {
                            ""
                        }
                    ),
                ),
                CertProblem::Time => Check::fail(
                    name,
                    format!("the certificate is not valid now ({error}){seen}"),
                    "check the clock (see the clock checks) and enable time synchronisation",
                ),
                CertProblem::Name => Check::fail(
                    name,
                    format!("the certificate is not for {host} ({error}){seen}"),
                    "an intercepting proxy, or portal_url names the wrong host",
                ),
                CertProblem::Other => Check::fail(
                    name,
                    format!("the certificate was refused ({error}){seen}"),
                    "an intercepting proxy or a broken portal certificate",
                ),
            }
        }
        TlsOutcome::Failed(e) => Check::fail(
            name,
            format!("handshake with {host} failed: {e}"),
            "something between this host and the portal breaks TLS (a proxy or firewall?)",
        ),
        TlsOutcome::TimedOut => Check::fail(
            name,
            format!(
                "no TLS handshake with {host} within {} s",
                limit.as_secs_f64()
            ),
            "the connection opens but nothing answers: a firewall or proxy swallowing the traffic?",
        ),
    }
}

/// Delegates to the platform verifier (as the daemon's HTTPS client does) and
/// keeps the chain the server sent and what the delegate thought of it.
#[derive(Debug)]
pub(super) struct Recorder {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<Mutex<Option<Seen>>>,
}

/// The chain the server sent, and the delegate's complaint about it.
type Seen = (Vec<CertificateDer<'static>>, Option<rustls::Error>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        if let Ok(mut g) = self.seen.lock() {
            *g = Some((chain, r.as_ref().err().cloned()));
        }
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

pub(super) fn cert_problem(e: &rustls::Error) -> CertProblem {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => CertProblem::UnknownIssuer,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => CertProblem::Time,
            other if format!("{other:?}").starts_with("NotValidForName") => CertProblem::Name,
            _ => CertProblem::Other,
        },
        _ => CertProblem::Other,
    }
}

/// The CA certificates of `ca_file`.
pub(super) fn ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    crate::net::tls::pem_certificates(&pem).map_err(|e| format!("ca_file {}: {e}", path.display()))
}

pub(super) async fn handshake(
    tcp: TcpStream,
    host: &str,
    ca_file: Option<&Path>,
    limit: Duration,
) -> TlsOutcome {
    let provider = match crate::net::tls::provider() {
        Ok(p) => p,
        Err(e) => return TlsOutcome::Failed(e.to_string()),
    };
    let extra = match ca_file.map(ca_certs).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return TlsOutcome::Failed(e),
    };
    let inner = match crate::net::tls::platform_verifier(extra, provider.clone()) {
        Ok(v) => v,
        Err(e) => return TlsOutcome::Failed(format!("no trust anchors: {e}")),
    };
    let seen = Arc::new(Mutex::new(None));
    let recorder = Recorder {
        inner: Arc::new(inner),
        seen: seen.clone(),
    };
    let config = match crate::net::tls::client_config(provider, Arc::new(recorder)) {
        Ok(c) => c,
        Err(e) => return TlsOutcome::Failed(e.to_string()),
    };
    let name = match ServerName::try_from(host.to_string()) {
        Ok(n) => n,
        Err(e) => return TlsOutcome::Failed(format!("{host} is not a valid server name: {e}")),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = tokio::time::timeout(limit, connector.connect(name, tcp)).await;
    let recorded = seen.lock().ok().and_then(|mut g| g.take());
    let leaf = recorded
        .as_ref()
        .and_then(|(chain, _)| Leaf::from_chain(chain));
    match result {
        Err(_) => TlsOutcome::TimedOut,
        Ok(Ok(conn)) => {
            let version = conn
                .get_ref()
                .1
                .protocol_version()
                .map(|v| format!("{v:?}").replace('_', "."))
                .unwrap_or_else(|| "TLS".into());
            TlsOutcome::Ok { version, leaf }
        }
        Ok(Err(e)) => match recorded.and_then(|(_, err)| err) {
            Some(err) => TlsOutcome::Rejected {
                error: err.to_string(),
                kind: cert_problem(&err),
                leaf,
            },
            None => TlsOutcome::Failed(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn tls_lines() {
        let now = Timestamp::from_unix_secs(1_800_000_000);
        let leaf = Leaf {
            subject: "CN=localhost".into(),
            issuer: "CN=Corp Inspect CA".into(),
            not_after: Some(Timestamp::from_unix_secs(1_900_000_000)),
            chain_len: 2,
        };
        let d = Duration::from_secs(5);
        let ok = tls_check(
            "h",
            &TlsOutcome::Ok {
                version: "TLSv1.3".into(),
                leaf: Some(leaf.clone()),
            },
            None,
            d,
            now,
        );
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.found.contains("issued by CN=Corp Inspect CA"), "{ok:?}");
        let soon = Leaf {
            not_after: Some(Timestamp::from_unix_secs(1_800_000_000 + 86_400)),
            ..leaf.clone()
        };
        let c = tls_check(
            "h",
            &TlsOutcome::Ok {
                version: "TLSv1.3".into(),
                leaf: Some(soon),
            },
            None,
            d,
            now,
        );
        assert_eq!(c.status, Status::Warn);
        let rejected = TlsOutcome::Rejected {
            error: "invalid peer certificate: UnknownIssuer".into(),
            kind: CertProblem::UnknownIssuer,
            leaf: Some(leaf),
        };
        let c = tls_check("h", &rejected, None, d, now);
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.contains("system roots"), "{c:?}");
        assert!(c.found.contains("Corp Inspect CA"), "{c:?}");
        assert!(
            c.hint.as_deref().unwrap_or("").contains("intercepting"),
            "{c:?}"
        );
        let c = tls_check("h", &TlsOutcome::TimedOut, None, d, now);
        assert!(c.found.contains("within 5 s"), "{c:?}");
    }
}
