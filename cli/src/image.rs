//! `den image ...`: build images from specs, list, inspect, verify, remove and collect garbage.

use crate::paths::{self, Paths};
use crate::progress::TermProgress;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use den_images::store::{self, ImageRecord, Store};
use den_images::{Builder, ImageError, ImageSpec};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// `den image` verbs.
#[derive(Subcommand)]
pub(crate) enum ImageCmd {
    /// Build images from built-in names (base, dev, docker, app, system) or spec files (*.yml).
    Build(BuildArgs),
    /// List images.
    Ls,
    /// Show an image's artifacts, sizes and build inputs.
    Inspect {
        /// Image name.
        name: String,
    },
    /// Re-hash every artifact of an image and report corruption.
    Verify {
        /// Image name.
        name: String,
    },
    /// Print the verified path of an artifact (kernel, initramfs, rootfs, vmlinux, qcow2).
    Path {
        /// Image name.
        name: String,
        /// Artifact role.
        role: String,
    },
    /// Make an ext4 root disk image from an OCI image layout (LPK `images/`, `docker save`).
    ImportOci {
        /// OCI layout directory.
        layout: PathBuf,
        /// Name for the new image.
        name: String,
        /// Manifest digest (prefix) when the layout holds several images.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Remove an image name (its objects go at the next gc).
    Rm {
        /// Image names.
        names: Vec<String>,
    },
    /// Delete store objects no image uses.
    Gc,
    /// List the built-in image specs.
    Specs,
}

/// Arguments of `den image build`.
#[derive(Args)]
pub(crate) struct BuildArgs {
    /// Built-in image names or spec files.
    #[arg(required = true)]
    pub specs: Vec<String>,
    /// Statically linked den-agent to put in the images (default: found next to `den`).
    #[arg(long)]
    pub agent: Option<PathBuf>,
}

fn load_spec(arg: &str) -> anyhow::Result<(ImageSpec, String)> {
    if let Some((_, text)) = den_images::spec::BUILTIN.iter().find(|(n, _)| *n == arg) {
        return Ok((ImageSpec::parse(text, &format!("built-in `{arg}`"))?, text.to_string()));
    }
    if arg.contains('/') || arg.ends_with(".yml") || arg.ends_with(".yaml") {
        let text = std::fs::read_to_string(arg).with_context(|| format!("cannot read image spec {arg}"))?;
        return Ok((ImageSpec::parse(&text, arg)?, text));
    }
    let names: Vec<&str> = den_images::spec::BUILTIN.iter().map(|(n, _)| *n).collect();
    bail!("`{arg}` is neither a built-in image ({}) nor a spec file path", names.join(", "))
}

fn human(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} TiB")
}

fn find(store: &Store, name: &str) -> anyhow::Result<ImageRecord> {
    Ok(store.image(name)?.ok_or_else(|| ImageError::UnknownImage(name.into()))?)
}

/// Builds one image from a built-in name or a spec file, with progress on the terminal.
pub(crate) fn build_one(
    store: &Store,
    paths: &Paths,
    agent: &std::path::Path,
    arg: &str,
    json: bool,
) -> anyhow::Result<ImageRecord> {
    let (spec, text) = load_spec(arg)?;
    let progress = TermProgress::new(&spec.name);
    let t = Instant::now();
    let rec = Builder::new(store.clone(), &paths.downloads, agent, &progress)
        .build(&spec, &text)
        .with_context(|| format!("building image `{}`", spec.name))?;
    if !json {
        let secs = t.elapsed().as_secs_f64();
        eprintln!("image {} ready in {secs:.2}s ({} artifacts)", rec.name, rec.artifacts.len());
    }
    Ok(rec)
}

