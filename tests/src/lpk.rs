//! Sample LPK packages for the app tests, written with `den_lpk::pack`: a v1 ZIP whose app is
//! static files and an `exec://` program, and a v2 tar with an embedded busybox image and two
//! services that reach each other by name.

use den_lpk::pack::{Item, Packer};
use std::path::Path;

/// The v1 sample's package id.
pub const HELLO: &str = "cloud.den.test.hello";
/// The v2 sample's package id.
pub const TWO: &str = "cloud.den.test.two";

fn file(name: &str, data: &str, mode: u32) -> Item {
    Item::File { name: name.into(), data: data.as_bytes().to_vec(), mode }
}

/// The v1 sample (ZIP): `/` serves `content/www` from the host, `/cgi/` runs a busybox httpd in
/// the entry service through `exec://`, and the environment echoes the injected variables.
pub fn hello_v1(version: &str) -> std::io::Result<Packer> {
    hello_as(HELLO, "hello", version)
}

/// [`hello_v1`] under another package id and subdomain.
pub fn hello_as(package: &str, subdomain: &str, version: &str) -> std::io::Result<Packer> {
    let manifest = format!(
        "lzc-sdk-version: '0.1'
package: {package}
version: {version}
name: Hello
application:
  subdomain: {subdomain}
  routes:
    - /=file:///lzcapp/pkg/content/www
    - /cgi/=exec://3000,/lzcapp/pkg/content/serve.sh
  public_path: [/]
  environment:
    - GREETING=hello from ${{LAZYCAT_APP_ID}} on ${{LAZYCAT_APP_DOMAIN}}
"
    );
    let mut p = Packer::new();
    p.file("manifest.yml", manifest);
    let content = [
        Item::Dir("www".into()),
        file("www/index.html", &format!("<h1>hello {version}</h1>\n"), 0o644),
        Item::Dir("cgi".into()),
        Item::Dir("cgi/cgi-bin".into()),
        file("cgi/cgi-bin/env", "#!/bin/sh\necho Content-Type: text/plain\necho\nenv | sort\n", 0o755),
        file("serve.sh", "#!/bin/sh\nexec busybox httpd -f -p 127.0.0.1:3000 -h /lzcapp/pkg/content/cgi\n", 0o755),
    ];
    p.content(&content)?;
    Ok(p)
}

/// The v2 sample (tar): `web` and `backend` from an embedded busybox image whose command is
/// backend's httpd; `backend` writes its page from a `setup_script` into a bind of
/// `/lzcapp/var`, has a health check, a memory limit and a TCP `ingress` on host port 19000;
/// `web` runs its own `command` as uid 1000; the routes reach both by service name.
pub fn two_v2(version: &str, permissions: &[&str]) -> std::io::Result<Packer> {
    two_v2_checked(version, permissions, "[CMD, wget, -q, -O, /dev/null, 'http://127.0.0.1:9000/']")
}

/// [`two_v2`] whose backend health check is `health` (a Compose `test`): `[CMD, 'false']`
/// makes a version that never becomes healthy.
pub fn two_v2_checked(version: &str, permissions: &[&str], health: &str) -> std::io::Result<Packer> {
    let package = format!(
        "package: {TWO}\nversion: {version}\nname: Two\npermissions:\n  required: [{}]\n",
        permissions.join(", ")
    );
    let manifest = format!(
        "application:
  subdomain: two
  routes: [/=http://web:8080/, /api/=http://backend:9000/]
  depends_on: [web]
  health_check: {{test_url: 'http://backend:9000/', start_period: 60s}}
  ingress: [{{protocol: tcp, port: 9000, service: backend, publish_port: 19000}}]
services:
  web:
    image: embed:box
    command: httpd -f -p 8080 -h /lzcapp/pkg/content/web
    user: '1000:1000'
    depends_on: [backend]
    environment: {{ROLE: web, BACKEND: 'http://backend:9000/'}}
  backend:
    image: embed:box
    binds: [/lzcapp/var/api:/srv/api]
    setup_script: mkdir -p /lzcapp/var/api && echo backend-$$LAZYCAT_APP_SERVICE_NAME > /lzcapp/var/api/index.html
    healthcheck: {{test: {health}, interval: 1s, retries: 5}}
    mem_limit: 200m
    cpus: 1
"
    );
    let mut p = Packer::new();
    p.file("package.yml", package).file("manifest.yml", manifest);
    p.content(&[Item::Dir("web".into()), file("web/index.html", &format!("<h1>two {version}</h1>\n"), 0o644)])?;
    // The image's own command is backend's; `web` overrides it.
    let config = serde_json::json!({"Cmd": ["httpd", "-f", "-p", "9000", "-h", "/srv/api"], "Env": ["PATH=/bin"], "WorkingDir": "/"});
    p.image("box", &crate::docker::busybox_layer()?, &config)?;
    Ok(p)
}

/// Writes a packer as a ZIP (v1) or tar (v2) under `dir`, named like real packages.
pub fn write(p: &Packer, dir: &Path, name: &str, zip: bool) -> std::path::PathBuf {
    let path = dir.join(name);
    let res = if zip { p.write_zip(&path) } else { p.write_tar(&path) };
    if let Err(e) = res {
        panic!("writing {}: {e}", path.display());
    }
    path
}

/// A package id `cloud.den.test.x<9 letters or digits>` whose first app network name (`a` and
/// the low 40 bits of its FNV-1a hash, `net::spec::app_network_name`) is `victim`'s: what a
/// package author can find in a second, meeting in the middle (FNV-1a steps can be undone).
pub fn colliding_package(victim: &str) -> String {
    const PRIME: u64 = 0x0100_0000_01b3;
    const MASK: u64 = (1 << 40) - 1;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let step = |h: u64, b: u8| ((h ^ u64::from(b)).wrapping_mul(PRIME)) & MASK;
    let fnv = |bytes: &[u8], from: u64| bytes.iter().fold(from, |h, b| step(h, *b));
    let mut inverse = PRIME;
    for _ in 0..6 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(PRIME.wrapping_mul(inverse)));
    }
    let target = fnv(victim.as_bytes(), 0xcbf2_9ce4_8422_2325 & MASK);
    let words = |n: u32| {
        (0..36u64.pow(n)).map(move |mut i| {
            (0..n)
                .map(|_| {
                    let c = ALPHABET[(i % 36) as usize];
                    i /= 36;
                    c
                })
                .collect::<Vec<u8>>()
        })
    };
    // The state each 4-character ending needs before it to end at the target.
    let mut before: std::collections::HashMap<u64, Vec<u8>> = std::collections::HashMap::new();
    for end in words(4) {
        let h = end.iter().rev().fold(target, |h, b| (h.wrapping_mul(inverse) & MASK) ^ u64::from(*b));
        before.insert(h, end);
    }
    let prefix = b"cloud.den.test.x";
    let start = fnv(prefix, 0xcbf2_9ce4_8422_2325 & MASK);
    for middle in words(5) {
        if let Some(end) = before.get(&fnv(&middle, start)) {
            let id = [&prefix[..], &middle, end].concat();
            return String::from_utf8(id).unwrap_or_default();
        }
    }
    panic!("no package id found colliding with {victim}");
}

/// The first network name dend tries for app `package` (`net::spec::app_network_name`, attempt
/// 0), computed here on its own so a test can check a collision is real.
pub fn first_network_name(package: &str) -> String {
    format!("a{:010x}", den_net_util::fnv1a(package.bytes()) & 0xff_ffff_ffff)
}
