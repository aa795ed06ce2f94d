//! den-vmm's control API and console socket in the KVM lab, against a real Linux guest: state,
//! pause/resume (the guest stands still), console replay + live output, metrics, and
//! Ctrl-Alt-Del ending in a clean shutdown with exit code 0.

use den_agent_proto::msg::ForwardTarget;
use den_tests::lab::{Lab, VMM};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Prints a tick on the console five times a second, forever.
const TICKER: &str = "echo LAB-READY\ni=0\nwhile true; do i=$((i+1)); echo LAB-TICK-$i; sleep 0.2; done\n";

struct Api {
    rd: BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
    wr: tokio::io::WriteHalf<tokio::io::DuplexStream>,
}

impl Api {
    async fn call(&mut self, op: &str) -> Value {
        self.wr.write_all(format!("{}\n", json!({ "op": op })).as_bytes()).await.unwrap();
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), self.rd.read_line(&mut line)).await.unwrap().unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
    }

    async fn console(&mut self) -> String {
        self.call("console_recent").await["result"]["output"].as_str().unwrap_or_default().to_string()
    }
}

fn last_tick(console: &str) -> u64 {
    console.lines().filter_map(|l| l.trim().strip_prefix("LAB-TICK-")?.parse().ok()).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_den_vmm_api_console_pause_ctrl_alt_del() {
    let lab = Lab::start().await;
    lab.put_scenario("ticker", TICKER).await;
    let out = lab
        .sh(&format!(
            "({VMM} boot --kernel /lab/base/kernel --initrd /lab/ticker.img --cpus 2 --memory-mib 256 \
             --cmdline 'console=ttyS0 panic=-1 quiet' --api-sock /lab/api.sock --console socket:/lab/con.sock \
             </dev/null >/lab/vmm.out 2>/lab/vmm.err; echo $? >/lab/vmm.exit) >/dev/null 2>&1 &"
        ))
        .await;
    assert_eq!(out.code, Some(0), "{}", lab.describe(&out));
    lab.wait_for_file("/lab/api.sock", Duration::from_secs(30)).await;
    let io = lab.agent.forward_io(ForwardTarget::Unix { path: "/lab/api.sock".into() }).await.unwrap();
    let (rd, wr) = tokio::io::split(io);
    let mut api = Api { rd: BufReader::new(rd), wr };

    let info = api.call("info").await;
    assert_eq!(info["result"]["state"], "running", "{info}");
    assert_eq!(info["result"]["cpus"], 2);
    assert_eq!(info["result"]["devices"][0]["type"], 4, "virtio-rng: {info}");
    let bad = api.call("explode").await;
    assert_eq!(bad["error"]["code"], "invalid_request");

    let start = Instant::now();
    while last_tick(&api.console().await) < 3 {
        assert!(start.elapsed() < Duration::from_secs(90), "guest never ticked: {}", api.console().await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Paused: the guest does not run at all.
    assert_eq!(api.call("pause").await["result"]["state"], "paused");
    let (tick, exits) = (last_tick(&api.console().await), api.call("metrics").await["result"]["vcpu_exits"].clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(last_tick(&api.console().await), tick, "no ticks while paused");
    assert_eq!(api.call("metrics").await["result"]["vcpu_exits"]["io_out"], exits["io_out"]);
    assert_eq!(api.call("info").await["result"]["state"], "paused");
    assert_eq!(api.call("resume").await["result"]["state"], "running");
    let start = Instant::now();
    while last_tick(&api.console().await) <= tick {
        assert!(start.elapsed() < Duration::from_secs(30), "guest did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The console socket replays recent output, then streams live output.
    let mut con = lab.agent.forward_io(ForwardTarget::Unix { path: "/lab/con.sock".into() }).await.unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    loop {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), con.read(&mut buf)).await.unwrap().unwrap();
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if text.contains("LAB-READY") && last_tick(&text) > tick + 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "console socket: {text}");
    }

    // Every den-vmm thread runs under its seccomp filter.
    let out = lab.sh("for t in /proc/$(pidof den-vmm)/task/*; do grep -h '^Seccomp:' $t/status; done").await;
    let modes = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(modes.lines().count() >= 4 && modes.lines().all(|l| l.ends_with('2')), "{modes}");

    let m = api.call("metrics").await;
    assert!(m["result"]["vcpu_exits"]["io_out"].as_u64().unwrap() > 0, "{m}");
    assert!(m["result"]["devices"][0]["counters"]["bytes"].as_u64().is_some(), "{m}");

    // Ctrl-Alt-Del: den-agent (PID 1) shuts down cleanly; den-vmm exits 0.
    assert_eq!(api.call("ctrl_alt_del").await["ok"], true);
    lab.wait_for_file("/lab/vmm.exit", Duration::from_secs(60)).await;
    let out = lab.sh("cat /lab/vmm.exit /lab/vmm.err").await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("0\n"), "exit code after Ctrl-Alt-Del: {text}");
    assert!(text.contains("Ctrl-Alt-Del"), "{text}");
}
