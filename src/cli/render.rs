//! The status summary an administrator reads: the headline (state and most
//! urgent warning, the first line a monitoring plugin shows), the facts, and
//! what to do next. Pure: a document in, text out.

use crate::api::StatusDocument;
use wispanel_core::timestamp::Timestamp;
use wispanel_core::warnings::{Warning, WarningCode};
use wispanel_core::{LicenseState, UpdateState};

fn when(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_rfc3339().replace('T', " ").replace('Z', " UTC"))
        .unwrap_or_else(|| "-".into())
}

fn limit(n: Option<i64>, what: &str) -> Option<String> {
    n.map(|n| {
        if n < 0 {
            format!("unlimited {what}")
        } else {
            format!("{n} {what}")
        }
    })
}

/// What an administrator should do in each state.
pub fn advice(doc: &StatusDocument) -> Option<String> {
    let l = &doc.license;
    Some(match l.state {
        LicenseState::Active => return None,
        LicenseState::Unconfigured => "No licence key is set. Run `sudo wispanel-license activate` and paste the key, or set license_key_file in the configuration.".into(),
        LicenseState::Unknown => "The portal has not given a verdict for this key yet. If this lasts, run `wispanel-license doctor` to see why the portal cannot be reached.".into(),
        LicenseState::Grace => format!(
            "The portal cannot be reached; the licence stays valid until {}. Run `wispanel-license doctor` to find out why.",
            when(l.grace_until)
        ),
        LicenseState::Lapsed => "The portal has been unreachable for longer than the grace period. Restore access to the portal (`wispanel-license doctor`), then run `wispanel-license check`.".into(),
        LicenseState::InvalidKey => "The portal does not know this key. Check it and activate the right one: `sudo wispanel-license activate`.".into(),
        LicenseState::Expired => "The licence has expired. Renew it in your WisPanel account, then run `wispanel-license check`.".into(),
        LicenseState::Suspended => "The licence is suspended. Contact WisPanel support; once it is reinstated, `wispanel-license check` picks it up.".into(),
        LicenseState::Revoked => "The licence was revoked. Contact WisPanel support or buy a new licence.".into(),
        LicenseState::HardwareMismatch => "The licence is bound to other hardware. Release it on the old host (`sudo wispanel-license deactivate` there, or in your WisPanel account), then run `sudo wispanel-license activate` here to bind it to this host.".into(),
        LicenseState::MaxActivations => "The licence is already active on as many hosts as it allows. Deactivate it on a host you no longer use (`sudo wispanel-license deactivate`), then run `sudo wispanel-license activate` here.".into(),
        LicenseState::VersionTooLow => "This WisPanel version is too old for the licence. Upgrade the panel (`wispanel-license update download`), then run `wispanel-license check`.".into(),
    })
}

/// What an administrator should do about a warning.
pub fn warning_advice(w: &Warning, doc: &StatusDocument) -> String {
    match w.code {
        WarningCode::GraceEnding => format!(
            "The portal has not answered since {}, and the licence lapses at {}. Restore this host's access to the portal before then (`wispanel-license doctor` shows what is in the way), then run `wispanel-license check`.",
            when(doc.portal.last_success_at),
            when(w.at.or(doc.license.grace_until))
        ),
        WarningCode::StateNotSaved => "The daemon cannot write state.json or history.jsonl in its state directory; its log says why (`journalctl -u wispanel-licensed`). Free disk space or make the directory writable again; the daemon retries by itself, and until then a restart would forget the last verdict.".into(),
        WarningCode::ExpiringSoon => format!(
            "Renew the licence in your WisPanel account before {}, then run `wispanel-license check` to pick up the new date. (warn_before_expiry in the configuration sets how early this warning comes.)",
            when(w.at.or(doc.license.expires_at))
        ),
        WarningCode::HardwareChanged => "This host's hardware_id has changed (new board or disk, a cloned VM?); a check runs at once. If the portal answers hardware_mismatch, release the licence on the old hardware and run `sudo wispanel-license activate` here. `wispanel-license hardware-id --explain` shows which sources changed.".into(),
        WarningCode::ActivationInDoubt => "Usually nothing: the activation is retried with the same idempotency key and settles with the portal's next answer. If this lasts, run `wispanel-license doctor`.".into(),
        WarningCode::ClockSkew => "Fix this host's time synchronisation (`timedatectl status`; enable systemd-timesyncd or chrony). The licence is safe, since the daemon reads the portal's dates in the portal's clock, but TLS and logs on this host are not.".into(),
        WarningCode::UpdatesExpired => "Renew the update entitlement in your WisPanel account to download new releases; the licence itself stays valid.".into(),
        WarningCode::Other => "This client does not know this warning; see its message, or update wispanel-license.".into(),
    }
}

/// The first line: the state and, when there is one, the most urgent warning
/// (what a monitoring system shows).
pub fn headline(doc: &StatusDocument) -> String {
    let l = &doc.license;
    let licensed = if l.licensed {
        "licensed"
    } else {
        "NOT licensed"
    };
    let mut s = format!("Licence:   {} ({licensed})", l.state);
    if let Some(w) = doc.most_urgent_warning() {
        s.push_str(&format!(", WARNING {}: {}", w.code, w.message));
        match doc.warnings.len() - 1 {
            0 => {}
            1 => s.push_str(" (and 1 more warning)"),
            n => s.push_str(&format!(" (and {n} more warnings)")),
        }
    }
    s
}

