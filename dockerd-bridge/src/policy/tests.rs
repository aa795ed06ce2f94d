use super::*;
use serde_json::json;

fn policy() -> Policy {
    Policy { relaxed: BTreeSet::new(), shared: vec![PathBuf::from("/home/alice")], shares_need_admin: false }
}

fn create(hc: Value) -> Result<(), Refusal> {
    let body = json!({"Image": "busybox", "HostConfig": hc}).to_string();
    policy().check(&Endpoint::ContainerCreate, "", Some(body.as_bytes()))
}

fn rule(r: Result<(), Refusal>) -> &'static str {
    r.err().map(|e| e.rule).unwrap_or("allowed")
}

#[test]
fn plain_containers_pass() {
    assert_eq!(rule(create(json!({}))), "allowed");
    assert_eq!(rule(create(json!(null))), "allowed");
    let ok = json!({"Binds": ["data:/data", "/home/alice/proj:/src:ro"], "CapAdd": ["NET_BIND_SERVICE", "cap_chown"],
        "NetworkMode": "bridge", "PidMode": "container:abc", "SecurityOpt": ["no-new-privileges:true"],
        "Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"}, {"Type": "tmpfs", "Target": "/t"},
                   {"Type": "bind", "Source": "/home/alice/x", "Target": "/x"}], "Runtime": "runc"});
    assert_eq!(rule(create(ok)), "allowed");
}

