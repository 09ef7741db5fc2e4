//! Builds the XDP program (`xdp-ebpf`, crate `outpost-xdp-ebpf`) for `bpfel-unknown-none`
//! with aya-build, so `capture/src/xdp.rs` can embed `$OUT_DIR/outpost-xdp`.
//!
//! Needs the `nightly` toolchain with `rust-src` (to build `core` for the BPF target) and
//! `bpf-linker` on `PATH`; `make deps` installs them. Cargo reruns this script only when
//! `xdp-ebpf/` or `xdp-common/` change (aya-build prints `rerun-if-changed` for the program's
//! directory; the shared crate is added here), so ordinary rebuilds do not rebuild the program.
//! `AYA_BUILD_SKIP=1` skips the build (the embedded object is then empty and loading fails
//! with a clear error) for hosts that never load XDP.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?);
    let workspace = manifest_dir.parent().context("capture/ has no parent directory")?;
    let ebpf_dir = workspace.join("xdp-ebpf");
    let common_dir = workspace.join("xdp-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!("cargo:rerun-if-changed=build.rs");

    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    if skip {
        // aya-build skips too and warns; leave an empty object so `include_bytes!` compiles.
        let object = out_dir.join("outpost-xdp");
        if !object.exists() {
            std::fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
        }
    } else {
        check_toolchain()?;
    }

    // aya-build forwards the nested cargo's stderr as `cargo:warning` lines; keep it to real
    // diagnostics (compiler messages still arrive as JSON, errors still print).
    // SAFETY: the build script is single-threaded here; nothing reads the environment meanwhile.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };

    let root_dir = ebpf_dir.to_str().with_context(|| format!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "outpost-xdp-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context("building the XDP program (xdp-ebpf) failed; run `make deps` to install the nightly toolchain, rust-src and bpf-linker")?;
    let object = out_dir.join("outpost-xdp");
    if !skip && !Path::new(&object).exists() {
        bail!("aya-build produced no {}", object.display());
    }
    Ok(())
}

/// Fails early, with the fix, when a tool the eBPF build needs is missing: otherwise the
/// nested cargo build dies with a message about `core` or a missing linker.
fn check_toolchain() -> anyhow::Result<()> {
    const FIX: &str = "run `make deps` (installs: rustup toolchain install nightly --component rust-src; cargo install bpf-linker)";
    let nightly = Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]).output();
    let sysroot = match nightly {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
        Ok(_) => bail!("the XDP program needs the Rust nightly toolchain, which is not installed: {FIX}"),
        // Without rustup aya-build uses the current toolchain, which must then be nightly.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => bail!(
            "the XDP program is built with `rustup run nightly`, but rustup could not be run ({err}): {FIX}"
        ),
    };
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        bail!(
            "the XDP program needs the rust-src component of the nightly toolchain (not found under {}): {FIX}",
            sysroot.display()
        );
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.is_ok_and(|output| output.status.success()) {
        bail!("the XDP program needs bpf-linker on PATH: {FIX}");
    }
    Ok(())
}
