//! Business OS numbers, as a table (run by `bench/system-bench.sh`), all in one dend run:
//!
//! - `den system update` to a good image until committed, and its parts: writing the slot, the
//!   new OS's boot (boot to its first passing check), the health window;
//! - from the first boot of an image whose kernel panics, and of one whose agent never reports,
//!   until the previous OS is healthy again: against the goal, one health window plus one boot;
//! - a dend restart under the running business OS: until the agent answers again.
//!
//! By default under QEMU (TCG on this host), with the shipped `system` image and its variants.
//! With `--lab`, the same steps run in the KVM lab, where dend picks den-vmm: a static dend and
//! den inside the lab's outer guest, with the lab's busybox-rooted variants
//! ([`den_tests::system::lab_images`]).
//!
//! Usage: system-bench <dend> [--lab]

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::lab::{Lab, LAB_ATTEMPTS};
use den_tests::netns::NetNs;
use den_tests::system::{build_images, healthy, last_update, status, step_time, wait_status};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const WINDOW: u64 = 30;

/// What one run measured.
struct Run {
    /// The engine, for the table's title.
    engine: String,
    /// dend start to the business OS healthy, seconds.
    first: f64,
    /// The good update's record.
    good: Value,
    /// The bad updates' records, with what was wrong with them.
    bad: Vec<(&'static str, Value)>,
    /// dend restart to the agent answering, seconds.
    reconnect: f64,
}

const BAD: [(&str, &str, &str); 2] =
    [("kernel panics every boot", "system-panic", "sys-panic"), ("agent never reports", "system-mute", "sys-mute")];

fn config(network: &str, memory: u32) -> String {
    format!(
        "[docker]\nenabled = false\n\n[system]\ncpus = 1\nmemory_mib = {memory}\ndata_disk_mib = 256\nnetwork = \"{network}\"\n\
         http_check = \"http://127.0.0.1:8080/healthz\"\ncheck_interval_secs = 1\nhealth_window_secs = {WINDOW}\n\
         ready_timeout_secs = {WINDOW}\nmax_failed_boots = 2\n"
    )
}

/// Runs `den system update IMAGE` and returns the update's record.
fn update(d: &Dend, image: &str) -> Value {
    let (_, out, err) = d.den(&["system", "update", image]);
    let u = last_update(&status(d));
    assert!(u["outcome"] != "in_progress", "{out}{err}");
    u
}

fn qemu(dend: &str) -> Run {
    build_images();
    let ns = NetNs::new("sysbench");
    let t = Instant::now();
    let mut d = Dend::start_in_with_config(Path::new(dend), &ns, &config("default", 384));
    wait_status(&d, Duration::from_secs(300), "healthy", healthy);
    let first = t.elapsed().as_secs_f64();
    let good = update(&d, "system-v2");
    let bad = BAD.iter().map(|(what, image, _)| (*what, update(&d, image))).collect();
    let before = d.vm("system")["running"]["pid"].clone();
    let t = Instant::now();
    d.terminate();
    d.spawn();
    d.sh_until_ok("system", "true");
    let reconnect = t.elapsed().as_secs_f64();
    assert_eq!(d.vm("system")["running"]["pid"], before, "the business OS kept its engine process");
    Run { engine: "QEMU TCG, 1 vCPU, 384 MiB".into(), first, good, bad, reconnect }
}

/// The lab's steps. Its outer guest has busybox, not e2fsprogs and coreutils: busybox's mke2fs
/// stands in for the `mkfs.ext4` dend runs to make the data disk (an ext2 disk, which the OS's
/// ext4 driver mounts), and busybox's cp, without GNU's sparse and reflink options, for `cp`.
const LAB_SCRIPT: &str = r#"
set -u
D=/tmp/den; O=/lab/out; mkdir -p $D $O /lab/bin
cat > /lab/bin/mkfs.ext4 <<'END'
#!/bin/sh
for a; do last=$a; done
exec busybox mke2fs -F -L den-data "$last"
END
cat > /lab/bin/cp <<'END'
#!/bin/sh
for a; do shift; case $a in --sparse=*|--reflink=*) ;; *) set -- "$@" "$a";; esac; done
exec busybox cp "$@"
END
chmod 755 /lab/bin/mkfs.ext4 /lab/bin/cp; export PATH=/lab/bin:$PATH
up() { cut -d' ' -f1 /proc/uptime | tr -d .; }
den() { /lab/den --socket $D/run/dend.sock "$@"; }
start_dend() {
  /lab/dend --config /lab/den.toml --data-dir $D --image-store /lab/store --listen off --ssh-listen off >> $D/dend.log 2>&1 &
  i=0; while ! den vm ls >/dev/null 2>&1; do
    i=$((i+1)); [ $i -lt 300 ] || { echo LAB-DEND-DID-NOT-START; cat $D/dend.log; exit 9; }; sleep 0.1; done
}
healthy() { den --json system status --health 1 | tr -d ' \n' | grep -q '"ok":true'; }
t0=$(up); start_dend
i=0; until healthy; do i=$((i+1)); [ $i -lt 600 ] || { echo LAB-NEVER-HEALTHY; den system status; tail -50 $D/dend.log; exit 8; }; sleep 0.25; done
echo "LAB-FIRST-MS=$(( ($(up) - t0) * 10 ))"
den --json vm inspect system | tr -d ' \n' | grep -o '"engine":"[a-z]*"'
for img in sys2 sys-panic sys-mute; do
  den system update $img > $O/$img.log 2>&1; echo "LAB-UPDATE $img exit $?"
  den --json system status > $O/$img.json
