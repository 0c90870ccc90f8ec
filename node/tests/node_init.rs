//! `wasmesh node init` as a new operator runs it: a config, a key (mode 0600) and the systemd
//! unit; a second run refuses and changes nothing; the unit passes `systemd-analyze verify`
//! where systemd is present.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn wasmesh(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the wasmesh binary runs")
}

#[test]
fn init_writes_config_key_and_unit_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let trust = "ab".repeat(32);
    let args = [
        "node",
        "init",
        "--dir",
        "op",
        "--bootstrap",
        "/ip4/127.0.0.1/udp/4001/quic-v1",
        "--trust",
        &trust,
    ];
    let first = wasmesh(dir.path(), &args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let out = dir.path().join("op");
    let key = std::fs::read(out.join("node.key")).unwrap();
    let mode = std::fs::metadata(out.join("node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("data_dir = \"/var/lib/wasmesh\""));
    assert!(config.contains(&format!("trust = [\"{trust}\"]")));
    assert!(config.contains("bootstrap = [\"/ip4/127.0.0.1/udp/4001/quic-v1\"]"));
    let unit = std::fs::read_to_string(out.join("wasmesh.service")).unwrap();
    assert!(unit.contains("DynamicUser=yes") && unit.contains("ProtectSystem=strict"));
    // The node's memory and threads are bounded by the service manager too.
    assert!(
        unit.contains("\nMemoryMax=") && unit.contains("\nTasksMax="),
        "{unit}"
    );
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(said.contains("systemctl enable --now wasmesh"), "{said}");

    // The written config and key start a node's configuration as they are.
    let shown = wasmesh(dir.path(), &["keys", "show", "--key", "op/node.key"]);
    assert!(shown.status.success());

    let second = wasmesh(dir.path(), &args);
    assert_eq!(second.status.code(), Some(1));
    let error = String::from_utf8_lossy(&second.stderr);
    assert!(
        error.contains("already exists; nothing was written"),
        "{error}"
    );
    assert_eq!(std::fs::read(out.join("node.key")).unwrap(), key);

    if Path::new("/usr/bin/systemd-analyze").exists() {
        // verify checks that ExecStart's binary exists: point it at the one under test.
        let local = unit.replace("/usr/local/bin/wasmesh", env!("CARGO_BIN_EXE_wasmesh"));
        let path = dir.path().join("wasmesh.service");
        std::fs::write(&path, local).unwrap();
        let verified = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            verified.status.success() && verified.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
}
