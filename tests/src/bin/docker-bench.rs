//! Docker bridge numbers, side by side in one run (run by `bench/docker-bench.sh`): the same
//! calls through the bridge on the host and straight to dockerd inside the sandbox VM.
//!
//! - one API call (`GET /_ping`, `GET /version`) on a kept-alive connection: a small client on
//!   each side (Rust here, Perl in the guest), so the difference is what the bridge adds;
//! - the `docker version` and `docker ps` commands, whole (CLI start-up included);
//! - `docker run --rm busybox true`, end to end;
//! - `docker logs` of a 16 MiB log, throughput;
//! - the cold wake: the sandbox stopped (as the resource saver does), then `docker info`.
//!
//! Under QEMU TCG (hosts whose /dev/kvm cannot run Linux) the guest side runs on an emulated CPU:
//! its clients are slower than the host's, which flatters nothing on the bridge's side.

// A benchmark's setup may panic: a step that cannot be taken ends the run with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::docker::{busybox_image, DockerCli};
use den_tests::images;
use den_tests::netns::NetNs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const API_CALLS: usize = 200;
const CLI_RUNS: usize = 10;
const RUN_RUNS: usize = 5;
const LOG_MIB: usize = 16;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Reads one HTTP/1.1 answer (Content-Length or chunked) from `r`: its body length.
fn read_answer(r: &mut BufReader<UnixStream>) -> usize {
    let mut line = String::new();
    let (mut length, mut chunked) = (0usize, false);
    r.read_line(&mut line).expect("status line");
    assert!(line.starts_with("HTTP/1.1 200"), "answer: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse().expect("content length");
        }
        chunked |= l == "transfer-encoding: chunked";
    }
    if !chunked {
        r.read_exact(&mut vec![0; length]).expect("body");
        return length;
    }
    let mut total = 0;
    loop {
        line.clear();
        r.read_line(&mut line).expect("chunk size");
        let n = usize::from_str_radix(line.trim(), 16).expect("chunk size");
        r.read_exact(&mut vec![0; n + 2]).expect("chunk");
        total += n;
        if n == 0 {
            return total;
        }
    }
}

