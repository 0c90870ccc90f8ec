//! The `wasmesh keys` and `wasmesh manifest` command-line contract, run as a user would: the
//! real binary, real files, exit codes and the first line of output.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn wasmesh(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the wasmesh binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 1 with exactly one stderr line starting `error:`.
fn assert_fails(out: &Output, mentions: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "stderr: {err}");
    assert!(err.contains(mentions), "expected {mentions:?} in {err}");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/fixtures")
        .join(name)
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        wasmesh(args, self.path())
    }

    /// Generates `name` and returns its public key hex.
    fn key(&self, name: &str) -> String {
        let out = self.run(&["keys", "gen", "--out", name]);
        assert!(out.status.success(), "{}", stderr(&out));
        let show = self.run(&["keys", "show", "--key", name]);
        stdout(&show).lines().next().unwrap().to_owned()
    }

    fn create_manifest(&self, key: &str, out: &str) -> Output {
        self.create("echo.wat", "echo", key, &["--version", "3"], out)
    }

    /// `manifest create` of a fixture with `extra` flags.
    fn create(
        &self,
        fixture_name: &str,
        name: &str,
        key: &str,
        extra: &[&str],
        out: &str,
    ) -> Output {
        let module = fixture(fixture_name);
        let mut args = vec![
            "manifest",
            "create",
            module.to_str().unwrap(),
            "--name",
            name,
            "--key",
            key,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

#[test]
fn keys_gen_creates_mode_0600_and_never_overwrites() {
    let ws = Workspace::new();
    let hex = ws.key("node.key");
    let path = ws.path().join("node.key");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = fs::read(&path).unwrap();

    let again = ws.run(&["keys", "gen", "--out", "node.key"]);
    assert_fails(&again, "already exists");
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the existing key is unchanged"
    );
    assert_eq!(hex.len(), 64);
}

#[test]
fn keys_show_first_line_is_the_hex_key_alone() {
    let ws = Workspace::new();
    ws.key("node.key");
    let out = ws.run(&["keys", "show", "--key", "node.key"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert_eq!(first.len(), 64);
    assert!(
        first.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "{first}"
    );
    assert!(text.contains("peer id: 12D3KooW"), "{text}");
}

#[test]
fn keys_show_refuses_a_readable_key_and_says_chmod_600() {
    let ws = Workspace::new();
    ws.key("node.key");
    let path = ws.path().join("node.key");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert_fails(&ws.run(&["keys", "show", "--key", "node.key"]), "chmod 600");
}

/// An error line says its cause once.
#[test]
fn a_missing_key_file_is_named_with_its_cause_once() {
    let ws = Workspace::new();
    let out = ws.run(&["keys", "show", "--key", "missing.key"]);
    assert_fails(&out, "missing.key: No such file or directory");
    assert_eq!(stderr(&out).matches("No such file or directory").count(), 1);
}

#[test]
fn manifest_create_and_verify_round_trip() {
    let ws = Workspace::new();
    let hex = ws.key("pub.key");
    let out = ws.create_manifest("pub.key", "echo.manifest");
    assert!(out.status.success(), "{}", stderr(&out));

    let module = fixture("echo.wat");
    let verify = ws.run(&[
        "manifest",
        "verify",
        "echo.manifest",
        "--module",
        module.to_str().unwrap(),
        "--trust",
        &hex,
    ]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let summary = stdout(&verify);
    assert!(summary.contains("echo@3"), "{summary}");
    assert!(summary.contains("abi        raw"), "{summary}");
    assert!(summary.contains(&hex), "{summary}");

    let other = ws.key("other.key");
    assert_fails(
        &ws.run(&["manifest", "verify", "echo.manifest", "--trust", &other]),
        "untrusted publisher",
    );
}

#[test]
fn every_single_byte_change_fails_to_verify() {
    let ws = Workspace::new();
    ws.key("pub.key");
    assert!(
        ws.create_manifest("pub.key", "good.manifest")
            .status
            .success()
    );
    let good = fs::read(ws.path().join("good.manifest")).unwrap();
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            fs::write(ws.path().join("bad.manifest"), &bad).unwrap();
            let out = ws.run(&["manifest", "verify", "bad.manifest"]);
            assert_eq!(
                out.status.code(),
                Some(1),
                "byte {i} ^ {flip:#x} still verifies: {}",
                stdout(&out)
            );
            assert!(stderr(&out).starts_with("error: "));
        }
    }
    // Truncated and extended files fail too.
    fs::write(ws.path().join("bad.manifest"), &good[..good.len() - 1]).unwrap();
    assert_fails(
        &ws.run(&["manifest", "verify", "bad.manifest"]),
        "not a signed manifest",
    );
    let mut longer = good.clone();
    longer.push(0);
    fs::write(ws.path().join("bad.manifest"), &longer).unwrap();
    assert_fails(
        &ws.run(&["manifest", "verify", "bad.manifest"]),
        "unexpected bytes",
    );
}

#[test]
fn random_bytes_fail_cleanly() {
    let ws = Workspace::new();
    // A fixed pseudo-random sequence (xorshift), several lengths.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for len in [0usize, 1, 7, 64, 200, 4096, 5000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        fs::write(ws.path().join("random.manifest"), &bytes).unwrap();
        assert_fails(
            &ws.run(&["manifest", "verify", "random.manifest"]),
            "not a signed manifest",
        );
    }
}

#[test]
fn an_unknown_import_is_named_and_nothing_is_written() {
    let ws = Workspace::new();
    ws.key("pub.key");
    let out = ws.create(
        "unknown_import.wat",
        "bad",
        "pub.key",
        &["--version", "1"],
        "bad.manifest",
    );
    assert_fails(&out, "env.open_socket");
    assert!(!ws.path().join("bad.manifest").exists());
}

#[test]
fn an_invalid_name_is_refused_and_nothing_is_written() {
    let ws = Workspace::new();
    ws.key("pub.key");
    for name in ["Echo", "", "a/b", &"x".repeat(65)] {
        let out = ws.create(
            "echo.wat",
            name,
            "pub.key",
            &["--version", "1"],
            "bad.manifest",
        );
        assert_fails(&out, "invalid module name");
        assert!(!ws.path().join("bad.manifest").exists());
    }
}

#[test]
fn limits_out_of_range_are_refused() {
    let ws = Workspace::new();
    ws.key("pub.key");
    let extra = ["--version", "1", "--timeout-ms", "0"];
    let out = ws.create("echo.wat", "echo", "pub.key", &extra, "bad.manifest");
    assert_fails(&out, "timeout_ms");
}

#[test]
fn usage_errors_exit_2() {
    let ws = Workspace::new();
    assert_eq!(ws.run(&["manifest", "bogus"]).status.code(), Some(2));
    assert_eq!(ws.run(&["keys", "gen"]).status.code(), Some(2));
    assert_eq!(
        ws.run(&[
            "keys", "certify", "--admin", "a", "--node", "zz", "--mesh", "m", "--out", "c"
        ])
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn certify_writes_a_certificate_the_keys_crate_verifies() {
    let ws = Workspace::new();
    ws.key("admin.key");
    let node = ws.key("node.key");
    let out = ws.run(&[
        "keys",
        "certify",
        "--admin",
        "admin.key",
        "--node",
        &node,
        "--mesh",
        "edge",
        "--days",
        "30",
        "--out",
        "node.cert",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = fs::read(ws.path().join("node.cert")).unwrap();
    let cert = wasmesh_keys::SignedMembershipCert::decode(&bytes).unwrap();
    let admin = wasmesh_keys::key_file::load(&ws.path().join("admin.key")).unwrap();
    let now = cert.cert.not_before_ms + 2 * 3_600_000;
    let verified = cert.verify(&admin.public(), now).unwrap();
    assert_eq!(verified.node.to_string(), node);
    assert_eq!(verified.mesh, "edge");
}