done
PID=$(pidof den-vmm)
t0=$(up); kill -TERM $(pidof dend); while pidof dend >/dev/null; do sleep 0.05; done; start_dend
until den vm exec system -- true >/dev/null 2>&1; do sleep 0.05; done
echo "LAB-RECONNECT-MS=$(( ($(up) - t0) * 10 ))"
[ "$(pidof den-vmm)" = "$PID" ] && echo LAB-SAME-VMM
kill -TERM $(pidof dend)
"#;

async fn lab_once(lab: &Lab) -> Result<Run, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    den_tests::system::lab_images(dir.path());
    lab.put_tree(dir.path(), "/lab/store").await;
    lab.put(&den_tests::images::dend_static_binary(), "/lab/dend", 0o755).await;
    lab.put(&den_tests::images::den_cli_static_binary(), "/lab/den", 0o755).await;
    let toml = dir.path().join("den.toml");
    let cfg = config("", 256).replace("[system]\n", "[system]\nimage = \"sys1\"\n");
    std::fs::write(&toml, cfg).map_err(|e| e.to_string())?;
    lab.put(&toml, "/lab/den.toml", 0o644).await;
    let out = lab.try_sh(LAB_SCRIPT, Duration::from_secs(900)).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}");
    assert_eq!(out.code, Some(0), "{}", lab.describe(&out));
    assert!(text.contains("\"engine\":\"vmm\""), "dend picks den-vmm in the lab: {}", lab.describe(&out));
    assert!(text.contains("LAB-SAME-VMM"), "the OS kept its den-vmm across the restart: {}", lab.describe(&out));
    let ms = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse::<f64>().ok()).map(|v| v / 1000.0);
    let mut bad = vec![];
    for (what, _, image) in BAD {
        bad.push((what, lab_update(lab, image).await?));
    }
    Ok(Run {
        engine: "den-vmm in the KVM lab, 1 vCPU, 256 MiB".into(),
        first: ms("LAB-FIRST-MS=").ok_or("no LAB-FIRST-MS")?,
        good: lab_update(lab, "sys2").await?,
        bad,
        reconnect: ms("LAB-RECONNECT-MS=").ok_or("no LAB-RECONNECT-MS")?,
    })
}

