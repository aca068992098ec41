//! The portal's part: `check-update` names the latest release (unless a
//! version was asked for), then `download/token` gives its URL, size and
//! SHA-256.

use super::DownloadError;
use crate::portal::{PortalClient, RequestFacts, request_body};
use wispanel_core::classify::{Classified, Outcome, TokenAnswer};
use wispanel_core::gate::GateClose;
use wispanel_core::{Endpoint, UpdateState};

/// The version to fetch and the portal's token for it.
pub(super) async fn request(
    client: &PortalClient,
    facts: &RequestFacts<'_>,
    requested: Option<String>,
) -> Result<(String, TokenAnswer), DownloadError> {
    let version = match requested {
        Some(v) => v,
        None => {
            let body = request_body(Endpoint::CheckUpdate, facts);
            let answer = client.call(Endpoint::CheckUpdate, &body).await;
            match portal_outcome(Endpoint::CheckUpdate, answer)? {
                Outcome::Update(a) => match a.latest_version {
                    Some(v) if !v.trim().is_empty() => v.trim().to_string(),
                    _ => return Err(DownloadError::NoLatest),
                },
                _ => {
                    return Err(DownloadError::Unexpected {
                        endpoint: Endpoint::CheckUpdate,
                    });
                }
            }
        }
    };
    let facts = RequestFacts {
        version: Some(&version),
        ..*facts
    };
    let body = request_body(Endpoint::Token, &facts);
    let answer = client.call(Endpoint::Token, &body).await;
    match portal_outcome(Endpoint::Token, answer)? {
        Outcome::Token(t) => Ok((version, t)),
        _ => Err(DownloadError::Unexpected {
            endpoint: Endpoint::Token,
        }),
    }
}

/// The outcome of a portal request, or the error it means here.
fn portal_outcome(endpoint: Endpoint, c: Classified) -> Result<Outcome, DownloadError> {
    match c.outcome {
        Outcome::UpdateRefused { state, reason } => Err(DownloadError::Refused {
            endpoint,
            state,
            code: reason.code,
            message: reason.message,
        }),
        // A licence endpoint's refusal cannot come from a download endpoint;
        // read it as "not entitled" all the same.
        Outcome::Refused { reason, .. } => Err(DownloadError::Refused {
            endpoint,
            state: UpdateState::NotEntitled,
            code: reason.code,
            message: reason.message,
        }),
        Outcome::Failed(error) => Err(DownloadError::Portal {
            endpoint,
            error,
            retry_at: match c.gate {
                Some(GateClose::Until(t)) => Some(t),
                _ => None,
            },
        }),
        other => Ok(other),
    }
}
