//! den-vmm's control API and console socket in the KVM lab, against a real Linux guest: state,
//! pause/resume (the guest stands still), console replay + live output, metrics, and
//! Ctrl-Alt-Del ending in a clean shutdown with exit code 0.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_agent_proto::msg::ForwardTarget;
use den_tests::lab::{Lab, SH_LIMIT, VMM};
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
    Lab::run_with_retry(api_console_pause_ctrl_alt_del).await;
}

/// `Err` only when the lab looks wedged (the inner guest stops making progress).
async fn api_console_pause_ctrl_alt_del(lab: Lab) -> Result<(), String> {
    lab.put_scenario("ticker", TICKER).await;
    let out = lab
        .sh(&format!(
            "({VMM} boot --kernel /lab/base/kernel --initrd /lab/ticker.img --cpus 2 --memory-mib 256 \
             --cmdline 'console=ttyS0 panic=-1 quiet' --api-sock /lab/api.sock --console socket:/lab/con.sock \
             </dev/null >/lab/vmm.out 2>/lab/vmm.err; echo $? >/lab/vmm.exit) >/dev/null 2>&1 &"
        ))
        .await;
    assert_eq!(out.code, Some(0), "{}", lab.describe(&out));
    lab.try_wait_for_file("/lab/api.sock", Duration::from_secs(30)).await?;
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
        if start.elapsed() > Duration::from_secs(90) {
            return Err(format!("guest never ticked: {}", api.console().await));
        }
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
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the guest did not resume".into());
        }
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
    let out =
        lab.try_sh("for t in /proc/$(pidof den-vmm)/task/*; do grep -h '^Seccomp:' $t/status; done", SH_LIMIT).await?;
    let modes = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(modes.lines().count() >= 4 && modes.lines().all(|l| l.ends_with('2')), "{modes}");

    let m = api.call("metrics").await;
    assert!(m["result"]["vcpu_exits"]["io_out"].as_u64().unwrap() > 0, "{m}");
    assert!(m["result"]["devices"][0]["counters"]["bytes"].as_u64().is_some(), "{m}");

    // Ctrl-Alt-Del: den-agent (PID 1) shuts down cleanly; den-vmm exits 0.
    assert_eq!(api.call("ctrl_alt_del").await["ok"], true);
    lab.try_wait_for_file("/lab/vmm.exit", Duration::from_secs(60)).await?;
    let out = lab.try_sh("cat /lab/vmm.exit /lab/vmm.err", SH_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("0\n"), "exit code after Ctrl-Alt-Del: {text}");
    assert!(text.contains("Ctrl-Alt-Del"), "{text}");

    guest_garbage_does_not_bring_den_vmm_down(&lab).await
}

/// Unbinds the virtio drivers, then writes random values to every device's registers, points
/// queues at random guest memory and notifies them, over and over (busybox `devmem`).
const GARBAGE: &str = r#"
echo LAB-GARBAGE-START
for d in /sys/bus/platform/drivers/virtio-mmio/LNRO0005:*; do echo ${d##*/} > /sys/bus/platform/drivers/virtio-mmio/unbind; done
r() { echo $(( ((RANDOM << 17) ^ (RANDOM << 2) ^ RANDOM) & 0xffffffff )); }
ram() { echo $(( (RANDOM % 4096) << 16 )); }
for round in 1 2 3 4 5 6; do
  for base in 0xd0000000 0xd0001000; do
    for v in 0 3 1; do devmem $((base+0x70)) 32 $v; done
    devmem $((base+0x24)) 32 1; devmem $((base+0x20)) 32 1; devmem $((base+0x70)) 32 11
    devmem $((base+0x30)) 32 0; devmem $((base+0x38)) 32 $((1 << (RANDOM % 10)))
    if [ $((round % 2)) = 0 ]; then
      devmem $((base+0x80)) 32 $(ram); devmem $((base+0x90)) 32 $(ram); devmem $((base+0xa0)) 32 $(ram)
    else
      devmem $((base+0x80)) 32 $(r); devmem $((base+0x84)) 32 $(r); devmem $((base+0x90)) 32 $(r); devmem $((base+0xa0)) 32 $(r)
    fi
    devmem $((base+0x44)) 32 1; devmem $((base+0x70)) 32 15
    for q in 0 1 2 7 255; do devmem $((base+0x50)) 32 $q; done
    for off in 0x000 0x010 0x034 0x044 0x060 0x064 0x070 0x0fc 0x100 0x108 0x1f0 0xffc; do
      devmem $((base+off)) 32 >/dev/null; devmem $((base+off)) 32 $(r); devmem $((base+off)) 8 $((RANDOM % 256))
    done
  done
done
echo LAB-GARBAGE-DONE
kill -USR2 1
"#;

/// `Err` only when the lab looks wedged.
async fn guest_garbage_does_not_bring_den_vmm_down(lab: &Lab) -> Result<(), String> {
    lab.put_scenario("garbage", GARBAGE).await;
    let out = lab
        .try_sh(
            &format!(
                "dd if=/dev/zero of=/lab/garbage.disk bs=1M count=4 2>/dev/null && \
             timeout 180 {VMM} boot --kernel /lab/base/kernel --initrd /lab/garbage.img --memory-mib 256 \
             --cmdline 'console=ttyS0 panic=-1 quiet' --disk /lab/garbage.disk --console /lab/garbage.log \
             </dev/null; echo exit=$?; cat /lab/garbage.log"
            ),
            SH_LIMIT,
        )
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("garbage guest:\n{text}\n{err}");
    assert!(text.contains("LAB-GARBAGE-START"), "{}", lab.describe(&out));
    // The guest may power off, or crash after the devices wrote into memory it was using: either
    // way den-vmm itself must end in an orderly way (0 power-off, 4 guest crash, 10 reboot) and
    // never be killed, panic or time out.
    let code = text.lines().find_map(|l| l.strip_prefix("exit=")).unwrap_or("?").to_string();
    assert!(["0", "4", "10"].contains(&code.as_str()), "den-vmm exit {code}: {}", lab.describe(&out));
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("den-vmm: guest ended"), "{err}");
    Ok(())
}