/// The record of the lab's update to `image`, from the status the script saved after it.
async fn lab_update(lab: &Lab, image: &str) -> Result<Value, String> {
    let bytes =
        lab.agent.get_file(&format!("/lab/out/{image}.json"), den_tests::EXEC).await.map_err(|e| e.to_string())?;
    let s: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{image}.json: {e}"))?;
    Ok(last_update(&s))
}

fn lab() -> Run {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    rt.block_on(async {
        for attempt in 1..=LAB_ATTEMPTS {
            match lab_once(&Lab::start().await).await {
                Ok(run) => return run,
                Err(e) if attempt < LAB_ATTEMPTS => {
                    eprintln!(
                        "lab: attempt {attempt} of {}: the outer guest died or wedged; a fresh lab: {e}",
                        LAB_ATTEMPTS
                    )
                }
                Err(e) => panic!("lab: the outer guest died or wedged on every attempt; the last: {e}"),
            }
        }
        unreachable!("the loop returns or panics")
    })
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn print(run: &Run) {
    let good = &run.good;
    assert_eq!(good["outcome"], "committed", "{good:#}");
    let started = good["started"].as_u64().unwrap_or(0);
    let ended = good["ended"].as_u64().unwrap_or(0);
    let trial = step_time(good, "slot ").unwrap_or(started);
    let boot_at = step_time(good, "booting").unwrap_or(trial);
    let healthy_at = step_time(good, "first health check passed").unwrap_or(boot_at);
    let boot = healthy_at.saturating_sub(boot_at);
    let goal = WINDOW * 1000 + boot;

    println!("\nBusiness OS ({}; health window {WINDOW} s, ready timeout {WINDOW} s)\n", run.engine);
    println!("| | seconds | against the goal |");
    println!("|---|---|---|");
    println!("| dend start to the business OS healthy (made from the image, first boot) | {:.1} | |", run.first);
    println!("| `den system update` (good image) to committed | {:.1} | |", secs(ended - started));
    println!("| ... writing the slot | {:.1} | |", secs(trial.saturating_sub(started)));
    println!(
        "| ... stopping the old OS, booting the new one to its first passing check | {:.1} | |",
        secs(healthy_at.saturating_sub(trial))
    );
    println!("| ... the health window | {:.1} | |", secs(ended.saturating_sub(healthy_at)));
    println!("| goal for a rollback: one window + one boot ({WINDOW} s + {:.1} s) | {:.1} | |", secs(boot), secs(goal));
    for (what, u) in &run.bad {
        assert_eq!(u["outcome"], "rolled_back", "{u:#}");
        let from = step_time(u, "booting").unwrap_or(0);
        let took = u["ended"].as_u64().unwrap_or(0).saturating_sub(from);
        let why = u["why"].as_str().unwrap_or("");
        let why = why.split(" (").next().unwrap_or(why);
        println!(
            "| bad boot to rolled back: {what} | {:.1} | {:.2}x of the goal ({why}) |",
            secs(took),
            took as f64 / goal as f64
        );
    }
    println!("| dend restart under the running OS, to the agent answering again | {:.1} | |", run.reconnect);
    for (what, u) in &run.bad {
        println!("\nsteps of the update whose {what}, in seconds from its boot:");
        let from = step_time(u, "booting").unwrap_or(0) as f64;
        for s in u["steps"].as_array().into_iter().flatten() {
            let at = (s["time"].as_u64().unwrap_or(0) as f64 - from) / 1000.0;
            println!("  {at:+7.1}  {}", s["what"].as_str().unwrap_or(""));
        }
        println!("  {:+7.1}  ended", (u["ended"].as_u64().unwrap_or(0) as f64 - from) / 1000.0);
    }
}

fn main() {
    let dend = std::env::args().nth(1).expect("usage: system-bench <dend> [--lab]");
    let run = if std::env::args().any(|a| a == "--lab") { lab() } else { qemu(&dend) };
    print(&run);
}
