//! The fleet figures of `docs/PERFORMANCE.md`, without building the rest of
//! the workspace:
//!
//!     cargo run --release -p wispanel-fleet --example fleet [-- --hosts N]
//!
//! Outages of 10 min, 1 h and 6 h; the 6 h outage against a portal with a
//! capacity of 1.5x the steady load; and the same with one host in four
//! running its clock a day off (half ahead, half behind), the portal's 429
//! naming an HTTP date, once with answers that carry `Date` (the core reads
//! deadlines in the portal's clock) and once without (it cannot, and reads
//! them in its own, as the first release did).

use std::time::{Duration, Instant};
use wispanel_fleet::{FleetParams, FleetReport, simulate};

const HOUR: Duration = Duration::from_secs(3600);

fn main() {
    let mut hosts = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--hosts", Some(n)) => hosts = n,
            _ => {
                eprintln!("usage: fleet [--hosts N]");
                std::process::exit(2);
            }
        }
    }
    let base = FleetParams {
        hosts,
        ..FleetParams::default()
    };
    let skewed = FleetParams {
        outage: 6 * HOUR,
        capacity_factor: Some(1.1),
        skewed: Some((4, 86_400)),
        retry_after_date: true,
        ..base.clone()
    };
    let scenarios: Vec<(&str, FleetParams)> = vec![
        (
            "10 min outage",
            FleetParams {
                outage: HOUR / 6,
                ..base.clone()
            },
        ),
        (
            "1 h outage",
            FleetParams {
                outage: HOUR,
                ..base.clone()
            },
        ),
        (
            "6 h outage",
            FleetParams {
                outage: 6 * HOUR,
                ..base.clone()
            },
        ),
        (
            "6 h outage, portal capacity 1.5x steady",
            FleetParams {
                outage: 6 * HOUR,
                capacity_factor: Some(1.5),
                ..base.clone()
            },
        ),
        (
            "6 h outage, capacity 1.1x, 1 host in 4 a day off, answers with Date",
            skewed.clone(),
        ),
        (
            "the same, answers without Date (deadlines read in the local clock)",
            FleetParams {
                date_header: false,
                ..skewed
            },
        ),
    ];
    let mut rows = Vec::new();
    for (name, p) in scenarios {
        let t = Instant::now();
        let r = simulate(p);
        println!("\n{name} (simulated in {:.1} s)", t.elapsed().as_secs_f64());
        print!("{}", r.render());
        rows.push((name, r));
    }
    println!("\nMarkdown:\n");
    println!(
        "| outage | client | steady | during (mean / peak) | after (first hour mean / peak) | during ratio | after ratio |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, r) in rows.iter().take(3) {
        markdown(name, r);
    }
}

fn markdown(name: &str, r: &FleetReport) {
    let outage = name.trim_end_matches(" outage");
    for (client, f) in [
        ("core, licence only", &r.core_licence),
        ("core, all endpoints", &r.core_all),
        ("naive", &r.naive),
    ] {
        println!(
            "| {outage} | {client} | {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2}x | {:.2}x |",
            f.steady,
            f.during_mean,
            f.during_peak,
            f.first_hour_after_mean,
            f.after_peak,
            f.during_ratio(),
            f.after_ratio()
        );
    }
}
