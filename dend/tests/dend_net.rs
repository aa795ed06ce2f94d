//! dend's networking end to end, inside network namespaces (nothing touches the host's own
//! network): real QEMU guests on the `default` bridge get their addresses, reach a "WAN" server
//! through NAT, find each other by name through dnsmasq's DNS, and serve a host port forward
//! on loopback and on the uplink; an isolated network keeps its VM in and everyone else out, and
//! its DHCP server answers; a dend killed with VMs running keeps its rules and sweeps stray
//! TAPs; deleting the VMs leaves no TAP, bridge, nftables table or dnsmasq behind.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use den_tests::netns::NetNs;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `script` in the VM until it exits 0 (the agent may not be up yet); its stdout.
fn guest_sh(d: &Dend, vm: &str, script: &str) -> String {
    d.sh_until_ok(vm, script)
}

/// Exit code of `script` in the VM (agent known to be up).
fn guest_code(d: &Dend, vm: &str, script: &str) -> i32 {
    d.den(&["vm", "exec", vm, "--", "sh", "-c", script]).0
}

fn serve(d: &Dend, vm: &str, text: &str) {
    guest_sh(d, vm, &format!("mkdir -p /tmp/w && echo {text} > /tmp/w/index.html && busybox httpd -p 80 -h /tmp/w"));
}

/// Device names in a namespace.
fn devices(ns: &NetNs) -> Vec<String> {
    ns.ip("-o link show")
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect()
}

fn ip_of(d: &Dend, vm: &str) -> String {
    d.vm(vm)["nics"][0]["ip"].as_str().unwrap_or_default().to_string()
}

