use super::*;
use den_images::oci::RunConfig;

fn app(manifest: &str) -> AppRecord {
    AppRecord::fixture("cloud.den.t", manifest)
}

fn vars() -> BTreeMap<String, String> {
    [("LAZYCAT_BOX_DOMAIN", "box.test"), ("LAZYCAT_BOX_NAME", "den1"), ("LAZYCAT_APP_DEPLOY_UID", "0")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn image(entry: Option<&[&str]>, cmd: Option<&[&str]>) -> ServiceImage {
    let v = |a: Option<&[&str]>| a.map(|a| a.iter().map(|s| s.to_string()).collect());
    ServiceImage {
        image: "lpk-x".into(),
        config: RunConfig {
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            entrypoint: v(entry),
            cmd: v(cmd),
            working_dir: Some("/w".into()),
            user: None,
        },
    }
}

fn parse(files: &[(String, String)], name: &str) -> toml::Value {
    let text = &files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} in {files:?}")).1;
    toml::from_str(text).unwrap()
}

#[test]
fn compose_rules_for_the_command_and_environment() {
    let a = app("application: {subdomain: t}
services:
  s:
    image: embed:box
    command: [serve, --port, '80']
    environment: {A: manifest}
    binds: ['/lzcapp/var/d:/data:ro']
    user: '1000:1000'
");
    let files = definitions(&a, &a.plan.services[0], &image(Some(&["/init"]), Some(&["default"])), &vars()).unwrap();
    let main = parse(&files, "0-main.toml");
    assert_eq!(
        main["exec"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>(),
        ["/init", "serve", "--port", "80"]
    );
    let env = main["env"].as_table().unwrap();
    assert_eq!(env["A"].as_str(), Some("manifest"), "the manifest wins over the image");
    assert_eq!(env["PATH"].as_str(), Some("/bin"));
    assert_eq!(env["LAZYCAT_APP_DOMAIN"].as_str(), Some("t.box.test"));
    assert_eq!(env["LAZYCAT_APP_SERVICE_NAME"].as_str(), Some("s"));
    assert_eq!(env["LAZYCAT_BOX_NAME"].as_str(), Some("den1"));
    assert_eq!(main["user"].as_str(), Some("1000:1000"));
    assert_eq!(main["workdir"].as_str(), Some("/w"));
    let binds = main["binds"].as_array().unwrap();
    assert_eq!(binds[0]["target"].as_str(), Some("/lzcapp/pkg"), "package files are read-only");
    assert_eq!(binds[1]["source"].as_str(), Some("/lzcapp/var/d"));
    assert_eq!(binds[1]["readonly"].as_bool(), Some(true));
    assert_eq!(main["restart"].as_str(), Some("on-failure"));

    // An entrypoint from the manifest drops the image's command.
    let a = app("application: {subdomain: t}\nservices: {s: {image: embed:box, entrypoint: /bin/other}}");
    let files = definitions(&a, &a.plan.services[0], &image(Some(&["/init"]), Some(&["default"])), &vars()).unwrap();
    assert_eq!(parse(&files, "0-main.toml")["exec"].as_array().unwrap().len(), 1);
    // setup_script runs before the image's own command.
    let a = app("application: {subdomain: t}\nservices: {s: {image: embed:box, setup_script: 'echo hi > /x'}}");
    let files = definitions(&a, &a.plan.services[0], &image(None, Some(&["httpd"])), &vars()).unwrap();
    let main = parse(&files, "0-main.toml");
    assert_eq!(main["before"][0].as_str(), Some("echo hi > /x"));
    assert_eq!(main["exec"][0].as_str(), Some("httpd"));
    // Nothing to run is an error that names the service.
    let e = definitions(&a, &a.plan.services[0], &image(None, None), &vars()).unwrap_err();
    assert!(e.contains("service `s` has nothing to run"), "{e}");
}

#[test]
fn the_entry_service_runs_exec_routes() {
    let a = app("application:
  subdomain: t
  routes:
    - /=exec://3000,/lzcapp/pkg/content/serve.sh --x
  environment: [GREETING=hi]
");
    let entry = &a.plan.services[0];
    assert_eq!(entry.name, "app");
    let files = definitions(&a, entry, &image(None, None), &vars()).unwrap();
    let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["0-mounts.toml", "exec-3000.toml"]);
    let exec = parse(&files, "exec-3000.toml");
    assert_eq!(exec["exec"][0].as_str(), Some("/lzcapp/pkg/content/serve.sh"));
    assert_eq!(exec["env"]["GREETING"].as_str(), Some("hi"));
    assert_eq!(exec["restart"].as_str(), Some("always"));
}
