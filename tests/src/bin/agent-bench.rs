//! Agent channel numbers under QEMU: one-shot round trip (info), exec round trip (`true`), and
//! stream throughput both ways. Prints a table; run by `bench/agent-bench.sh`.

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use den_tests::{images, Guest, GuestOptions};
use std::time::{Duration, Instant};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn timed<F, Fut>(n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed());
    }
    v.sort();
    v
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let store = images::shared_store();
    let image = images::build_builtin(&store, "base");
    let (guest, c) = Guest::boot(&store, &image, GuestOptions::default()).await;
    println!("guest: base under QEMU TCG, agent answered {:.2}s after QEMU started", guest.boot_secs);

    let info = timed(n, || async { c.info().await.map(drop).expect("info") }).await;
    let exec = timed(n, || async {
        let o = c.exec_output(&["true"], Bytes::new(), den_tests::EXEC).await.expect("exec");
        assert_eq!(o.code, Some(0));
    })
    .await;

    // Baseline: what one fork+exec of the same program costs inside the guest, without the agent.
    let loops = 100;
    let script =
        format!("s=$(date +%s%N); for i in $(seq {loops}); do /bin/true; done; e=$(date +%s%N); echo $((e-s))");
    let o = c.exec_output(&["/bin/bash", "-c", &script], Bytes::new(), den_tests::EXEC).await.expect("baseline");
    let spawn_ms = String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().unwrap_or(f64::NAN) / 1e6 / loops as f64;

    let mib = 64usize;
    let data = Bytes::from(vec![0x5au8; mib << 20]);
    let t = Instant::now();
    let o = c.exec_output(&["/bin/sh", "-c", "cat > /dev/null"], data.clone(), den_tests::EXEC).await.expect("upload");
    assert_eq!(o.code, Some(0));
    let up = mib as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let o = c
        .exec_output(&["head", "-c", &format!("{}", mib << 20), "/dev/zero"], Bytes::new(), den_tests::EXEC)
        .await
        .expect("download");
    assert_eq!(o.stdout.len(), mib << 20);
    let down = mib as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let o = c.exec_output(&["cat"], data, den_tests::EXEC).await.expect("echo");
    assert_eq!(o.stdout.len(), mib << 20);
    let echo = mib as f64 / t.elapsed().as_secs_f64();

    println!();
    println!("| measurement ({n} runs)            | p50 ms | p99 ms |");
    println!("|-----------------------------------|-------:|-------:|");
    println!("| one-shot round trip (info)        | {:>6.2} | {:>6.2} |", pct(&info, 0.5), pct(&info, 0.99));
    println!("| exec round trip (`true`)          | {:>6.2} | {:>6.2} |", pct(&exec, 0.5), pct(&exec, 0.99));
    println!("| in-guest fork+exec of true (bash) | {spawn_ms:>6.2} |        |");
    println!("| ratio exec p50 / in-guest spawn   | {:>5.2}x |        |", pct(&exec, 0.5) / spawn_ms);
    println!();
    println!("| stream ({mib} MiB)                  | MiB/s  |");
    println!("|-----------------------------------|-------:|");
    println!("| host -> guest (cat > /dev/null)   | {up:>6.1} |");
    println!("| guest -> host (head /dev/zero)    | {down:>6.1} |");
    println!("| both ways (cat echo)              | {echo:>6.1} |");
    drop(guest);
}
