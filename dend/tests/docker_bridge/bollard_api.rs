//! The same API paths as the CLI part, through bollard (a Rust Docker client): version
//! negotiation, info, images, create/attach/start/wait with stdin, logs, exec, build (classic and BuildKit),
//! volumes, removal, and a policy refusal that bollard reports as dockerd's own 403.

use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, BuilderVersion, CreateContainerOptionsBuilder,
    ListImagesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptions,
};
use bollard::Docker;
use den_tests::docker::build_context;
use futures_util::StreamExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Everything a stream of container output said, stdout and stderr together.
async fn collect(
    mut output: impl futures_util::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Unpin,
) -> String {
    let mut all = String::new();
    while let Some(chunk) = output.next().await {
        all.push_str(&chunk.expect("a clean stream").to_string());
    }
    all
}

fn body(image: &str, cmd: &[&str]) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

/// What `cat /b` prints in a container of `image` (run, waited for, removed).
async fn output_of(docker: &Docker, image: &str) -> String {
    let id = docker.create_container(None, body(image, &["cat", "/b"])).await.expect("create").id;
    docker.start_container(&id, None).await.expect("start");
    let _: Vec<_> = docker.wait_container(&id, None).collect().await;
    let logs = docker.logs(&id, Some(LogsOptionsBuilder::default().stdout(true).build()));
    let out = collect(logs).await.trim().to_string();
    docker.remove_container(&id, None).await.expect("remove");
    out
}

/// Runs the bollard checks against the bridge at `sock` (the sandbox is up; busybox is loaded).
pub(crate) fn check(sock: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(run(sock));
}

async fn run(sock: &Path) {
    let docker = Docker::connect_with_unix(&sock.display().to_string(), 120, bollard::API_DEFAULT_VERSION)
        .expect("bollard client")
        .negotiate_version()
        .await
        .expect("version negotiation through the bridge");
    let version = docker.version().await.expect("version");
    assert_eq!(version.os.as_deref(), Some("linux"), "{version:?}");
    let info = docker.info().await.expect("info");
    assert!(info.images.unwrap_or(0) >= 1, "{info:?}");
    let images = docker.list_images(Some(ListImagesOptionsBuilder::default().build())).await.expect("images");
    assert!(images.iter().any(|i| i.repo_tags.iter().any(|t| t == "busybox:latest")), "{images:?}");

    // create, attach with stdin (an `Upgrade: tcp` hijack), start, wait: the input comes back.
    let create = CreateContainerOptionsBuilder::default().name("bollard-cat").build();
    let cat = ContainerCreateBody {
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        ..body("busybox", &["sh", "-c", "tr a-z A-Z"])
    };
    let id = docker.create_container(Some(create), cat).await.expect("create").id;
    let attach = AttachContainerOptionsBuilder::default().stdin(true).stdout(true).stream(true).build();
    let mut io = docker.attach_container(&id, Some(attach)).await.expect("attach");
    docker.start_container(&id, None).await.expect("start");
    io.input.write_all(b"through bollard\n").await.expect("stdin");
    io.input.shutdown().await.expect("half-close");
    drop(io.input);
    let said = collect(io.output).await;
    assert_eq!(said.trim(), "THROUGH BOLLARD");
    let waited: Vec<_> = docker.wait_container(&id, None).collect().await;
    assert!(matches!(waited.as_slice(), [Ok(w)] if w.status_code == 0), "{waited:?}");
    let logs = docker.logs(&id, Some(LogsOptionsBuilder::default().stdout(true).build()));
    assert_eq!(collect(logs).await.trim(), "THROUGH BOLLARD");
    docker.remove_container(&id, None).await.expect("remove");

    // exec in a running container.
    let id = docker.create_container(None, body("busybox", &["sleep", "60"])).await.expect("create").id;
    docker.start_container(&id, None).await.expect("start");
    let exec = ExecConfig {
        cmd: Some(vec!["sh".into(), "-c".into(), "echo exec-$((6*7))".into()]),
        attach_stdout: Some(true),
        ..Default::default()
    };
    let exec = docker.create_exec(&id, exec).await.expect("exec create").id;
    match docker.start_exec(&exec, None).await.expect("exec start") {
        bollard::exec::StartExecResults::Attached { output, .. } => assert_eq!(collect(output).await.trim(), "exec-42"),
        other => panic!("exec not attached: {other:?}"),
    }
    assert_eq!(docker.inspect_exec(&exec).await.expect("exec inspect").exit_code, Some(0));

    // The policy, as bollard sees it: dockerd's own error shape with Den's message.
    let privileged = ContainerCreateBody {
        host_config: Some(HostConfig { privileged: Some(true), ..Default::default() }),
        ..body("busybox", &["true"])
    };
    match docker.create_container(None, privileged).await {
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 403, message }) => {
            assert!(message.contains("refused by Den's Docker policy"), "{message}")
        }
        other => panic!("a privileged container was not refused: {other:?}"),
    }
    let force = RemoveContainerOptionsBuilder::default().force(true).build();
    docker.remove_container(&id, Some(force)).await.expect("remove -f");

    // A classic build from a tar context.
    let ctx = build_context("FROM busybox\nRUN echo from-bollard > /b\nCMD [\"cat\", \"/b\"]\n");
    let opts =
        BuildImageOptionsBuilder::default().t("bollard-built:1").rm(true).version(BuilderVersion::BuilderV1).build();
    let steps: Vec<_> = docker.build_image(opts, None, Some(bollard::body_full(ctx.into()))).collect().await;
    assert!(steps.iter().all(|s| s.as_ref().is_ok_and(|b| b.error_detail.is_none())), "{steps:?}");
    assert_eq!(output_of(&docker, "bollard-built:1").await, "from-bollard");

    // The same with BuildKit (`version=2`): bollard holds a session (`/session`, an h2c
    // upgrade) for BuildKit to call back, and reads BuildKit's progress.
    let ctx = build_context("FROM busybox\nRUN echo from-buildkit > /b\nCMD [\"cat\", \"/b\"]\n");
    let opts = BuildImageOptionsBuilder::default()
        .t("bollard-bk:1")
        .version(BuilderVersion::BuilderBuildKit)
        .session("den-bollard-bk")
        .build();
    let steps: Vec<_> = docker.build_image(opts, None, Some(bollard::body_full(ctx.into()))).collect().await;
    assert!(steps.iter().all(|s| s.as_ref().is_ok_and(|b| b.error_detail.is_none())), "{steps:?}");
    let buildkit = |s: &Result<bollard::models::BuildInfo, _>| {
        matches!(s, Ok(bollard::models::BuildInfo { aux: Some(bollard::models::BuildInfoAux::BuildKit(_)), .. }))
    };
    assert!(steps.iter().any(buildkit), "BuildKit ran the build: {steps:?}");
    assert_eq!(output_of(&docker, "bollard-bk:1").await, "from-buildkit");

    // Volumes.
    let v = VolumeCreateRequest { name: Some("bollard-vol".into()), ..Default::default() };
    assert_eq!(docker.create_volume(v).await.expect("volume create").name, "bollard-vol");
    let vols = docker.list_volumes(None::<bollard::query_parameters::ListVolumesOptions>).await.expect("volumes");
    assert!(vols.volumes.unwrap_or_default().iter().any(|v| v.name == "bollard-vol"));
    docker.remove_volume("bollard-vol", None::<RemoveVolumeOptions>).await.expect("volume rm");
}
