//! The raw-ABI echo guest: the response is the request.
#![no_std]

use wasmesh_guest::Vec;

fn echo(input: &[u8]) -> Vec<u8> {
    input.to_vec()
}

wasmesh_guest::export!(echo);