#[test]
fn dend_network_nat_dns_forwards_isolation_and_cleanup() {
    let store = images::shared_store();
    images::build_builtin(&store, "base");
    let wan = NetNs::new("wan");
    let host = NetNs::new("host");
    host.veth("up0", "192.0.2.2/24", &wan, "wan0", "192.0.2.1/24");
    host.ip("route add default via 192.0.2.1");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("hello"), "hello from wan\n").unwrap();
    let www_dir = www.path().to_string_lossy().into_owned();
    let _httpd = wan.background("busybox", &["httpd", "-f", "-p", "192.0.2.1:80", "-h", &www_dir]);
    let mut d = Dend::start_in(Path::new(env!("CARGO_BIN_EXE_dend")), &host);

    // Two VMs on the default network; `a` publishes its port 80 on host port 8080, for the
    // host's own connections too.
    d.create_base_vm(&["a", "-p", "8080:80,local"]);
    d.create_base_vm(&["b"]);
    let (a_ip, b_ip) = (ip_of(&d, "a"), ip_of(&d, "b"));
    assert!(a_ip.starts_with("10.87.0.") && b_ip.starts_with("10.87.0.") && a_ip != b_ip, "{a_ip} {b_ip}");
    let (_, ls, _) = d.den(&["vm", "ls"]);
    assert!(ls.contains(&a_ip) && ls.contains(&b_ip), "{ls}");
    assert!(host.ip("link show den-default").contains("UP"), "bridge is up");

    // NAT: the WAN side has no route to 10.87.0.0/24, so an answer proves masquerading.
    assert_eq!(guest_sh(&d, "a", "timeout 10 busybox wget -q -O- http://192.0.2.1/hello").trim(), "hello from wan");
    // The guest's address is the one dend allocated; DNS by VM name through dnsmasq.
    assert!(guest_sh(&d, "a", "ip -4 addr show").contains(&a_ip));
    serve(&d, "b", "from-b");
    assert_eq!(guest_sh(&d, "a", "timeout 10 busybox wget -q -O- http://b.den/").trim(), "from-b");

    // The port forward, from the host itself (loopback) and from the WAN side.
    serve(&d, "a", "from-a");
    let (code, out) = host.sh("timeout 10 busybox wget -q -O- http://127.0.0.1:8080/");
    assert_eq!((code, out.trim()), (0, "from-a"), "loopback forward");
    let (code, out) = wan.sh("timeout 10 busybox wget -q -O- http://192.0.2.2:8080/");
    assert_eq!((code, out.trim()), (0, "from-a"), "uplink forward");
    let rules = host.sh("nft list table ip den").1;
    let localnet = host.sh("cat /proc/sys/net/ipv4/conf/den-default/route_localnet").1;
    assert_eq!(localnet.trim(), "1", "the host's own clients of a `,local` forward need it");
    assert!(rules.contains("dport 8080 dnat to") && rules.contains("masquerade"), "{rules}");

    // A second forward of the same port is refused, naming the field; so is a host port in use.
    let (s, b) = d.api(
        "POST",
        "/api/v1/vms",
        br#"{"name":"c","image":"base","nics":[{}],"ports":[{"host_port":8080,"guest_port":80}]}"#,
    );
    assert!(s == 400 && b["field"] == "ports" && b["message"].as_str().unwrap_or("").contains("VM `a`"), "{b}");

    // kill -9 dend with both VMs running: they keep running and stay manageable; rules and TAPs
    // stay; a stray Den-looking TAP is swept by the next dend.
    let pids: Vec<Value> = ["a", "b"].iter().map(|v| d.vm(v)["running"]["pid"].clone()).collect();
    d.kill9();
    host.ip("tuntap add dt00000000000 mode tap");
    d.spawn();
    let t = Instant::now();
    while devices(&host).iter().any(|l| l == "dt00000000000") {
        assert!(t.elapsed() < Duration::from_secs(10), "stray TAP not swept\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out) = host.sh("timeout 10 busybox wget -q -O- http://127.0.0.1:8080/");
    assert_eq!((code, out.trim()), (0, "from-a"), "forward after a dend restart");
    for (v, pid) in ["a", "b"].iter().zip(&pids) {
        let vm = d.vm(v);
        assert_eq!((&vm["state"], &vm["running"]["pid"]), (&Value::from("running"), pid), "{v} adopted");
        assert_eq!(guest_sh(&d, v, "echo alive"), "alive\n", "{v} manageable after the restart");
    }
    let a_tap = d.vm("a")["nics"][0]["tap"].as_str().unwrap_or_default().to_string();
    assert!(devices(&host).contains(&a_tap), "a's TAP survives");

    // An isolated network: its VM gets DHCP and reaches nobody; nobody reaches it.
    let (code, _, err) = d.den(&["net", "create", "lab", "--subnet", "10.88.0.0/24", "--isolated"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.den(&["net", "create", "lab2", "--subnet", "10.88.0.0/16"]);
    assert!(code == 1 && err.contains("overlaps"), "{err}");
    assert_eq!(d.den(&["vm", "stop", "b"]).0, 0);
    assert_eq!(d.den(&["vm", "rm", "b"]).0, 0);
    d.create_base_vm(&["c", "--network", "lab"]);
    let c_ip = ip_of(&d, "c");
    assert!(c_ip.starts_with("10.88.0."), "{c_ip}");
    let lease = guest_sh(&d, "c", "busybox udhcpc -i eth0 -n -q -t 5 -s /bin/true 2>&1");
    assert!(lease.contains(&format!("lease of {c_ip} obtained")), "DHCP reservation: {lease}");
    assert_ne!(guest_code(&d, "c", "timeout 3 busybox wget -q -O- http://192.0.2.1/hello"), 0, "isolated: no WAN");
    assert_ne!(
        guest_code(&d, "c", &format!("timeout 3 busybox wget -q -O- http://{a_ip}/")),
        0,
        "isolated: no other network"
    );
    assert_ne!(guest_code(&d, "a", &format!("timeout 3 busybox wget -q -O- http://{c_ip}/")), 0, "no way in");
    let nets: Value = serde_json::from_str(&d.den(&["--json", "net", "ls"]).1).unwrap();
    assert_eq!(nets.as_array().map(Vec::len), Some(2), "{nets}");
    let (code, _, err) = d.den(&["net", "rm", "lab"]);
    assert!(code == 1 && err.contains("used by VM `c`"), "{err}");

    // Delete everything: no TAP, bridge, nft table or dnsmasq is left.
    for v in ["a", "c"] {
        assert_eq!(d.den(&["vm", "stop", v]).0, 0, "{}", d.log());
        assert_eq!(d.den(&["vm", "rm", v]).0, 0, "{}", d.log());
    }
    assert_eq!(d.den(&["net", "rm", "lab"]).0, 0);
    let links = devices(&host);
    assert!(!links.iter().any(|l| l.starts_with("dt") || l.starts_with("den-")), "{links:?}");
    let tables = host.sh("nft list tables").1;
    assert!(!tables.contains("den"), "{tables}");
    let dend_pid = d.pid().unwrap_or_default() as i32;
    let others: Vec<i32> = host.pids().into_iter().filter(|p| *p != dend_pid).collect();
    assert!(others.is_empty(), "processes left in the namespace: {others:?}");
}
