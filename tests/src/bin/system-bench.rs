//! Business OS numbers, as a table (run by `bench/system-bench.sh`), all in one dend run, under
//! QEMU TCG on this host:
//!
//! - `den system update` to a good image until committed, and its parts: writing the slot, the
//!   new OS's boot (boot to its first passing check), the health window;
//! - from the first boot of an image whose kernel panics, and of one whose agent never reports,
//!   until the previous OS is healthy again: against the goal, one health window plus one boot;
//! - a dend restart under the running business OS: until the agent answers again.
//!
//! Usage: system-bench <dend>

use den_tests::dend::Dend;
use den_tests::netns::NetNs;
use den_tests::system::{build_images, healthy, last_update, status, step_time, wait_status};
use std::path::Path;
use std::time::{Duration, Instant};

const WINDOW: u64 = 30;

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Runs `den system update IMAGE` and returns the update's record.
fn update(d: &Dend, image: &str) -> serde_json::Value {
    let (_, out, err) = d.den(&["system", "update", image]);
    let u = last_update(&status(d));
    assert!(u["outcome"] != "in_progress", "{out}{err}");
    u
}

fn main() {
    let dend = std::env::args().nth(1).expect("usage: system-bench <dend>");
    build_images();
    let config = format!(
        "[docker]\nenabled = false\n\n[system]\ncpus = 1\nmemory_mib = 384\ndata_disk_mib = 256\n\
         http_check = \"http://127.0.0.1:8080/healthz\"\ncheck_interval_secs = 1\nhealth_window_secs = {WINDOW}\n\
         ready_timeout_secs = {WINDOW}\nmax_failed_boots = 2\n"
    );
    let ns = NetNs::new("sysbench");
    let t = Instant::now();
    let mut d = Dend::start_in_with_config(Path::new(&dend), &ns, &config);
    wait_status(&d, Duration::from_secs(300), "healthy", healthy);
    let first = t.elapsed().as_secs_f64();

    let good = update(&d, "system-v2");
    assert_eq!(good["outcome"], "committed", "{good:#}");
    let started = good["started"].as_u64().unwrap_or(0);
    let ended = good["ended"].as_u64().unwrap_or(0);
    let trial = step_time(&good, "slot ").unwrap_or(started);
    let boot_at = step_time(&good, "booting").unwrap_or(trial);
    let healthy_at = step_time(&good, "first health check passed").unwrap_or(boot_at);
    let boot = healthy_at.saturating_sub(boot_at);
    let goal = WINDOW * 1000 + boot;

    let mut rows = vec![];
    for (image, what) in [("system-panic", "kernel panics every boot"), ("system-mute", "agent never reports")] {
        let u = update(&d, image);
        assert_eq!(u["outcome"], "rolled_back", "{u:#}");
        let from = step_time(&u, "booting").unwrap_or(0);
        let took = u["ended"].as_u64().unwrap_or(0).saturating_sub(from);
        let why = u["why"].as_str().unwrap_or("");
        rows.push((what, took, why.split(" (").next().unwrap_or(why).to_string()));
    }

    let before = d.vm("system")["running"]["pid"].clone();
    let t = Instant::now();
    d.terminate();
    d.spawn();
    d.sh_until_ok("system", "true");
    let reconnect = t.elapsed().as_secs_f64();
    assert_eq!(d.vm("system")["running"]["pid"], before, "the business OS kept its engine process");

    println!("\nBusiness OS (QEMU TCG, 1 vCPU, 384 MiB; health window {WINDOW} s, ready timeout {WINDOW} s)\n");
    println!("| | seconds | against the goal |");
    println!("|---|---|---|");
    println!("| dend start to the business OS healthy (made from the image, first boot) | {first:.1} | |");
    println!("| `den system update` (good image) to committed | {:.1} | |", secs(ended - started));
    println!("| ... writing the slot | {:.1} | |", secs(trial.saturating_sub(started)));
    println!(
        "| ... stopping the old OS, booting the new one to its first passing check | {:.1} | |",
        secs(healthy_at.saturating_sub(trial))
    );
    println!("| ... the health window | {:.1} | |", secs(ended.saturating_sub(healthy_at)));
    println!("| goal for a rollback: one window + one boot ({WINDOW} s + {:.1} s) | {:.1} | |", secs(boot), secs(goal));
    for (what, took, why) in &rows {
        println!(
            "| bad boot to rolled back: {what} | {:.1} | {:.2}x of the goal ({why}) |",
            secs(*took),
            *took as f64 / goal as f64
        );
    }
    println!("| dend restart under the running OS, to the agent answering again | {reconnect:.1} | |");
}