/// Runs an image command.
pub(crate) fn run(cmd: ImageCmd, paths: &Paths, json: bool) -> anyhow::Result<ExitCode> {
    let store = Store::open(&paths.store())
        .with_context(|| format!("cannot open the image store at {}", paths.store().display()))?;
    match cmd {
        ImageCmd::Build(args) => {
            let agent = paths::agent_binary(args.agent.as_deref())?;
            let mut built = vec![];
            for s in &args.specs {
                let t = Instant::now();
                let rec = build_one(&store, paths, &agent, s, json)?;
                built.push(serde_json::json!({ "image": rec, "seconds": t.elapsed().as_secs_f64() }));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&built)?);
            }
        }
        ImageCmd::Ls => {
            let images = store.images()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&images)?);
            } else {
                println!("{:<12} {:<22} {:<10} {:>10}  ARTIFACTS", "NAME", "KERNEL", "SPEC", "SIZE");
                for i in &images {
                    let size: u64 = i.artifacts.values().filter_map(|d| store.meta(d).ok()).map(|m| m.size).sum();
                    let roles: Vec<&str> = i.artifacts.keys().map(String::as_str).collect();
                    println!(
                        "{:<12} {:<22} {:<10} {:>10}  {}",
                        i.name,
                        i.kernel_release,
                        i.spec_digest.short(),
                        human(size),
                        roles.join(",")
                    );
                }
                if images.is_empty() {
                    println!("(no images; `den image build base` builds the minimal one)");
                }
            }
        }
        ImageCmd::Inspect { name } => {
            let rec = find(&store, &name)?;
            let mut arts = serde_json::Map::new();
            for (role, d) in &rec.artifacts {
                let meta = store.meta(d)?;
                arts.insert(
                    role.clone(),
                    serde_json::json!({ "digest": d.to_string(), "path": store.object_path(d), "meta": meta }),
                );
            }
            let v = serde_json::json!({ "name": rec.name, "spec": rec.spec_digest.to_string(), "cmdline": rec.cmdline,
                "kernel_release": rec.kernel_release, "built": rec.built, "artifacts": arts });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ImageCmd::Verify { name } => {
            let rec = find(&store, &name)?;
            let mut bad = 0;
            for (role, d) in &rec.artifacts {
                match store.get(d, true) {
                    Ok(_) => println!("ok       {role:<10} {d}"),
                    Err(e) => {
                        bad += 1;
                        println!("CORRUPT  {role:<10} {e}");
                    }
                }
            }
            if bad > 0 {
                eprintln!("den: image `{name}` has {bad} corrupt artifact(s); `den image build {name}` rebuilds them");
                return Ok(ExitCode::from(1));
            }
        }
        ImageCmd::Path { name, role } => {
            let rec = find(&store, &name)?;
            let d = rec.artifacts.get(&role).with_context(|| {
                let roles: Vec<&str> = rec.artifacts.keys().map(String::as_str).collect();
                format!("image `{name}` has no `{role}` artifact (it has: {})", roles.join(", "))
            })?;
            println!("{}", store.get(d, false)?.display());
        }
        ImageCmd::ImportOci { layout, name, reference } => {
            den_images::spec::check_name(&name)?;
            let work = store.temp_dir("oci")?;
            let out = work.path().join("root.ext4");
            let cfg = den_images::oci::to_ext4(&layout, reference.as_deref(), work.path(), None, &out)?;
            let inputs = [("layout".to_string(), layout.display().to_string())].into();
            let d = store.insert_file(&out, "disk-ext4", "den image import-oci", inputs)?;
            let rec = ImageRecord {
                name: name.clone(),
                spec_digest: store::hash_bytes(layout.display().to_string().as_bytes()),
                artifacts: [("rootfs".to_string(), d.clone())].into(),
                cmdline: String::new(),
                kernel_release: String::new(),
                built: store::now(),
                version: String::new(),
            };
            store.put_image(&rec)?;
            if json {
                println!("{}", serde_json::json!({ "image": rec, "config": cfg }));
            } else {
                println!("image {name}: rootfs {d}");
            }
        }
        ImageCmd::Rm { names } => {
            for n in names {
                if !store.remove_image(&n)? {
                    bail!("image `{n}` not found; `den image ls` lists images");
                }
                if !json {
                    println!("removed {n} (`den image gc` frees its space)");
                }
            }
        }
        ImageCmd::Gc => {
            let (n, bytes) = store.gc()?;
            if json {
                println!("{}", serde_json::json!({ "objects": n, "bytes": bytes }));
            } else {
                println!("removed {n} objects, freed {}", human(bytes));
            }
        }
        ImageCmd::Specs => {
            for (name, text) in den_images::spec::BUILTIN {
                let desc = ImageSpec::parse(text, name).map(|s| s.description).unwrap_or_default();
                println!("{name:<10} {desc}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