#[test]
fn each_rule_refuses_its_field() {
    let cases = [
        (json!({"Privileged": true}), "privileged"),
        (json!({"PidMode": "host"}), "host-namespaces"),
        (json!({"NetworkMode": "HOST"}), "host-namespaces"),
        (json!({"IpcMode": "host"}), "host-namespaces"),
        (json!({"UTSMode": "host"}), "host-namespaces"),
        (json!({"UsernsMode": "host"}), "host-namespaces"),
        (json!({"CgroupnsMode": "host"}), "host-namespaces"),
        (json!({"CapAdd": ["SYS_ADMIN"]}), "capabilities"),
        (json!({"CapAdd": ["ALL"]}), "capabilities"),
        (json!({"CapAdd": ["CAP_SYS_MODULE"]}), "capabilities"),
        (json!({"Devices": [{"PathOnHost": "/dev/kvm", "PathInContainer": "/dev/kvm"}]}), "devices"),
        (json!({"DeviceRequests": [{"Count": -1}]}), "devices"),
        (json!({"DeviceCgroupRules": ["c 1:* rwm"]}), "devices"),
        (json!({"SecurityOpt": ["seccomp=unconfined"]}), "security-opt"),
        (json!({"SecurityOpt": ["apparmor:unconfined"]}), "security-opt"),
        (json!({"SecurityOpt": ["label=disable"]}), "security-opt"),
        (json!({"SecurityOpt": ["systempaths=unconfined"]}), "security-opt"),
        (json!({"SecurityOpt": ["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}), "security-opt"),
        (json!({"Sysctls": {"kernel.shmmax": "1"}}), "sysctls"),
        (json!({"MaskedPaths": [], "ReadonlyPaths": []}), "security-opt"),
        (json!({"CgroupParent": "/"}), "cgroup-parent"),
        (json!({"Runtime": "kata"}), "runtime"),
        (json!({"VolumesFrom": ["other"]}), "volumes-from"),
        (json!({"Binds": ["/etc:/host-etc"]}), "host-binds"),
        (json!({"Binds": ["/home/alice/../../etc:/x"]}), "host-binds"),
        (json!({"Binds": ["/home/alicebob:/x"]}), "host-binds"),
        (json!({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}), "host-binds"),
        (json!({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]}), "host-binds"),
        (
            json!({"Mounts": [{"Type": "volume", "Target": "/x", "VolumeOptions":
                {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/etc"}}}}]}),
            "bind-volumes",
        ),
    ];
    for (hc, want) in cases {
        let got = create(hc.clone());
        assert_eq!(rule(got.clone()), want, "{hc}");
        let msg = got.unwrap_err().message;
        assert!(msg.starts_with("refused by Den's Docker policy: "), "{msg}");
        if want != "host-binds" {
            assert!(msg.contains(&format!("allow = [\"{want}\"]")), "says how to allow it: {msg}");
        }
    }
}

#[test]
fn spellings_that_dockerd_accepts_are_caught() {
    // Go's decoder matches keys case-insensitively with Unicode simple folding.
    assert_eq!(rule(create(json!({"privileged": true}))), "privileged");
    assert_eq!(rule(create(json!({"PRIVILEGED": true}))), "privileged");
    let body = r#"{"Image":"x","Ho\u017ftConfig":{"Privileged":true}}"#;
    assert_eq!(rule(policy().check(&Endpoint::ContainerCreate, "", Some(body.as_bytes()))), "privileged", "long s");
    assert_eq!(rule(create(json!({"\u{17F}ecurityOpt": ["seccomp=unconfined"]}))), "security-opt");
    assert_eq!(rule(create(json!({"CapAdd": ["\u{212A}ILL"]}))), "capabilities", "unknown capabilities are refused");
    // Both spellings present: refused whichever dockerd would keep.
    assert_eq!(rule(create(json!({"Privileged": false, "privileged": true}))), "body", "twins are refused");
    assert_eq!(rule(create(json!({"Pr\u{131}v\u{131}leged": true}))), "privileged", "Go 1.21 folds the dotless i");
    // The same key twice: dockerd merges both, so the body is refused outright.
    let twins = r#"{"Image":"x","HostConfig":{"Privileged":true,"Binds":["/:/h"]},"HostConfig":{}}"#;
    assert_eq!(rule(policy().check(&Endpoint::ContainerCreate, "", Some(twins.as_bytes()))), "body");
    // The deprecated host configuration at the top level of a create.
    let top = r#"{"Image":"x","Privileged":true}"#;
    assert_eq!(rule(policy().check(&Endpoint::ContainerCreate, "", Some(top.as_bytes()))), "privileged");
    let top = r#"{"Image":"x","Binds":["/:/h"]}"#;
    assert_eq!(rule(policy().check(&Endpoint::ContainerCreate, "", Some(top.as_bytes()))), "host-binds");
    assert!(go_key_matches("hostconfig", "HostConfig") && !go_key_matches("HostConfigs", "HostConfig"));
}

#[test]
fn malformed_bodies_fail_closed() {
    let p = policy();
    for body in [None, Some(&b""[..]), Some(&b"  \n"[..]), Some(&b"{"[..]), Some(&b"[]"[..]), Some(&b"null"[..])] {
        for ep in [Endpoint::ContainerCreate, Endpoint::ExecCreate, Endpoint::VolumeCreate, Endpoint::ContainerUpdate] {
            assert_eq!(rule(p.check(&ep, "", body)), "body", "{ep:?} {body:?}");
        }
    }
    assert_eq!(rule(create(json!({"Privileged": "yes"}))), "body", "not a bool");
    assert_eq!(rule(create(json!({"Mounts": "x"}))), "body");
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let body = format!(r#"{{"HostConfig": {{"Binds": {deep}}}}}"#);
    assert_eq!(rule(p.check(&Endpoint::ContainerCreate, "", Some(body.as_bytes()))), "body", "too deep");
}

#[test]
fn exec_volumes_updates_builds_plugins_swarm() {
    let p = policy();
    let check = |ep: Endpoint, q: &str, body: Value| rule(p.check(&ep, q, Some(body.to_string().as_bytes())));
    assert_eq!(check(Endpoint::ExecCreate, "", json!({"Cmd": ["sh"], "Privileged": true})), "privileged-exec");
    assert_eq!(check(Endpoint::ExecCreate, "", json!({"Cmd": ["sh"]})), "allowed");
    assert_eq!(
        check(Endpoint::VolumeCreate, "", json!({"Name": "v", "DriverOpts": {"o": "bind", "device": "/etc"}})),
        "bind-volumes"
    );
    assert_eq!(
        check(Endpoint::VolumeCreate, "", json!({"Name": "v", "DriverOpts": {"type": "none", "device": "/"}})),
        "bind-volumes"
    );
    assert_eq!(
        check(
            Endpoint::VolumeCreate,
            "",
            json!({"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}})
        ),
        "allowed"
    );
    assert_eq!(check(Endpoint::VolumeCreate, "", json!({"Name": "v"})), "allowed");
    assert_eq!(check(Endpoint::ContainerUpdate, "", json!({"Devices": [{"PathOnHost": "/dev/sda"}]})), "devices");
    assert_eq!(check(Endpoint::ContainerUpdate, "", json!({"Memory": 1})), "allowed");
    assert_eq!(rule(p.check(&Endpoint::Build, "t=x&networkmode=host", None)), "host-namespaces");
    assert_eq!(rule(p.check(&Endpoint::Build, "t=x&networkmode=default", None)), "allowed");
    assert_eq!(rule(p.check(&Endpoint::Build, "networkmode=hos%74", None)), "host-namespaces", "decoded");
    assert_eq!(rule(p.check(&Endpoint::Build, "cgroupparent=%2F", None)), "cgroup-parent");
    assert_eq!(rule(p.check(&Endpoint::Plugin, "remote=x", None)), "plugins");
    assert_eq!(rule(p.check(&Endpoint::Swarm, "", None)), "swarm");
    assert_eq!(rule(p.check(&Endpoint::Other, "", None)), "allowed", "other bodies are not read");
}

#[test]
fn an_admin_relaxes_single_rules() {
    let mut p = policy();
    p.relaxed.insert("privileged".into());
    let body = json!({"HostConfig": {"Privileged": true}}).to_string();
    assert!(p.check(&Endpoint::ContainerCreate, "", Some(body.as_bytes())).is_ok());
    let body = json!({"HostConfig": {"Privileged": true, "PidMode": "host"}}).to_string();
    assert_eq!(
        rule(p.check(&Endpoint::ContainerCreate, "", Some(body.as_bytes()))),
        "host-namespaces",
        "only that one"
    );
    assert!(RULES.contains(&"privileged") && RULES.contains(&"buildkit-api") && RULES.len() == 15);
}

#[test]
fn shared_folders_are_bound_by_admins_only() {
    let p = Policy { shared: vec![], shares_need_admin: true, ..policy() };
    let body = json!({"HostConfig": {"Binds": ["/home/alice/proj:/src"]}}).to_string();
    let e = p.check(&Endpoint::ContainerCreate, "", Some(body.as_bytes())).unwrap_err();
    assert!(e.rule == "host-binds" && e.message.contains("needs a Den admin"), "{}", e.message);
    assert!(policy().check(&Endpoint::ContainerCreate, "", Some(body.as_bytes())).is_ok(), "an admin may");
}
