//! SPEC revision 3, in-process on the harness: an `activate` that never
//! reached the portal (DNS failure, refused connect, TLS handshake) puts
//! nothing in doubt, however often it is retried; one whose answer was lost
//! (a timeout after sending) does. Then the portal answers: `active`.

use wispanel_core::{Endpoint, ErrorKind, LicenseState};
use wispanel_license::testing::*;

#[tokio::test(start_paused = true)]
async fn a_refused_activate_puts_nothing_in_doubt() {
    let rows = [
        (Reply::Unsent(ErrorKind::Connect), ErrorKind::Connect, false),
        (Reply::Unsent(ErrorKind::Tls), ErrorKind::Tls, false),
        (Reply::Timeout, ErrorKind::Timeout, true),
        (Reply::Failed(ErrorKind::Connect), ErrorKind::Connect, true),
    ];
    for (reply, kind, doubt) in rows {
        let up_at = T0.add(secs(600));
        let r = reply.clone();
        let h = Harness::new(
            DEFAULTS,
            move |_, t| {
                if t < up_at { r.clone() } else { Reply::Valid }
            },
        );
        let d = h.start(7);
        tokio::time::sleep(secs(300)).await;
        let reqs = h.portal().licence_requests();
        assert!(reqs.len() >= 3, "{reply:?}: {reqs:?}");
        assert!(
            reqs.iter().all(|(e, _)| *e == Endpoint::Activate),
            "{reqs:?}"
        );
        let s = h.status().await;
        assert_eq!(s.portal.activation_in_doubt, doubt, "{reply:?}");
        let codes: Vec<_> = s.warnings.iter().map(|w| w.code.as_str()).collect();
        assert_eq!(
            codes.contains(&"activation_in_doubt"),
            doubt,
            "{reply:?}: {codes:?}"
        );
        let e = s.portal.last_error.as_ref().expect("a last_error");
        assert_eq!(e.kind, kind, "{reply:?}");
        assert_eq!(s.license.state, LicenseState::Unknown, "{reply:?}");
        tokio::time::sleep(secs(1200)).await;
        let s = h.status().await;
        assert_eq!(s.license.state, LicenseState::Active, "{reply:?}");
        assert!(!s.portal.activation_in_doubt, "{reply:?}");
        d.stop().await;
    }
}