/// The human summary of a status document.
pub fn render(doc: &StatusDocument) -> String {
    let l = &doc.license;
    let mut s = headline(doc);
    s.push('\n');
    let key_tier: Vec<String> = [l.key.clone(), l.tier.as_ref().map(|t| format!("tier {t}"))]
        .into_iter()
        .flatten()
        .collect();
    if !key_tier.is_empty() {
        s.push_str(&format!("Key:       {}\n", key_tier.join(", ")));
    }
    if let Some(r) = &l.reason {
        s.push_str(&format!("Reason:    {}: {}\n", r.code, r.message));
    }
    if l.checked_at.is_some() {
        s.push_str(&format!("Checked:   {}\n", when(l.checked_at)));
    }
    if l.valid_until.is_some() {
        s.push_str(&format!("Trusted until: {}\n", when(l.valid_until)));
    }
    if l.grace_until.is_some() && l.state != LicenseState::Active {
        let verb = if l.state == LicenseState::Lapsed {
            "Lapsed at"
        } else {
            "Grace until"
        };
        s.push_str(&format!("{verb}: {}\n", when(l.grace_until)));
    }
    if l.expires_at.is_some() {
        s.push_str(&format!("Expires:   {}\n", when(l.expires_at)));
    }
    if let Some(lim) = &l.limits {
        let parts: Vec<String> = [
            limit(lim.max_users, "users"),
            limit(lim.max_domains, "domains"),
            limit(lim.max_databases, "databases"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            s.push_str(&format!("Limits:    {}\n", parts.join(", ")));
        }
    }
    let u = &doc.update;
    let current = u.current_version.as_deref().unwrap_or("?");
    let update = match u.state {
        UpdateState::Available => format!(
            "{} available (running {current})",
            u.latest_version.as_deref().unwrap_or("a newer version")
        ),
        UpdateState::UpToDate => format!("up to date ({current})"),
        UpdateState::Unknown => format!("not checked yet (running {current})"),
        UpdateState::UpdatesExpired => {
            "update entitlement expired: renew it to download updates".into()
        }
        UpdateState::VersionTooLow => {
            format!("version {current} is too old to update from the portal")
        }
        UpdateState::NotEntitled => "this licence is not entitled to downloads".into(),
    };
    s.push_str(&format!("Update:    {update}\n"));
    let p = &doc.portal;
    s.push_str(&format!(
        "Portal:    last answer {}, next check {}\n",
        when(p.last_success_at),
        when(p.next_validate_at)
    ));
    if let Some(e) = &p.last_error {
        let status = e
            .http_status
            .map(|s| format!(" HTTP {s}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "Last error: {}{status}: {} ({} in a row)\n",
            e.kind.as_str(),
            e.message,
            p.consecutive_failures
        ));
    }
    if let Some(t) = p.rate_limited_until {
        s.push_str(&format!(
            "Rate limited until {} (the portal asked us to wait)\n",
            when(Some(t))
        ));
    }
    match &doc.hardware_id {
        Some(h) if doc.hardware_changed => s.push_str(&format!(
            "Hardware:  {h} (CHANGED since the last verdict; a check runs at once)\n"
        )),
        Some(h) => s.push_str(&format!("Hardware:  {h}\n")),
        None => s.push_str(
            "Hardware:  cannot be computed (see `wispanel-license hardware-id --explain`)\n",
        ),
    }
    for (i, w) in doc.warnings.iter().enumerate() {
        let label = if i == 0 { "Warnings:" } else { "" };
        s.push_str(&format!("{label:<10} {}: {}\n", w.code, w.message));
    }
    let todo: Vec<String> = advice(doc)
        .into_iter()
        .chain(
            doc.warnings
                .iter()
                .map(|w| format!("{}: {}", w.code, warning_advice(w, doc))),
        )
        .collect();
    if !todo.is_empty() {
        s.push_str("\nWhat to do:\n");
        for t in todo {
            s.push_str(&format!("  - {t}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::example_document;

    fn warned(codes: &[WarningCode]) -> StatusDocument {
        let mut doc = example_document();
        doc.warnings = codes
            .iter()
            .map(|&code| Warning {
                code,
                message: format!("{code} message"),
                at: Some(Timestamp::from_unix_secs(1_800_000_000)),
            })
            .collect();
        doc
    }

    #[test]
    fn the_first_line_names_the_state_and_the_most_urgent_warning() {
        let doc = example_document();
        assert_eq!(headline(&doc), "Licence:   active (licensed)");
        let doc = warned(&[WarningCode::ExpiringSoon]);
        assert_eq!(
            headline(&doc),
            "Licence:   active (licensed), WARNING expiring_soon: expiring_soon message"
        );
        let doc = warned(&[WarningCode::GraceEnding, WarningCode::ClockSkew]);
        assert_eq!(
            render(&doc).lines().next(),
            Some(
                "Licence:   active (licensed), WARNING grace_ending: grace_ending message (and 1 more warning)"
            )
        );
    }

    #[test]
    fn what_to_do_covers_every_warning() {
        let doc = warned(&WarningCode::ALL);
        let text = render(&doc);
        let todo = text
            .split("\nWhat to do:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("no What to do in:\n{text}"));
        for c in WarningCode::ALL {
            assert!(
                todo.contains(&format!("  - {c}: ")),
                "{c} has no advice:\n{text}"
            );
            assert!(
                text.contains(&format!("{c}: {c} message")),
                "{c} not listed:\n{text}"
            );
        }
        // A healthy licence has nothing to do.
        assert!(!render(&example_document()).contains("What to do"));
    }
}
