//! wasmesh-guest: write a raw-ABI wasmesh guest as a plain function.
//!
//! ```ignore
//! #![no_std]
//! use wasmesh_guest::Vec;
//!
//! fn shout(input: &[u8]) -> Vec<u8> {
//!     input.to_ascii_uppercase()
//! }
//!
//! wasmesh_guest::export!(shout);
//! ```
//!
//! The raw ABI (see the project's DESIGN): the host calls `wasmesh_alloc(len)`, writes the
//! request there, calls `wasmesh_handle(ptr, len)` and reads the response at
//! `ptr = result >> 32`, `len = result & 0xffff_ffff`. Raw guests import nothing, so this crate
//! is `no_std`: on wasm32 it brings the allocator (dlmalloc) and a panic handler that traps.
//! Every request runs in a fresh instance, so memory handed to the host is never freed.
#![no_std]

extern crate alloc;

pub use alloc::vec::Vec;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// Exports `handler: fn(&[u8]) -> Vec<u8>` as the guest's `wasmesh_alloc` / `wasmesh_handle`.
#[macro_export]
macro_rules! export {
    ($handler:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn wasmesh_alloc(len: i32) -> i32 {
            $crate::__private::alloc(len)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn wasmesh_handle(ptr: i32, len: i32) -> i64 {
            $crate::__private::handle(ptr, len, $handler)
        }
    };
}

#[doc(hidden)]
pub mod __private {
    use super::Vec;

    /// Reserves `len` bytes for the request and returns their address.
    pub fn alloc(len: i32) -> i32 {
        let mut buffer = Vec::<u8>::with_capacity(len.max(0) as usize);
        let ptr = buffer.as_mut_ptr();
        core::mem::forget(buffer);
        ptr as usize as i32
    }

    /// Calls the handler on the request at `ptr` and packs the response's address and length.
    pub fn handle(ptr: i32, len: i32, handler: fn(&[u8]) -> Vec<u8>) -> i64 {
        // SAFETY: the host wrote `len` bytes at `ptr`, the address `alloc(len)` returned.
        let input = unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) };
        let output = handler(input).leak();
        ((output.as_ptr() as usize as u64) << 32 | output.len() as u64) as i64
    }
}
