//! `wasmesh run` as a user runs it: raw and WASI modules, input from a file and from stdin,
//! and one `error: <kind>: <detail>` line on failure.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn wasmesh_run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmesh"))
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn fixture(name: &str) -> String {
    support::fixture_path(name).to_str().unwrap().to_owned()
}

#[test]
fn raw_and_wasi_modules_from_stdin_and_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.bin");
    std::fs::write(&input, b"from a file").unwrap();
    let input = input.to_str().unwrap();
    for module in ["reverse.wat", "wasi_echo.wat"] {
        let expected_stdin: &[u8] = if module == "reverse.wat" {
            b"nidts"
        } else {
            b"stdin"
        };
        let out = wasmesh_run(&[&fixture(module), "--input", "-"], b"stdin");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, expected_stdin, "{module}");

        let out = wasmesh_run(&[&fixture(module)], b"stdin");
        assert_eq!(out.stdout, expected_stdin, "{module}: stdin is the default");

        let out = wasmesh_run(&[&fixture(module), "--input", input], b"");
        let expected_file: &[u8] = if module == "reverse.wat" {
            b"elif a morf"
        } else {
            b"from a file"
        };
        assert_eq!(out.stdout, expected_file, "{module}");
    }
}

#[test]
fn failures_are_one_line_with_their_kind() {
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "infinite_loop.wat",
            &["--fuel", "10000"],
            "error: fuel_exhausted: ",
        ),
        (
            "infinite_loop.wat",
            &["--fuel", "1000000000000", "--timeout-ms", "100"],
            "error: timeout: ",
        ),
        ("trap.wat", &[], "error: trap: "),
        (
            "memory_bomb.wat",
            &["--memory-mib", "2"],
            "error: memory_limit: ",
        ),
        ("out_of_bounds.wat", &[], "error: bad_output: "),
    ];
    for (module, flags, prefix) in cases {
        let mut args = vec![fixture(module)];
        args.extend(flags.iter().map(|f| f.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = wasmesh_run(&args, b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{module}: {stderr}");
        assert!(stderr.starts_with(prefix), "{module}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{module}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_trap_says_what_the_guest_wrote_to_stderr() {
    let out = wasmesh_run(&[&fixture("wasi_trap_stderr.wat")], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: trap: ") && last.contains("guest says: bad input"),
        "{stderr}"
    );
}

/// A guest that straight-line fills its whole memory 600 times, run with a 100 ms deadline,
/// fails with a timeout (its output is discarded), as it would through a node.
#[test]
fn a_guest_past_its_deadline_fails_with_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("fill.wat");
    std::fs::write(&module, support::hostile::fill_bomb(1024, 600)).unwrap();
    let out = wasmesh_run(
        &[
            module.to_str().unwrap(),
            "--memory-mib",
            "64",
            "--timeout-ms",
            "100",
        ],
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: timeout: "), "{stderr}");
    assert!(out.stdout.is_empty());
}
