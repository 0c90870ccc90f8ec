//! Static inspection of Wasm modules (validation, ABI, imports, declared memory): it refuses
//! what it cannot take and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wasmesh_protocol::wasm::inspect(data);
});