/// Mean microseconds of `API_CALLS` calls of `GET path` on one kept-alive connection to `sock`
/// (after 10 unmeasured ones). A mean, not a median: the guest's clock under TCG ticks in
/// jiffies (4 ms), so its side can only time the whole run, and both sides are timed alike.
fn api_us(sock: &std::path::Path, path: &str) -> f64 {
    let s = UnixStream::connect(sock).expect("bridge socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut w = s.try_clone().expect("socket clone");
    let mut r = BufReader::new(s);
    let req = format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n");
    let mut call = || {
        w.write_all(req.as_bytes()).expect("request");
        read_answer(&mut r);
    };
    (0..10).for_each(|_| call());
    let t = Instant::now();
    (0..API_CALLS).for_each(|_| call());
    t.elapsed().as_secs_f64() * 1e6 / API_CALLS as f64
}

/// The guest-side twin of [`api_us`], in Perl (perl-base is in every Debian root).
const GUEST_API: &str = r#"
use IO::Socket::UNIX; use Time::HiRes qw(time);
my ($path, $n) = @ARGV;
my $s = IO::Socket::UNIX->new(Peer => "/run/docker.sock") or die "connect: $!";
my $t0;
for my $i (1 .. $n + 10) {
  $t0 = time if $i == 11;
  print $s "GET $path HTTP/1.1\r\nHost: docker\r\n\r\n";
  my $status = <$s>; $status =~ /^HTTP\/1.1 200/ or die "answer: $status";
  my $len = 0;
  while (my $h = <$s>) { $h =~ s/\r?\n$//; last if $h eq ""; $len = $1 if $h =~ /^content-length:\s*(\d+)/i; }
  $len > 0 or die "no content-length";
  read($s, my $body, $len);
}
printf "%.1f\n", (time - $t0) * 1e6 / $n;
"#;

/// Mean microseconds of the same calls inside the guest.
fn guest_api_us(d: &Dend, path: &str) -> f64 {
    let (code, out, err) =
        d.den(&["vm", "exec", "docker-sandbox", "--", "perl", "-e", GUEST_API, path, &API_CALLS.to_string()]);
    assert_eq!(code, 0, "perl in the guest: {err}");
    out.trim().parse().unwrap_or_else(|_| panic!("perl said {out:?}"))
}

/// Median milliseconds of `docker <args>` through the bridge.
fn cli_ms(cli: &DockerCli, args: &[&str], runs: usize) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                cli.ok(args);
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

/// Median milliseconds of `docker <args>` run inside the guest, timed there.
fn guest_cli_ms(d: &Dend, args: &str, runs: usize) -> f64 {
    let script = format!(
        "for i in $(seq {runs}); do s=$(date +%s%N); docker {args} >/dev/null || exit 1; e=$(date +%s%N); echo $(((e-s)/1000)); done"
    );
    let (code, out, err) = d.den(&["vm", "exec", "docker-sandbox", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "docker {args} in the guest: {err}");
    median(out.lines().filter_map(|l| l.trim().parse::<f64>().ok()).map(|us| us / 1000.0).collect())
}

fn main() {
    let dend = std::env::args().nth(1).expect("usage: docker-bench <dend binary>");
    let store = images::shared_store();
    images::build_builtin(&store, "docker");
    let ns = NetNs::new("dkbn");
    let d = Dend::start_in_with_config(std::path::Path::new(&dend), &ns, "[docker]\nmemory_mib = 2048\n");
    let sock = d.dir.path().join("run/docker.sock");
    let cli = DockerCli::new(&sock);
    let t = Instant::now();
    while !cli.run(&["version"]).status.success() {
        assert!(t.elapsed() < Duration::from_secs(900), "the sandbox never answered");
        std::thread::sleep(Duration::from_secs(2));
    }
    let first_start = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("busybox.tar");
    busybox_image(&tar).expect("busybox image");
    cli.ok(&["load", "-i", tar.to_str().unwrap_or_default()]);

    let mut rows: Vec<(String, f64, f64, &str)> = vec![];
    for path in ["/_ping", "/v1.41/version"] {
        rows.push((
            format!("GET {path} (kept alive, mean)"),
            api_us(&sock, path) / 1000.0,
            guest_api_us(&d, path) / 1000.0,
            "ms",
        ));
    }
    for (what, args) in [("docker version", &["version"][..]), ("docker ps", &["ps"])] {
        rows.push((what.into(), cli_ms(&cli, args, CLI_RUNS), guest_cli_ms(&d, &args.join(" "), CLI_RUNS), "ms"));
    }
    let run = ["run", "--rm", "busybox", "true"];
    rows.push((
        "docker run --rm busybox true".into(),
        cli_ms(&cli, &run, RUN_RUNS),
        guest_cli_ms(&d, &run.join(" "), RUN_RUNS),
        "ms",
    ));

    let fill =
        format!("yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c {}", LOG_MIB << 20);
    let id = cli.ok(&["run", "-d", "busybox", "sh", "-c", &fill]);
    let id = id.trim();
    cli.ok(&["wait", id]);
    let through = LOG_MIB as f64 / (cli_ms(&cli, &["logs", id], 3) / 1000.0);
    let inside = LOG_MIB as f64 / (guest_cli_ms(&d, &format!("logs {id}"), 3) / 1000.0);
    rows.push((format!("docker logs ({LOG_MIB} MiB)"), through, inside, "MiB/s"));
    cli.ok(&["rm", id]);

    // The cold wake: stopped as the resource saver stops it; the next call starts it.
    let (code, _, err) = d.den(&["vm", "stop", "docker-sandbox"]);
    assert_eq!(code, 0, "{err}");
    let wake = cli_ms(&cli, &["info"], 1) / 1000.0;

    println!(
        "Docker bridge vs. inside the sandbox (docker image, QEMU; medians unless said; guest side timed in the guest)"
    );
    println!("{:<34} {:>14} {:>14} {:>14}", "", "bridge", "inside", "difference");
    for (what, b, i, unit) in rows {
        let diff = if unit == "ms" { format!("{:+.2} ms", b - i) } else { format!("{:.0}%", 100.0 * b / i) };
        println!("{what:<34} {b:>11.2} {unit:<2} {i:>11.2} {unit:<2} {diff:>14}");
    }
    println!("{:<34} {:>11.1} s", "first start (create + boot)", first_start);
    println!("{:<34} {:>11.1} s", "cold wake (stopped -> docker info)", wake);
}
