//! The WASI echo guest: plain Rust `std`, stdin to stdout.

use std::io::{self, Read, Write};

fn main() {
    let mut input = Vec::new();
    io::stdin().read_to_end(&mut input).expect("read stdin");
    io::stdout().write_all(&input).expect("write stdout");
}
