//! The example guests built by `scripts/build-guests.sh`, run by the executor: the SDK's raw
//! echo, a plain-`std` WASI echo, and the thumbnail resizer on an image made here.

mod support;

use wasmesh_node::executor::{Executor, ExecutorConfig, Request};
use wasmesh_protocol::{Abi, ContentHash, Limits, wasm};

fn run(name: &str, input: Vec<u8>) -> Vec<u8> {
    let wasm = support::built_guest(name);
    let executor = Executor::new(ExecutorConfig::default()).unwrap();
    let (module, _) = executor
        .prepare(ContentHash::of(&wasm), name, &wasm)
        .unwrap();
    executor
        .run_blocking(
            &module,
            &Request {
                input,
                limits: Limits::default(),
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .bytes
}

#[test]
fn sdk_echo_is_a_raw_guest_without_imports() {
    let info = wasm::inspect(&support::built_guest("echo")).unwrap();
    assert_eq!(info.abi, Abi::Raw);
    assert!(info.imports.is_empty(), "{:?}", info.imports);
    assert_eq!(run("echo", b"edge".to_vec()), b"edge");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(run("echo", big.clone()), big);
}

#[test]
fn std_wasi_echo_runs_on_the_subset() {
    let info = wasm::inspect(&support::built_guest("wasi-echo")).unwrap();
    assert_eq!(info.abi, Abi::Wasi);
    let imported: Vec<&str> = info.imports.iter().map(|(_, f)| f.as_str()).collect();
    for needed in ["fd_read", "fd_write", "proc_exit"] {
        assert!(imported.contains(&needed), "{imported:?}");
    }
    assert_eq!(run("wasi-echo", b"over stdin".to_vec()), b"over stdin");
    assert_eq!(run("wasi-echo", Vec::new()), b"");
}

#[test]
fn thumbnail_resizes_to_the_requested_width() {
    let mut request = b"32\n".to_vec();
    request.extend(support::gradient_png(128, 96));
    let jpeg = run("thumbnail", request);
    assert_eq!(&jpeg[..2], [0xff, 0xd8], "not a JPEG");
    // Width and height from the JPEG's start-of-frame marker.
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("baseline JPEG frame header");
    let height = u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]);
    let width = u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]);
    assert_eq!((width, height), (32, 24));
}
