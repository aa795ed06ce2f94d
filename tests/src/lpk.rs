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
    let manifest = format!(
        "lzc-sdk-version: '0.1'
package: {HELLO}
version: {version}
name: Hello
application:
  subdomain: hello
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
