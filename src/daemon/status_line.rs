//! The one line systemd shows for the daemon (`STATUS=`).

use crate::api::StatusDocument;
use wispanel_core::{LicenseState, UpdateState};

/// The one-line `STATUS=` for systemd.
pub fn status_line(doc: &StatusDocument) -> String {
    let l = &doc.license;
    let mut s = format!("licence {}", l.state);
    if let Some(t) = &l.tier {
        s.push_str(&format!(" ({t})"));
    }
    match l.state {
        LicenseState::Grace => {
            if let Some(g) = l.grace_until {
                s.push_str(&format!(", portal unreachable, grace until {g}"));
            }
        }
        LicenseState::Lapsed => s.push_str(", portal unreachable past the grace"),
        _ => {
            if let Some(r) = &l.reason {
                s.push_str(&format!(": {}", r.code));
            }
        }
    }
    match doc.update.state {
        UpdateState::Available => {
            if let Some(v) = &doc.update.latest_version {
                s.push_str(&format!("; update {v} available"));
            }
        }
        UpdateState::Unknown | UpdateState::UpToDate => {}
        other => s.push_str(&format!("; updates: {other}")),
    }
    s
}
