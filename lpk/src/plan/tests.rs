use super::*;

fn plan(y: &str) -> Result<AppPlan, String> {
    let m: Manifest = serde_yaml_ng::from_str(y).map_err(|e| e.to_string())?;
    let aliases: BTreeSet<String> = ["web".to_string()].into();
    AppPlan::from_manifest(&m, &aliases).map_err(|e| e.to_string())
}

const GOOD: &str = r#"
application:
  subdomain: demo
  routes:
    - /=file:///lzcapp/pkg/content/www
    - /api/=http://backend:8080/
    - /run/=exec://3000,/lzcapp/pkg/content/srv
  public_path: [/, "!/admin"]
  depends_on: [backend]
  health_check: {test_url: "http://backend:8080/health", start_period: 2m}
  ingress: [{protocol: tcp, port: 22, service: backend, publish_port: 2022}]
services:
  backend:
    image: embed:web
    binds: [/lzcapp/var/data:/data, "/lzcapp/pkg/content:/srv:rw"]
    depends_on: [db]
    healthcheck: {test: [CMD, wget, -q, localhost], interval: 2s, retries: 5}
    cpus: 1.5
    mem_limit: 256m
  db:
    image: registry.lazycat.cloud/postgres:16
    setup_script: echo hi
"#;

#[test]
fn a_good_manifest_becomes_a_plan() {
    let p = plan(GOOD).unwrap();
    let names: Vec<_> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "backend", "app"], "dependencies first; exec:// needs the entry service");
    let b = &p.services[1];
    assert_eq!(b.image, ImageRef::Embed("web".into()));
    assert_eq!(b.binds[0], Bind { source: "/lzcapp/var/data".into(), target: "/data".into(), readonly: false });
    assert!(b.binds[1].readonly, "package files are always read-only");
    assert_eq!(b.vcpus, Some(2));
    assert_eq!(b.mem_bytes, Some(256 << 20));
    let h = b.health.as_ref().unwrap();
    assert_eq!(h.probe, Probe::Exec(vec!["wget".into(), "-q".into(), "localhost".into()]));
    assert_eq!((h.interval, h.retries), (Duration::from_secs(2), 5));
    assert_eq!(p.start_period, Duration::from_secs(120));
    assert_eq!(p.ingress[0].publish_port, 2022);
    assert_eq!(p.services[0].image, ImageRef::Named("registry.lazycat.cloud/postgres:16".into()));
}

#[test]
fn without_exec_routes_no_entry_vm_is_needed() {
    let p =
        plan("application: {subdomain: s, routes: [/=http://web:80/]}\nservices: {web: {image: embed:web}}").unwrap();
    assert_eq!(p.services.len(), 1);
}

#[test]
fn each_rule_names_its_field() {
    let cases = [
        ("services: {}", "`application` is missing"),
        ("application: {subdomain: Bad_Name}", "application.subdomain"),
        ("application: {subdomain: s}\nservices: {app: {image: x}}", "reserved name"),
        ("application: {subdomain: s}\nservices: {a: {}}", "services.a.image"),
        ("application: {subdomain: s}\nservices: {a: {image: x, binds: [/etc:/x]}}", "services.a.binds[0]"),
        ("application: {subdomain: s}\nservices: {a: {image: x, binds: [/lzcapp/../etc:/x]}}", "under /lzcapp"),
        ("application: {subdomain: s}\nservices: {a: {image: x, binds: [/lzcapp/var:/]}}", "TARGET"),
        ("application: {subdomain: s}\nservices: {a: {image: embed:nope}}", "images.lock"),
        ("application: {subdomain: s}\nservices: {a: {image: x, depends_on: [b]}}", "not a service"),
        (
            "application: {subdomain: s}\nservices: {a: {image: x, depends_on: [b]}, b: {image: x, depends_on: [a]}}",
            "cycle",
        ),
        ("application: {subdomain: s}\nservices: {a: {image: x, setup_script: x, command: y}}", "setup_script"),
        ("application: {subdomain: s}\nservices: {a: {image: x, mem_limit: lots}}", "mem_limit"),
        ("application: {subdomain: s}\nservices: {a: {image: x, cpus: -1}}", "cpus"),
        ("application: {subdomain: s}\nservices: {a: {image: x, healthcheck: {test: [CMD]}}}", "healthcheck.test"),
        ("application: {subdomain: s}\nservices: {a: {image: x, healthcheck: {test: x, interval: soon}}}", "interval"),
        ("application: {subdomain: s, routes: [/=http://ghost:80/]}", "routes[0]"),
        ("application: {subdomain: s, routes: [nope]}", "PATH=UPSTREAM"),
        ("application: {subdomain: s, public_path: [admin]}", "public_path[0]"),
        ("application: {subdomain: s, depends_on: [x]}", "application.depends_on"),
        ("application: {subdomain: s, ingress: [{protocol: sctp, port: 1}]}", "ingress[0]"),
        ("application: {subdomain: s, image: x, ingress: [{protocol: tcp, port: 70000}]}", "ingress[0]"),
        ("application: {subdomain: s, health_check: {test_url: ftp://x}}", "test_url"),
        ("application: {subdomain: s}\nservices: {a: {image: x, environment: [=x]}}", "variable name"),
    ];
    for (y, want) in cases {
        let e = plan(y).unwrap_err();
        assert!(e.contains(want), "{y}\n => {e}\n wanted `{want}`");
    }
}

#[test]
fn durations_and_sizes() {
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("5x"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_size("1g"), Some(1 << 30));
    assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
    assert_eq!(parse_size("512MB"), Some(512 << 20));
    assert_eq!(parse_size("12"), Some(12));
    assert_eq!(parse_size("-1m"), None);
}
