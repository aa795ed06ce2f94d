//! Network isolation attacked from a guest's root (issue 21), inside network namespaces with
//! real QEMU guests. VM `a` sends hand-made frames (`net-probe`, copied into it): to the host's
//! loopback, to the host's other addresses, with another MAC, with another VM's address, as a
//! DHCP server (from port 67 or any other), as ARP for another VM's address, as IPv6 to the
//! host and to a neighbour, and to link-local group MACs (which the bridge hands to the host
//! past its own hooks, and learns from) with another VM's MAC.
//! Recorders on the host, in VM `b` and on a "WAN" namespace show that none of it arrived,
//! while the same tool's legitimate frames (sent after the attacks, on the same paths) did.
//! Then port forwards: only a `,local` one takes the host's own connections, and a host program
//! listening on a forwarded port later is reported (`vm.port_clash`). Then what dend refuses:
//! names and aliases twice on a network, app network names, forwards on Den's own ports; and
//! which sysctls each bridge got.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::dend::Dend;
use den_tests::images;
use den_tests::netns::{net_probe, NetNs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROBE: &str = "/root/net-probe";

fn nic(d: &Dend, vm: &str, key: &str) -> String {
    d.vm(vm)["nics"][0][key].as_str().unwrap_or_default().to_string()
}

/// The IPv6 link-local address a device with `mac` gets from EUI-64.
fn link_local(mac: &str) -> String {
    let b: Vec<u8> = mac.split(':').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    format!("fe80::{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}", b[0] ^ 2, b[1], b[2], b[3], b[4], b[5])
}

/// A recorder started in the background inside `ns`: `net-probe listen` writing to a file.
struct Recorder {
    _proc: den_tests::netns::Background,
    file: PathBuf,
}

impl Recorder {
    fn start(ns: &NetNs, dir: &Path, proto: &str, addr: &str) -> Recorder {
        let file = dir.join(format!("{}-{proto}-{}", ns.name, addr.replace([':', '[', ']'], "_")));
        let script = format!("exec {} listen {proto} '{addr}' 300 > {}", net_probe().display(), file.display());
        let proc = ns.background("sh", &["-c", &script]);
        Recorder { _proc: proc, file }
    }

    fn got(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }

    /// Waits until `what` was recorded (a control sent on purpose).
    fn wait_for(&self, what: &str, send: impl Fn()) {
        let t = Instant::now();
        while !self.got().contains(what) {
            assert!(t.elapsed() < Duration::from_secs(30), "{what} never arrived at {}", self.file.display());
            send();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// What a recorder in VM `vm` (started by [`guest_recorder`]) has written.
fn guest_got(d: &Dend, vm: &str, file: &str) -> String {
    d.den(&["vm", "exec", vm, "--", "cat", file]).1
}

fn guest_recorder(d: &Dend, vm: &str, proto: &str, addr: &str, file: &str) {
    let script = format!("setsid {PROBE} listen {proto} '{addr}' 300 > {file} 2>&1 < /dev/null &");
    let (code, _, err) = d.den(&["vm", "exec", vm, "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
}

/// Waits until the recorder in `vm` shows `what`.
fn guest_wait_for(d: &Dend, vm: &str, file: &str, what: &str, send: impl Fn()) -> String {
    let t = Instant::now();
    loop {
        send();
        std::thread::sleep(Duration::from_millis(300));
        let got = guest_got(d, vm, file);
        if got.contains(what) {
            return got;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "{what} never arrived in {vm}: {got}\n{}", d.log());
    }
}

#[test]
fn guests_cannot_reach_the_host_spoof_or_answer_for_others() {
    let store = images::shared_store();
    images::build_builtin(&store, "base");
    let work = tempfile::tempdir().unwrap();
    let wan = NetNs::new("gwan");
    let host = NetNs::new("ghost");
    host.veth("up0", "192.0.2.2/24", &wan, "wan0", "192.0.2.1/24");
    // The WAN side also plays a cloud's metadata service (Azure's WireServer address), and
    // routes Den's default subnet to the host as a LAN router might.
    wan.ip("addr add 168.63.129.16/32 dev wan0");
    wan.ip("route add 10.87.0.0/24 via 192.0.2.2");
    host.ip("route add default via 192.0.2.1");
    let d = Dend::start_in_with_config(Path::new(env!("CARGO_BIN_EXE_dend")), &host, "[docker]\nenabled = false\n");

    // a's forward takes the host's own connections too, so its bridge has route_localnet on
    // (the raw chain is what keeps guests from 127.0.0.1 then); b's forward does not.
    d.create_base_vm(&["a", "-p", "8080:80,local"]);
    d.create_base_vm(&["b", "-p", "8081:80"]);
    // An admin opened one host port to lab's VMs; nothing else on the host is theirs to reach.
    let (code, _, err) =
        d.den(&["net", "create", "lab", "--subnet", "10.88.0.0/24", "--isolated", "--host-port", "9997"]);
    assert_eq!(code, 0, "{err}");
    d.create_base_vm(&["c", "--network", "lab"]);
    let probe = net_probe();
    for vm in ["a", "b", "c"] {
        d.sh_until_ok(vm, "true");
        let (code, _, err) = d.den(&["vm", "cp", probe.to_str().unwrap(), &format!("{vm}:{PROBE}"), "--mode", "755"]);
        assert_eq!(code, 0, "{err}");
    }
    let (a_ip, a_mac) = (nic(&d, "a", "ip"), nic(&d, "a", "mac"));
    let (b_ip, b_mac) = (nic(&d, "b", "ip"), nic(&d, "b", "mac"));
    let gw_mac = host.ip("-o link show den-default").split("link/ether ").nth(1).unwrap_or_default()[..17].to_string();
    let gw = format!("{}.1", a_ip.rsplit_once('.').map(|(n, _)| n).unwrap_or_default());

    // The sysctls: no IPv6 on bridges and TAPs; route_localnet only where a `,local` forward
    // leads.
    let sysctl = |key: &str| host.sh(&format!("cat /proc/sys/net/{key}")).1.trim().to_string();
    let a_tap = nic(&d, "a", "tap");
    assert_eq!(sysctl("ipv6/conf/den-default/disable_ipv6"), "1");
    assert_eq!(sysctl(&format!("ipv6/conf/{a_tap}/disable_ipv6")), "1");
    assert_eq!(sysctl("ipv4/conf/den-default/route_localnet"), "1", "a's `,local` forward needs it");
    assert_eq!(sysctl("ipv4/conf/den-lab/route_localnet"), "0", "no forward leads into lab");

    // Recorders: the host's loopback, every host address, IPv6 on the host, the WAN, and VM b.
    let loopback = Recorder::start(&host, work.path(), "udp", "127.0.0.1:9999");
    let host_any = Recorder::start(&host, work.path(), "udp", "0.0.0.0:9998");
    let host_tcp = Recorder::start(&host, work.path(), "tcp", "0.0.0.0:9997");
    let host_v6 = Recorder::start(&host, work.path(), "udp", "[::]:9996");
    let outside = Recorder::start(&wan, work.path(), "udp", "0.0.0.0:5000");
    let send_in = |ns: &NetNs, addr: &str, text: &str| {
        let _ = ns.command(probe.to_str().unwrap()).args(["send", addr, text]).output();
    };
    loopback.wait_for("ready", || send_in(&host, "127.0.0.1:9999", "ready"));
    host_any.wait_for("ready", || send_in(&host, "127.0.0.1:9998", "ready"));
    host_v6.wait_for("ready", || send_in(&host, "[::1]:9996", "ready"));
    outside.wait_for("ready", || send_in(&wan, "192.0.2.1:5000", "ready"));
    guest_recorder(&d, "b", "udp", "0.0.0.0:68", "/tmp/got68");
    guest_recorder(&d, "b", "udp", "[::]:9995", "/tmp/got6");
    guest_recorder(&d, "b", "udp", "0.0.0.0:6800", "/tmp/got6800");
    guest_wait_for(&d, "b", "/tmp/got6800", "ready", || send_in(&host, &format!("{b_ip}:6800"), "ready"));
    guest_wait_for(&d, "b", "/tmp/got68", "ready", || send_in(&host, &format!("{b_ip}:68"), "ready"));

    // The attacks, all from a's root, then the legitimate frames on the same paths.
    let udp = |smac: &str, dmac: &str, sip: &str, sport: u16, dip: &str, dport: u16, text: &str| {
        format!("{PROBE} udp eth0 {smac} {dmac} {sip} {sport} {dip} {dport} {text}")
    };
    let (a_ll, b_ll, gw_ll) = (link_local(&a_mac), link_local(&b_mac), link_local(&gw_mac));
    let attacks = [
        udp(&a_mac, &gw_mac, &a_ip, 40000, "127.0.0.1", 9999, "to-loopback"),
        udp(&a_mac, &gw_mac, &a_ip, 40001, "127.0.0.1", 9998, "to-loopback-any"),
        udp(&a_mac, &gw_mac, &a_ip, 40002, &gw, 9998, "to-gateway"),
        udp(&a_mac, &gw_mac, &a_ip, 40003, "192.0.2.2", 9998, "to-uplink-address"),
        udp(&a_mac, &gw_mac, "127.0.0.1", 40004, "127.0.0.1", 9999, "from-loopback"),
        udp("02:00:00:00:00:99", &gw_mac, &a_ip, 40005, "192.0.2.1", 5000, "spoofed-mac"),
        udp(&a_mac, &gw_mac, &b_ip, 40006, "192.0.2.1", 5000, "spoofed-ip"),
        udp(&a_mac, &gw_mac, &a_ip, 40015, "168.63.129.16", 5000, "to-metadata"),
        udp(&a_mac, &b_mac, &a_ip, 67, &b_ip, 68, "rogue-dhcp"),
        udp(&a_mac, &b_mac, &a_ip, 6767, &b_ip, 68, "rogue-dhcp-other-port"),
        udp(&a_mac, "01:80:c2:00:00:03", &a_ip, 40012, &gw, 9998, "link-local-group-to-gateway"),
        udp(&a_mac, "01:80:c2:00:00:03", "0.0.0.0", 40013, "255.255.255.255", 9998, "link-local-group-broadcast"),
        udp(&a_mac, &gw_mac, &a_ll, 40007, &gw_ll, 9996, "ipv6-to-host"),
        udp(&a_mac, "33:33:00:00:00:01", &a_ll, 40008, "ff02::1", 9996, "ipv6-to-all"),
        udp(&a_mac, &b_mac, &a_ll, 40009, &b_ll, 9995, "ipv6-to-neighbour"),
        format!("{PROBE} arp eth0 {a_mac} {b_ip}"),
        format!("{PROBE} arp eth0 {a_mac} {gw}"),
        format!("timeout 5 busybox nc {gw} 9997 </dev/null; echo tcp-to-gateway | timeout 5 busybox nc 192.0.2.2 9997"),
    ];
    // The host knows b's MAC before a claims b's address.
    assert_eq!(host.sh(&format!("busybox ping -c 1 -W 5 {b_ip}")).0, 0, "the host reaches b");
    let script = attacks.join("; ") + "; true";
    let (code, out, err) = d.den(&["vm", "exec", "a", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}{err}");
    let legit = [
        udp(&a_mac, &gw_mac, &a_ip, 40010, "192.0.2.1", 5000, "legit-outside"),
        udp(&a_mac, &b_mac, &a_ip, 6767, &b_ip, 6800, "legit-neighbour"),
    ]
    .join(" && ");
    let (code, out, err) = d.den(&["vm", "exec", "a", "--", "sh", "-c", &legit]);
    assert_eq!(code, 0, "{out}{err}");

    // The legitimate frames arrived (so the attacks before them had the same chance) ...
    outside.wait_for("legit-outside", || {});
    guest_wait_for(&d, "b", "/tmp/got6800", "legit-neighbour", || {});
    let got68 = guest_got(&d, "b", "/tmp/got68");
    std::thread::sleep(Duration::from_secs(2));
    // ... and nothing else did.
    assert!(!outside.got().contains("spoofed"), "a spoofed frame left the box: {}", outside.got());
    assert!(!outside.got().contains("metadata"), "a guest reached a metadata service: {}", outside.got());
    assert!(outside.got().contains("192.0.2.2:"), "NAT as usual: {}", outside.got());
    assert!(!got68.contains("rogue"), "a guest answered DHCP: {got68}");
    let got6 = guest_got(&d, "b", "/tmp/got6");
    assert!(!got6.contains("ipv6"), "IPv6 between guests: {got6}");
    for (rec, what) in [(&loopback, "loopback"), (&host_any, "host addresses"), (&host_v6, "host IPv6")] {
        let lines: Vec<String> = rec.got().lines().filter(|l| !l.ends_with(" ready")).map(String::from).collect();
        assert!(lines.is_empty(), "a guest reached the host's {what}: {lines:?}");
    }
    assert!(host_tcp.got().is_empty(), "a guest connected to a host port: {}", host_tcp.got());
    // The port an admin opened for lab: c reaches it on its gateway (a, on default, did not).
    let (code, out, err) =
        d.den(&["vm", "exec", "c", "--", "sh", "-c", "echo opened-for-lab | timeout 5 busybox nc 10.88.0.1 9997"]);
    assert_eq!(code, 0, "{out}{err}");
    host_tcp.wait_for("opened-for-lab", || {});
    let neigh = host.ip(&format!("neigh show {b_ip}"));
    assert!(!neigh.contains(&a_mac) && neigh.contains(&b_mac), "a took b's address in the host's ARP cache: {neigh}");
    // The bridge learns no MAC from a link-local group frame: a sends them as b for a while,
    // and b's MAC never moves to a's port.
    let lldp = udp(&b_mac, "01:80:c2:00:00:0e", &b_ip, 40014, &gw, 9998, "lldp-as-b");
    let as_b = format!("for i in $(seq 40); do {lldp}; busybox usleep 50000; done");
    std::thread::scope(|s| {
        let sender = s.spawn(|| d.den(&["vm", "exec", "a", "--", "sh", "-c", &as_b]));
        while !sender.is_finished() {
            let fdb = host.sh("bridge fdb show br den-default").1;
            assert!(
                !fdb.lines().any(|l| l.starts_with(&b_mac) && l.contains(&a_tap)),
                "b's MAC moved to a's port: {fdb}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(!host_any.got().contains("lldp"), "a link-local group frame reached the host: {}", host_any.got());
    let b_neigh = d.den(&["vm", "exec", "b", "--", "ip", "neigh", "show", &gw]).1;
    assert!(!b_neigh.contains(&a_mac), "a took the gateway's address in b's ARP cache: {b_neigh}");

    // The isolated network's VM: nothing to b by IPv6 either, and DNS still answers there.
    let ipv6 = udp(&nic(&d, "c", "mac"), &b_mac, &link_local(&nic(&d, "c", "mac")), 40011, &b_ll, 9995, "ipv6-cross");
    assert_eq!(d.den(&["vm", "exec", "c", "--", "sh", "-c", &ipv6]).0, 0);
    assert_eq!(d.sh_until_ok("c", "busybox nslookup c.den 10.88.0.1 >/dev/null && echo ok").trim(), "ok");
    assert_eq!(d.sh_until_ok("b", "busybox nslookup a.den >/dev/null && echo ok").trim(), "ok");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!guest_got(&d, "b", "/tmp/got6").contains("ipv6"), "IPv6 across networks");

    // The LAN reaches neither the VMs behind NAT nor the gateways' DNS; b reaches a's forward
    // through the host's address (the answer comes back through the host).
    let (code, out) = wan.sh(&format!("timeout 5 busybox wget -q -O- http://{a_ip}/"));
    assert!(code != 0 && !out.contains("from-a"), "the LAN reached a NAT'd VM directly: {out}");
    let (code, out) = wan.sh(&format!("timeout 5 busybox nslookup a.den {gw}"));
    assert!(code != 0 || !out.contains(&a_ip), "the LAN asked a gateway's DNS: {out}");

    // The legitimate paths: the forward from outside, and DNS by name between VMs.
    d.sh_until_ok("a", "mkdir -p /tmp/w && echo from-a > /tmp/w/index.html && busybox httpd -p 80 -h /tmp/w");
    let (code, out) = wan.sh("timeout 10 busybox wget -q -O- http://192.0.2.2:8080/");
    assert_eq!((code, out.trim()), (0, "from-a"), "the forward still works");
    assert_eq!(d.sh_until_ok("b", "timeout 10 busybox wget -q -O- http://a.den/").trim(), "from-a");
    assert_eq!(d.sh_until_ok("b", "timeout 10 busybox wget -q -O- http://192.0.2.2:8080/").trim(), "from-a");

    let (code, out) = host.sh("timeout 10 busybox wget -q -O- http://127.0.0.1:8080/");
    assert_eq!((code, out.trim()), (0, "from-a"), "a `,local` forward takes the host's own connections");

    // b's forward (not `,local`) leaves them alone: nothing answers 127.0.0.1:8081 until a
    // host program listens there; then that program gets them, the outside still gets the VM,
    // and dend reports the clash.
    d.sh_until_ok("b", "mkdir -p /tmp/w && echo from-b > /tmp/w/index.html && busybox httpd -p 80 -h /tmp/w");
    let (code, out) = wan.sh("timeout 10 busybox wget -q -O- http://192.0.2.2:8081/");
    assert_eq!((code, out.trim()), (0, "from-b"), "b's forward from outside");
    let (code, out) = host.sh("timeout 5 busybox wget -q -O- http://127.0.0.1:8081/");
    assert!(code != 0 && !out.contains("from-b"), "the forward took the host's own connection: {out}");
    let program = Recorder::start(&host, work.path(), "tcp", "0.0.0.0:8081");
    program.wait_for("mine", || {
        let _ = host.sh("echo mine | timeout 2 busybox nc 127.0.0.1 8081");
    });
    let (code, out) = wan.sh("timeout 10 busybox wget -q -O- http://192.0.2.2:8081/");
    assert_eq!((code, out.trim()), (0, "from-b"), "the outside still reaches the VM");
    let t = Instant::now();
    let clash = loop {
        let (_, events) = d.api("GET", "/api/v1/events?limit=1000", b"");
        let found = events.as_array().into_iter().flatten().find(|e| e["kind"] == "vm.port_clash").cloned();
        if let Some(e) = found {
            break e;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "no vm.port_clash event: {events}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(clash["target"], "b", "{clash}");
    assert!(clash["detail"].as_str().unwrap_or("").contains("host port 8081/tcp"), "{clash}");
    drop(program);

    // What dend refuses: a name twice on a network, app network names, Den's own ports.
    let refused = |body: String, field: &str, text: &str| {
        let (s, b) = d.api("POST", "/api/v1/vms", body.as_bytes());
        assert!(
            s == 400 && b["field"] == field && b["message"].as_str().unwrap_or("").contains(text),
            "{body}: {s} {b}"
        );
    };
    refused(r#"{"name":"d","image":"base","nics":[{"network":"lab","alias":"c"}]}"#.into(), "nics", "already a name");
    refused(r#"{"name":"d","image":"base","nics":[{"alias":"b"}]}"#.into(), "nics", "VM `b`");
    let https_port = d.https_addr().rsplit_once(':').map(|(_, p)| p.to_string()).unwrap_or_default();
    refused(
        format!(
            r#"{{"name":"d","image":"base","nics":[{{}}],"ports":[{{"host_port":{https_port},"guest_port":80}}]}}"#
        ),
        "ports",
        "Den's own",
    );
    refused(
        r#"{"name":"d","image":"base","nics":[{}],"ports":[{"host_port":53,"guest_port":53,"proto":"udp"}]}"#.into(),
        "ports",
        "Den's own",
    );
    let (code, _, err) = d.den(&["net", "create", "a0123456789", "--subnet", "10.89.0.0/24", "--isolated"]);
    assert!(code == 1 && err.contains("kept for app networks"), "{err}");
    // Something removes every rule (a restarted nftables service's `flush ruleset`): dend
    // puts them back and says so, and the guests are held as before.
    assert_eq!(host.sh("nft flush ruleset").0, 0);
    let t = Instant::now();
    loop {
        let (_, events) = d.api("GET", "/api/v1/events?limit=1000", b"");
        if events.as_array().into_iter().flatten().any(|e| e["kind"] == "net.rules_restored") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(40), "rules not restored: {}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let tables = host.sh("nft list tables").1;
    for family in ["ip", "bridge", "arp", "ip6"] {
        assert!(tables.contains(&format!("table {family} den")), "{tables}");
    }
    let again = udp(&a_mac, &gw_mac, &a_ip, 40016, &gw, 9998, "after-restore");
    assert_eq!(d.den(&["vm", "exec", "a", "--", "sh", "-c", &again]).0, 0);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!host_any.got().contains("after-restore"), "{}", host_any.got());

    for v in ["a", "b", "c"] {
        assert_eq!(d.den(&["vm", "stop", v]).0, 0, "{}", d.log());
        assert_eq!(d.den(&["vm", "rm", v]).0, 0, "{}", d.log());
    }
    let tables = host.sh("nft list tables").1;
    assert!(!tables.contains("den"), "the tables go with the last network: {tables}");
}
