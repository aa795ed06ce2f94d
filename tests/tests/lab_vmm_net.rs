//! virtio-net in the KVM lab: two inner VMs under den-vmm, each on a TAP device attached to a
//! bridge in the outer guest, reach each other (ping both ways, a TCP stream one way).

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::lab::{Lab, SH_LIMIT, VMM};
use std::time::Duration;

const VM_A: &str = r#"
echo NET-A-UP
for i in $(seq 1 60); do ping -c 1 -W 1 10.9.0.2 >/dev/null 2>&1 && break; done
ping -c 3 -W 2 10.9.0.2 && echo NET-A-PING-OK
for i in $(seq 1 30); do echo hello-from-a | nc 10.9.0.2 5000 && break; sleep 1; done
kill -USR2 1
"#;

const VM_B: &str = r#"
echo NET-B-UP
nc -l -p 5000 > /tmp/got &
for i in $(seq 1 60); do ping -c 1 -W 1 10.9.0.1 >/dev/null 2>&1 && break; done
ping -c 3 -W 2 10.9.0.1 && echo NET-B-PING-OK
wait
echo NET-B-GOT=$(cat /tmp/got)
kill -USR2 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_two_vms_on_a_bridge_reach_each_other() {
    Lab::run_with_retry(two_vms).await;
}

async fn two_vms(lab: Lab) -> Result<(), String> {
    lab.put_scenario("net-a", VM_A).await;
    lab.put_scenario("net-b", VM_B).await;
    let setup = "brctl addbr br0 && ip link set br0 up && \
                 for t in tap0 tap1; do tunctl -t $t >/dev/null && brctl addif br0 $t && ip link set $t up; done";
    let out = lab.sh(setup).await;
    assert_eq!(out.code, Some(0), "bridge setup: {}", lab.describe(&out));
    for (vm, tap, ip, mac) in
        [("a", "tap0", "10.9.0.1", "52:54:00:09:00:01"), ("b", "tap1", "10.9.0.2", "52:54:00:09:00:02")]
    {
        let out = lab
            .sh(&format!(
                "({VMM} boot --kernel /lab/base/kernel --initrd /lab/net-{vm}.img --memory-mib 256 \
                 --cmdline 'console=ttyS0 panic=-1 quiet den.ip={ip}/24' --net {tap},mac={mac} \
                 --console /lab/net-{vm}.log </dev/null 2>/lab/net-{vm}.err; echo $? > /lab/net-{vm}.exit) \
                 >/dev/null 2>&1 &"
            ))
            .await;
        assert_eq!(out.code, Some(0), "{}", lab.describe(&out));
    }
    for vm in ["a", "b"] {
        lab.try_wait_for_file(&format!("/lab/net-{vm}.exit"), Duration::from_secs(240)).await?;
    }
    let out =
        lab.try_sh("for v in a b; do cat /lab/net-$v.exit /lab/net-$v.log /lab/net-$v.err; done", SH_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}");
    for marker in ["NET-A-PING-OK", "NET-B-PING-OK", "NET-B-GOT=hello-from-a"] {
        assert!(text.contains(marker), "{marker} missing:\n{text}");
    }
    assert!(text.contains("rx_packets="), "net counters in the metrics line: {text}");
    assert_eq!(lab.try_sh("cat /lab/net-a.exit /lab/net-b.exit", SH_LIMIT).await?.stdout, b"0\n0\n", "{text}");
    Ok(())
}
