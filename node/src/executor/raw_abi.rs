//! The raw guest ABI: `wasmesh_alloc(len) -> ptr`, the host writes the input there,
//! `wasmesh_handle(ptr, len) -> (out_ptr << 32) | out_len`, the host reads the output.

use wasmer::{Instance, Store};

use super::GuestError;
use super::error::CallFailure;

pub(crate) fn call(
    store: &mut Store,
    instance: &Instance,
    input: &[u8],
    max_output: u32,
) -> Result<Vec<u8>, CallFailure> {
    let invalid = |e: wasmer::ExportError| GuestError::InvalidModule {
        detail: e.to_string(),
    };
    let alloc = instance
        .exports
        .get_typed_function::<i32, i32>(store, "wasmesh_alloc")
        .map_err(invalid)?;
    let handle = instance
        .exports
        .get_typed_function::<(i32, i32), i64>(store, "wasmesh_handle")
        .map_err(invalid)?;
    let memory = instance
        .exports
        .get_memory("memory")
        .map_err(invalid)?
        .clone();

    let len = input.len() as i32;
    let ptr = alloc.call(store, len)?;
    memory
        .view(store)
        .write(u64::from(ptr as u32), input)
        .map_err(|_| GuestError::Trap {
            detail: format!("wasmesh_alloc({len}) returned {ptr:#x}, outside the guest's memory"),
        })?;

    let packed = handle.call(store, ptr, len)? as u64;
    let out_ptr = packed >> 32;
    let out_len = packed & 0xffff_ffff;
    if out_len > u64::from(max_output) {
        return Err(GuestError::BadOutput {
            detail: format!("output of {out_len} bytes exceeds the limit of {max_output}"),
        }
        .into());
    }
    let view = memory.view(store);
    let mut output = vec![0u8; out_len as usize];
    view.read(out_ptr, &mut output)
        .map_err(|_| GuestError::BadOutput {
            detail: format!(
                "output range {out_ptr:#x}+{out_len} is outside the guest's memory ({} bytes)",
                view.data_size()
            ),
        })?;
    Ok(output)
}
